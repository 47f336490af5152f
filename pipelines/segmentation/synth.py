"""Generate a synthetic practice-register extract with known, injected inequality gaps.

The extract is a test oracle for the whole pipeline: patients live at real live postcodes
of one ICB, are registered at its real active practices, and carry real SNOMED CT / dm+d
codes from the pinned codelists. Nothing clinical or geographic is invented; only the
people are. Every rule the pipeline applies (registers, the SMI health check,
hypertension treated to target, Core20 by IMD 2019) has a ground truth written beside the
extract, so a run can be checked against what was injected.

All the *rates* below (age structure, prevalences, ethnicity mixes, multipliers) are
APPROXIMATE published figures or plainly synthetic choices; each says which in a comment.
They make the data plausible, not a model of any real population.

Performance matters (a 1M-patient extract must take about a minute on two cores), so
everything is vectorised with numpy over whole cohorts; no Python loop visits a row.
Determinism matters too (a test oracle that moves is useless): one numpy
Generator(PCG64(seed)) drives every draw, reference frames are sorted before use, and the
same arguments give byte-identical parquet files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.segmentation.schemas import INPUT_EVENTS, INPUT_PATIENTS

GENERATOR = "pipelines.segmentation.synth/1"
IMD_VINTAGE = "IMD2019"
_EPOCH = date(1970, 1, 1)
_YEAR = 365.2425

# Canonical UK postcode shape after normalisation (upper case, spaces removed). Invalid
# defects are checked against it so that no "invalid" postcode is accidentally valid.
_POSTCODE_SHAPE = r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$"

# Nottingham city unitary authority: the brief's urban, more ethnically diverse area.
CITY_LADS = ("E06000018",)

# --- injected indicator rates (synthetic, documented in the ground truth) ----------------
# Base rates sit near the published national levels (SMI health checks roughly 60%,
# hypertension treated to target roughly 65-70% in CVDPREVENT); the multipliers are the
# gaps the pipeline must recover. They are synthetic choices, not estimates.
SMI_HEALTH_CHECK = {
    "base_rate": 0.62,
    "core20_multiplier": 0.80,
    "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.95, "Asian": 0.92, "Black": 0.85, "Other": 0.95},
}
HYPERTENSION_TO_TARGET = {
    "base_rate": 0.68,
    "core20_multiplier": 0.88,
    "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.97, "Asian": 0.93, "Black": 0.85, "Other": 0.97},
}
# Other areas: shares of eligible patients with the activity (synthetic, near published levels).
OTHER_AREAS = {
    "bp_case_finding_40plus_within_5y": {"base_rate": 0.78, "core20_multiplier": 0.90, "black_multiplier": 0.85},
    "copd_flu_current_campaign": {"base_rate": 0.78, "core20_multiplier": 0.92},
    "asthma_saba_issues_per_year": {"mean": 2.8, "core20_multiplier": 1.5},
    "hypertension_statin": {"base_rate": 0.45, "core20_multiplier": 0.90},
}

# Broad ethnic groups, in the order of the codelist's grouping_6 (1 White ... 5 Other).
_ETH6 = ("White", "Mixed", "Asian", "Black", "Other")

# Approximate ONS mid-year population shares for England by 5-year band (0-4 ... 90+),
# roughly mid-2021/2022; normalised before use.
_AGE_BAND_SHARES = np.array(
    [5.4, 5.9, 6.0, 5.7, 6.0, 6.5, 6.8, 6.7, 6.3, 6.2, 6.8, 6.7, 5.9, 5.0, 5.0, 3.7, 2.6, 1.5, 0.9]
)

# Ethnic mix by area (synthetic, loosely after Census 2021: Nottingham city roughly two
# thirds White, Nottinghamshire districts above nine tenths White).
_ETH_MIX_CITY = np.array([0.655, 0.058, 0.148, 0.100, 0.039])
_ETH_MIX_ELSEWHERE = np.array([0.925, 0.022, 0.032, 0.010, 0.011])
# Shares of the 16 census-2001 groups within each broad group (synthetic).
_ETH16_WITHIN = {
    0: ((1, 2, 3), (0.88, 0.01, 0.11)),
    1: ((4, 5, 6, 7), (0.35, 0.15, 0.30, 0.20)),
    2: ((8, 9, 10, 11), (0.35, 0.38, 0.04, 0.23)),
    3: ((12, 13, 14), (0.30, 0.62, 0.08)),
    4: ((15, 16), (0.30, 0.70)),
}


@dataclass(frozen=True)
class _Condition:
    """How one register condition is drawn: target prevalence and its age/deprivation shape."""

    name: str
    diagnosis: str  # codelist id of the diagnosis cluster
    resolved: str | None  # codelist id of the resolved cluster (None: lifelong)
    target: float  # register prevalence over `min_scope_age`+ (approximate QOF level)
    min_scope_age: int  # the population the target refers to
    age_knots: tuple[tuple[int, ...], tuple[float, ...]]  # relative prevalence by age
    deprivation_ratio: float  # decile 1 vs decile 10 prevalence ratio
    onset_age: int  # earliest age for a diagnosis date
    resolved_share: float = 0.0  # of ever-diagnosed: resolved and off the register
    rediagnosed_share: float = 0.0  # of ever-diagnosed: resolved then diagnosed again (on)
    ethnicity_multipliers: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)


# Approximate QOF 2023-24 England prevalences (NHS England, QOF prevalence tables):
# MH 0.96% all ages, LD 0.57%, hypertension 14.8%, COPD 1.9%, asthma 6.5% (6+),
# diabetes 7.7% (17+), epilepsy 0.8% (18+). Autism (~1%) follows recorded-autism studies
# in primary care (e.g. O'Nions et al. 2023), far higher in children. Deprivation ratios and
# ethnicity multipliers are synthetic, in the direction of published gradients.
_CONDITIONS = (
    _Condition("ld", "ld_cod", None, 0.005, 0, ((0, 1, 5, 18, 60, 80, 110), (0, 0.6, 1.0, 1.0, 0.8, 0.4, 0.3)), 1.5, 1),
    _Condition("autism", "autism_cod", None, 0.010, 0, ((0, 2, 10, 18, 30, 50, 70, 110), (0, 1.5, 3.0, 2.2, 1.2, 0.4, 0.15, 0.1)), 1.2, 2),
    _Condition("smi", "mh_cod", "smhres", 0.0095, 0, ((0, 14, 18, 30, 45, 65, 85, 110), (0, 0, 0.5, 1.0, 1.3, 1.1, 0.9, 0.9)), 2.0, 14, 0.08, 0.02, (1.0, 1.2, 1.0, 1.8, 1.2)),
    _Condition("hypertension", "hyp_cod", "hypres_cod", 0.14, 0, ((0, 18, 30, 40, 50, 60, 70, 80, 110), (0, 0, 0.03, 0.08, 0.18, 0.32, 0.48, 0.60, 0.65)), 1.25, 18, 0.05, 0.01, (1.0, 1.0, 1.0, 1.3, 1.0)),
    _Condition("copd", "copd_cod", "copdres_cod", 0.019, 0, ((0, 39, 40, 50, 60, 70, 80, 110), (0, 0, 0.3, 0.8, 1.8, 3.2, 4.0, 4.0)), 2.5, 35, 0.02, 0.005),
    _Condition("asthma", "ast_cod", "astres_cod", 0.065, 6, ((0, 2, 5, 15, 40, 70, 110), (0, 0.3, 1.0, 1.2, 1.0, 1.0, 0.9)), 1.25, 2, 0.12, 0.02),
    _Condition("diabetes", "dm_cod", "dmres_cod", 0.075, 17, ((0, 1, 16, 17, 30, 40, 50, 60, 70, 80, 110), (0, 0.02, 0.02, 0.1, 0.15, 0.35, 0.7, 1.2, 1.7, 1.9, 1.6)), 1.7, 1, 0.02, 0.005, (1.0, 1.2, 2.0, 1.5, 1.2)),
    _Condition("epilepsy", "epil_cod", "epilres_cod", 0.008, 18, ((0, 1, 110), (0, 1.0, 1.0)), 1.5, 1, 0.10, 0.02),
)

_CODELISTS = (
    "ethnicity_snomed", "eth_not_stated", "ld_cod", "autism_cod", "mh_cod", "smhres", "hyp_cod",
    "hypres_cod", "copd_cod", "copdres_cod", "ast_cod", "astres_cod", "dm_cod", "dmres_cod",
    "epil_cod", "epilres_cod", "bp_cod", "systolic_blood_pressure_qof", "diastolic_blood_pressure_qof",
    "cholesterol_tests", "hba1c_tests", "lsmok_cod", "exsmok_cod", "flu_cod",
    "saba_inhalers_resp02", "statin_medication",
)

_CLUSTER_IDS = tuple(i for c in _CONDITIONS for i in (c.diagnosis, c.resolved) if i is not None)

# The QOF observables most practices record; other codes of each list appear less often.
_MAIN_SYSTOLIC = "271649006"
_MAIN_DIASTOLIC = "271650006"


def default_reporting_month(today: date | None = None) -> date:
    """Return the first day of the last complete month before `today`.

    Arguments:
        today: the date to count back from (default: today's date).

    Returns:
        The first day of the previous calendar month.

    Examples:
        >>> default_reporting_month(date(2026, 3, 15))
        datetime.date(2026, 2, 1)
        >>> default_reporting_month(date(2026, 1, 1))
        datetime.date(2025, 12, 1)
    """
    today = today or date.today()
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


def generate_extract(
    out_dir: Path,
    *,
    reporting_month: date,
    n_patients: int = 20_000,
    seed: int = 20260,
    icb_code: str = "QT1",
    defect_rate: float = 0.02,
    reference_dir: str | Path | None = None,
) -> dict:
    """Write a synthetic monthly extract (patients, events) with its ground truth.

    Arguments:
        out_dir: folder to write `patients.parquet`, `events.parquet`, `ground_truth.json`
            and `extract.json` into (created if missing; files are replaced).
        reporting_month: first day of the reporting month; the reference date R is its last day.
        n_patients: patients to generate (one row each; patient rows are never duplicated).
        seed: seed of the single numpy PCG64 generator; same arguments give identical bytes.
        icb_code: ODS code of the ICB whose LSOAs, postcodes and practices are used.
        defect_rate: share of patients given a data-quality defect, split evenly over blank,
            invalid and non-English postcodes, missing ethnicity and duplicated event rows.
        reference_dir: shared reference data folder (see reference_data.loader).

    Returns:
        The ground truth (also written as `ground_truth.json`): register counts, per
        Core20/rest group denominators, expected rates and realised numerators of the two
        injected indicators, the multipliers used and the count of every injected defect.
    """
    if reporting_month.day != 1:
        raise ValueError("reporting_month must be the first day of a month")
    if n_patients < 1:
        raise ValueError("n_patients must be at least 1")
    if not 0.0 <= defect_rate <= 0.5:
        raise ValueError("defect_rate must be between 0 and 0.5")

    cal = _Calendar.of(reporting_month)
    ref = _load_reference(icb_code, reference_dir)
    rng = np.random.Generator(np.random.PCG64(seed))

    people = _draw_people(rng, ref, cal, n_patients)
    conditions = _draw_conditions(rng, people, cal)
    defect_kind = _defect_kind(rng, n_patients, defect_rate)
    events = _EventBuffer()
    _emit_diagnoses(rng, ref, people, conditions, events)
    eth = _emit_ethnicity(rng, ref, people, defect_kind, events)
    outcomes = _emit_indicator_events(rng, ref, people, conditions, cal, events)
    _emit_other_areas(rng, ref, people, conditions, cal, events)
    postcodes, postcode_defects = _draw_postcodes(rng, ref, people, defect_kind)

    event_rows, n_duplicates = events.finish(rng, defect_rate)
    patient_ids = _patient_ids(rng, n_patients)
    patients = _patients_frame(ref, people, patient_ids, postcodes)
    events_frame = _events_frame(ref, patient_ids, event_rows)

    truth = _ground_truth(
        people, conditions, outcomes, defect_kind, postcode_defects, eth, cal,
        seed=seed, n_patients=n_patients, icb_code=icb_code, defect_rate=defect_rate,
        n_duplicates=n_duplicates,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    patients.write_parquet(out / "patients.parquet", compression="zstd", statistics=True)
    events_frame.write_parquet(out / "events.parquet", compression="zstd", statistics=True)
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = {
        "generator": GENERATOR,
        "seed": seed,
        "n_patients": n_patients,
        "reporting_month": reporting_month.isoformat(),
        "reference_date": cal.reference_date.isoformat(),
        "icb_code": icb_code,
        "defect_rate": defect_rate,
        "row_counts": {"patients": patients.height, "events": events_frame.height},
    }
    (out / "extract.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return truth


# --- calendar -----------------------------------------------------------------------------

def _days(d: date) -> int:
    """Return the day number (days since 1970-01-01) of a date."""
    return (d - _EPOCH).days


@dataclass(frozen=True)
class _Calendar:
    """The reporting month's dates as day numbers (days since 1970-01-01)."""

    reporting_month: date
    reference_date: date  # R: last day of the reporting month
    window_start: date  # R - 12 months + 1 day: first day of the month 11 months earlier
    campaign_start: date  # 1 September of the flu campaign current at R

    @classmethod
    def of(cls, month: date) -> "_Calendar":
        nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        r = nxt - timedelta(days=1)
        back = month.year * 12 + month.month - 1 - 11
        window = date(back // 12, back % 12 + 1, 1)
        campaign = date(r.year if r.month >= 9 else r.year - 1, 9, 1)
        return cls(month, r, window, campaign)

    @property
    def r(self) -> int:
        return _days(self.reference_date)

    @property
    def w0(self) -> int:
        return _days(self.window_start)


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (year, month, day) arrays of day numbers."""
    d = days.astype("datetime64[D]")
    y = d.astype("datetime64[Y]")
    m = d.astype("datetime64[M]")
    return (
        y.astype(np.int64) + 1970,
        (m - y.astype("datetime64[M]")).astype(np.int64) + 1,
        (d - m.astype("datetime64[D]")).astype(np.int64) + 1,
    )


def _age_at(dob: np.ndarray, ref_day: date) -> np.ndarray:
    """Return whole years of age at `ref_day` (the pipeline's rule: birthday reached or not)."""
    y, m, d = _ymd(dob)
    before_birthday = (ref_day.month < m) | ((ref_day.month == m) & (ref_day.day < d))
    return (ref_day.year - y - before_birthday).astype(np.int64)


# --- reference data -------------------------------------------------------------------------

@dataclass
class _Reference:
    lsoa_code: np.ndarray
    lsoa_decile: np.ndarray
    lsoa_is_city: np.ndarray
    lsoa_weight: np.ndarray
    lsoa_pc_start: np.ndarray
    lsoa_pc_count: np.ndarray
    postcodes: pl.Series  # live postcodes of the ICB's LSOAs, canonical form, sorted by LSOA
    pc_practice: np.ndarray  # (n_postcodes, k) nearest practice indices
    pc_practice_cum: np.ndarray  # (n_postcodes, k) cumulative choice probabilities
    practice_codes: pl.Series
    foreign: tuple[pl.Series, ...]  # live Welsh, Scottish, NI postcodes
    codes: pl.Series  # every code of every list used, concatenated
    slices: dict[str, tuple[int, int]]  # codelist id -> (offset, length) into `codes`
    eth16_offset: np.ndarray  # per grouping_16 (1-16) offset into `codes`
    eth16_count: np.ndarray
    eth16_group6: np.ndarray  # grouping_6 index (0-4) of each grouping_16


def _load_reference(icb_code: str, reference_dir: str | Path | None) -> _Reference:
    """Load and shape every reference file once: LSOAs, postcodes, practices, codelists."""
    from reference_data import loader

    lsoas = (
        loader.read_lsoa11_icb22(reference_dir)
        .filter(pl.col("icb22_code_nhs") == icb_code)
        .select("lsoa11_code", "lad22_code")
        .join(loader.read_imd2019(reference_dir).select("lsoa11_code", "imd2019_decile"), on="lsoa11_code", how="left")
        .join(loader.read_imd2019_population(reference_dir), on="lsoa11_code", how="left")
        .sort("lsoa11_code")
    )
    if lsoas.is_empty():
        raise ValueError(f"ICB {icb_code!r} has no LSOA 2011 in the July 2022 lookup")
    live = (
        loader.scan_postcode_lsoa11(reference_dir)
        .filter(pl.col("date_terminated").is_null() & pl.col("lsoa11_code").is_in(lsoas["lsoa11_code"].implode()))
        .select("postcode", "lsoa11_code")
        .collect()
        .sort("lsoa11_code", "postcode")
    )
    # Code-Point 2025 centroids place postcodes for the practice-distance choice; the few
    # live-in-2022 postcodes since retired take their LSOA's mean centroid.
    centroids = loader.scan_postcode_centroids(reference_dir).select("postcode", "easting", "northing")
    live = (
        live.join(centroids.filter(pl.col("postcode").is_in(live["postcode"].implode())).collect(), on="postcode", how="left")
        .with_columns(
            pl.col("easting").fill_null(pl.col("easting").mean().over("lsoa11_code")),
            pl.col("northing").fill_null(pl.col("northing").mean().over("lsoa11_code")),
        )
        .with_columns(pl.col("easting").fill_null(pl.col("easting").mean()), pl.col("northing").fill_null(pl.col("northing").mean()))
        .sort("lsoa11_code", "postcode")
    )
    per_lsoa = live.group_by("lsoa11_code").len().rename({"len": "n_postcodes"})
    lsoas = lsoas.join(per_lsoa, on="lsoa11_code", how="left").with_columns(pl.col("n_postcodes").fill_null(0)).sort("lsoa11_code")
    counts = lsoas["n_postcodes"].to_numpy().astype(np.int64)
    # An LSOA's share of patients follows its mid-2015 population; one without a live
    # postcode cannot hold anyone.
    weight = lsoas["population"].fill_null(0).to_numpy().astype(np.float64) * (counts > 0)
    weight /= weight.sum()

    practices = (
        loader.read_gp_practices(reference_dir)
        .filter((pl.col("icb_code") == icb_code) & pl.col("is_active"))
        .select("practice_code", pl.col("postcode").str.to_uppercase().str.strip_chars())
        .join(loader.read_gp_list_sizes(reference_dir), on="practice_code", how="left")
        .join(centroids.collect(), on="postcode", how="inner")
        .sort("practice_code")
    )
    if practices.is_empty():
        raise ValueError(f"ICB {icb_code!r} has no active GP practice with a Code-Point centroid")
    # Practices opened after January 2021 have no list size; give them the median.
    sizes = practices["list_size"].fill_null(practices["list_size"].median()).to_numpy().astype(np.float64)
    k = min(5, practices.height)
    pe, pn = live["easting"].to_numpy(), live["northing"].to_numpy()
    qe, qn = practices["easting"].to_numpy(), practices["northing"].to_numpy()
    dist = np.hypot(pe[:, None] - qe[None, :], pn[:, None] - qn[None, :])
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    near_d = np.take_along_axis(dist, nearest, axis=1)
    # Patients mostly register near home, at bigger practices more often: list size with
    # a 2 km distance decay among the k nearest (a synthetic choice).
    w = sizes[nearest] * np.exp(-near_d / 2000.0)
    cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0

    foreign_frame = (
        loader.scan_postcode_lsoa11(reference_dir)
        .filter(pl.col("date_terminated").is_null())
        .select("postcode", pl.col("country_code").str.slice(0, 3).alias("ctry"))
        .filter(pl.col("ctry").is_in(["W92", "S92", "N92"]))
        .collect()
        .sort("ctry", "postcode")
    )
    foreign = tuple(foreign_frame.filter(pl.col("ctry") == c)["postcode"] for c in ("W92", "S92", "N92"))

    pieces: list[pl.Series] = []
    slices: dict[str, tuple[int, int]] = {}
    offset = 0
    eth = None
    for cid in _CODELISTS:
        frame = loader.read_codelist(cid, reference_dir)
        if cid == "ethnicity_snomed":
            frame = frame.with_columns(pl.col("grouping_16").cast(pl.Int64), pl.col("grouping_6").cast(pl.Int64)).sort("grouping_16", "code")
            eth = frame
        elif cid in ("systolic_blood_pressure_qof", "diastolic_blood_pressure_qof"):
            # Only observables that are also in BP_COD, so one reading serves both the
            # hypertension rule and the SMI health check's BP component.
            bp = loader.read_codelist("bp_cod", reference_dir)["code"]
            frame = frame.filter(pl.col("code").is_in(bp.implode())).sort("code")
        elif cid in _CLUSTER_IDS:
            # Clusters overlap: 23 SMHRES "in remission" codes are also MH_COD, and a few
            # codes sit in two registers (asthma-COPD overlap, LD with autism, epilepsy or
            # diabetes). A shared code would put a patient on a register that was not drawn
            # (or, for SMI, be a same-day resolution), so each cluster's codes are drawn
            # only from those in no other cluster; a resolved cluster may share with its
            # own diagnosis cluster, since a same-day pair is still "resolved".
            own_dx = {c.diagnosis for c in _CONDITIONS if c.resolved == cid}
            others = [loader.read_codelist(o, reference_dir)["code"] for o in _CLUSTER_IDS if o != cid and o not in own_dx]
            frame = frame.filter(~pl.col("code").is_in(pl.concat(others).implode())).sort("code")
        else:
            frame = frame.sort("code")
        pieces.append(frame["code"])
        slices[cid] = (offset, frame.height)
        offset += frame.height
    codes = pl.concat(pieces)
    g16 = eth["grouping_16"].to_numpy()
    g16_count = np.bincount(g16, minlength=17)[1:]
    g16_offset = slices["ethnicity_snomed"][0] + np.concatenate([[0], np.cumsum(g16_count)[:-1]])
    g6_of_16 = eth.group_by("grouping_16").agg(pl.col("grouping_6").first()).sort("grouping_16")["grouping_6"].to_numpy() - 1

    return _Reference(
        lsoa_code=lsoas["lsoa11_code"].to_numpy(),
        lsoa_decile=lsoas["imd2019_decile"].to_numpy().astype(np.int64),
        lsoa_is_city=lsoas["lad22_code"].is_in(list(CITY_LADS)).to_numpy(),
        lsoa_weight=weight,
        lsoa_pc_start=np.concatenate([[0], np.cumsum(counts)[:-1]]),
        lsoa_pc_count=counts,
        postcodes=live["postcode"],
        pc_practice=nearest,
        pc_practice_cum=cum,
        practice_codes=practices["practice_code"],
        foreign=foreign,
        codes=codes,
        slices=slices,
        eth16_offset=g16_offset,
        eth16_count=g16_count,
        eth16_group6=g6_of_16,
    )


def _pick(rng: np.random.Generator, ref: _Reference, codelist: str, size: int, main: str | None = None) -> np.ndarray:
    """Return indices into ref.codes drawn from one codelist (75% its main code when given)."""
    offset, n = ref.slices[codelist]
    idx = offset + rng.integers(0, n, size)
    if main is not None:
        listed = ref.codes.slice(offset, n)
        where = np.flatnonzero((listed == main).to_numpy())
        if where.size:
            idx = np.where(rng.random(size) < 0.75, offset + where[0], idx)
    return idx


# --- people -------------------------------------------------------------------------------

@dataclass
class _People:
    n: int
    lsoa: np.ndarray
    postcode: np.ndarray  # index into ref.postcodes
    practice: np.ndarray
    decile: np.ndarray
    is_core20: np.ndarray  # where the patient really lives (decile 1-2)
    dob: np.ndarray
    age: np.ndarray  # whole years at R
    sex: np.ndarray
    start: np.ndarray
    end: np.ndarray  # -1 when still registered
    last: np.ndarray  # last day events can carry: R, or the deregistration date
    registered: np.ndarray
    eth6: np.ndarray  # latent broad group 0-4 (true, whether or not recorded)
    eth16: np.ndarray  # latent grouping_16 (1-16)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one category per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return (u[:, None] >= cum).sum(axis=1)


def _draw_people(rng: np.random.Generator, ref: _Reference, cal: _Calendar, n: int) -> _People:
    """Draw where everyone lives, their practice, age, sex, registration and ethnic group."""
    lsoa = rng.choice(ref.lsoa_code.size, size=n, p=ref.lsoa_weight)
    pc = ref.lsoa_pc_start[lsoa] + (rng.random(n) * ref.lsoa_pc_count[lsoa]).astype(np.int64)
    col = (rng.random(n)[:, None] >= ref.pc_practice_cum[pc]).sum(axis=1)
    practice = ref.pc_practice[pc, np.minimum(col, ref.pc_practice.shape[1] - 1)]
    decile = ref.lsoa_decile[lsoa]

    band = rng.choice(_AGE_BAND_SHARES.size, size=n, p=_AGE_BAND_SHARES / _AGE_BAND_SHARES.sum())
    age_years = band * 5 + rng.integers(0, 5, n)
    old = band == _AGE_BAND_SHARES.size - 1
    age_years = np.where(old, 90 + np.minimum(rng.geometric(0.3, n) - 1, 14), age_years)
    dob = cal.r - np.floor((age_years + rng.random(n)) * _YEAR).astype(np.int64)
    age = _age_at(dob, cal.reference_date)

    # Women outnumber men in old age (approximate ONS shares); I and U are rare in GP data.
    female_share = np.where(age >= 80, 0.60, np.where(age >= 65, 0.53, 0.497))
    u = rng.random(n)
    sex = np.where(u < 0.0005, "I", np.where(u < 0.002, "U", np.where(rng.random(n) < female_share, "F", "M")))

    # Registration lengths: roughly exponential, mean ten years, never before birth.
    duration = np.floor(rng.exponential(10 * _YEAR, n)).astype(np.int64)
    start = np.minimum(np.maximum(cal.r - 1 - duration, dob + rng.integers(0, 43, n)), cal.r)
    # About 1.5% left the practice before R: still in the extract, not on any register.
    leaving = (rng.random(n) < 0.015) & (start < cal.r)
    end_day = start + 1 + np.floor(rng.random(n) * (cal.r - start - 1)).astype(np.int64)
    end = np.where(leaving, end_day, -1)
    registered = (start <= cal.r) & ((end < 0) | (end > cal.r))
    last = np.where(end >= 0, np.minimum(end, cal.r), cal.r)

    # Ethnic mix: more ethnic-minority residents in Nottingham city and in more deprived
    # LSOAs (synthetic gradient: minority weight x1.5 in decile 1 down to x0.6 in decile 10).
    mix = np.where(ref.lsoa_is_city[lsoa][:, None], _ETH_MIX_CITY[None, :], _ETH_MIX_ELSEWHERE[None, :])
    minority = 1.5 - 0.1 * (decile - 1)
    mix = mix * np.concatenate([np.ones((n, 1)), np.repeat(minority[:, None], 4, axis=1)], axis=1)
    eth6 = _categorical(rng, mix)
    eth16 = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    for g, (groups, shares) in _ETH16_WITHIN.items():  # five broad groups, not rows
        sel = eth6 == g
        cum = np.cumsum(shares) / np.sum(shares)
        eth16[sel] = np.asarray(groups)[np.minimum((u[sel, None] >= cum[None, :]).sum(axis=1), len(groups) - 1)]

    return _People(
        n=n, lsoa=lsoa, postcode=pc, practice=practice, decile=decile, is_core20=decile <= 2,
        dob=dob, age=age, sex=sex, start=start, end=end, last=last, registered=registered,
        eth6=eth6, eth16=eth16,
    )


# --- conditions -----------------------------------------------------------------------------

@dataclass
class _ConditionState:
    ever: np.ndarray
    on: np.ndarray  # on the register by construction (diagnosis after any resolution)
    resolved: np.ndarray
    rediagnosed: np.ndarray


def _draw_conditions(rng: np.random.Generator, people: _People, cal: _Calendar) -> dict[str, _ConditionState]:
    """Draw who has each condition, and who has it resolved or resolved then re-diagnosed."""
    out: dict[str, _ConditionState] = {}
    for c in _CONDITIONS:  # eight conditions, each vectorised over everyone
        knots_age, knots_val = c.age_knots
        raw = np.interp(people.age, knots_age, knots_val)
        raw = raw * c.deprivation_ratio ** ((10 - people.decile) / 9.0)
        raw = raw * np.asarray(c.ethnicity_multipliers)[people.eth6]
        if c.name == "epilepsy":
            raw = raw * np.where(out["ld"].ever, 8.0, 1.0)  # epilepsy is far commoner with LD
        scope = people.age >= c.min_scope_age
        p_register = c.target * raw / max(raw[scope].mean(), 1e-12)
        p_ever = np.clip(p_register / (1.0 - c.resolved_share), 0.0, 0.95)
        ever = rng.random(people.n) < p_ever
        v = rng.random(people.n)
        resolved = ever & (v < c.resolved_share)
        rediag = ever & (v >= c.resolved_share) & (v < c.resolved_share + c.rediagnosed_share)
        out[c.name] = _ConditionState(ever=ever, on=ever & ~resolved, resolved=resolved, rediagnosed=rediag)
    return out


# --- events ---------------------------------------------------------------------------------

class _EventBuffer:
    """Collect event chunks as parallel numpy arrays (patient index, code index, day, value)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, pid: np.ndarray, code: np.ndarray, day: np.ndarray, value: np.ndarray | None = None) -> None:
        pid = np.asarray(pid, dtype=np.int64)
        if pid.size == 0:
            return
        val = np.full(pid.size, np.nan) if value is None else np.asarray(value, dtype=np.float64)
        self.chunks.append((pid, np.asarray(code, dtype=np.int64), np.asarray(day, dtype=np.int64), val))

    def finish(self, rng: np.random.Generator, defect_rate: float) -> tuple[pl.DataFrame, int]:
        """Return the events (pid, code, day, value) with injected exact duplicates, and their count.

        Chance coincidences (two identical rows drawn independently) are dropped first, so
        that the only exact duplicates in the extract are the injected, counted ones. Rows
        are ordered by patient, date and code; a duplicate sits next to its original.
        Patient, day and code are packed into one int64 key to keep a 25M-row sort light.
        """
        pid = np.concatenate([c[0] for c in self.chunks])
        code = np.concatenate([c[1] for c in self.chunks])
        day = np.concatenate([c[2] for c in self.chunks])
        value = np.concatenate([c[3] for c in self.chunks])
        self.chunks = []
        base = int(day.min())
        code_bits = max(int(code.max()).bit_length(), 1)
        day_bits = max(int(day.max() - base).bit_length(), 1)
        if int(pid.max()).bit_length() + day_bits + code_bits > 62:
            raise ValueError("too many patients to pack event keys into 62 bits")
        key = (pid << (day_bits + code_bits)) | ((day - base) << code_bits) | code
        del pid, code, day
        frame = pl.DataFrame({"key": key, "value": pl.Series(value, nan_to_null=True)})
        del key, value
        frame = frame.sort("key", "value", nulls_last=True)
        same = (pl.col("key") == pl.col("key").shift(1)) & pl.col("value").eq_missing(pl.col("value").shift(1))
        frame = frame.filter(~same.fill_null(False))
        n_dup = int(round(defect_rate / 5.0 * frame.height))
        if n_dup:
            dup = np.sort(rng.choice(frame.height, size=n_dup, replace=False))
            frame = pl.concat([frame, frame[dup]]).sort("key", maintain_order=True)
        frame = frame.select(
            (pl.col("key") // (1 << (day_bits + code_bits))).alias("pid"),
            (pl.col("key") % (1 << code_bits)).alias("code"),
            ((pl.col("key") // (1 << code_bits)) % (1 << day_bits) + base).alias("day"),
            "value",
        )
        return frame, n_dup


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (owner, k): row i of the expansion belongs to owner[i] and is its k[i]-th item."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _uniform_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Return a day uniformly in [lo, hi] per row (lo when the range is empty)."""
    span = np.maximum(hi - lo + 1, 1)
    return lo + np.floor(rng.random(np.shape(lo)) * span).astype(np.int64)


def _emit_diagnoses(rng, ref, people: _People, conditions: dict[str, _ConditionState], events: _EventBuffer) -> None:
    """Emit diagnosis and resolved codes whose order makes each register state true."""
    for c in _CONDITIONS:
        st = conditions[c.name]
        who = np.flatnonzero(st.ever)
        if who.size == 0:
            continue
        dob, hi = people.dob[who], people.last[who]
        lo = np.maximum(dob + int(c.onset_age * _YEAR), hi - int(30 * _YEAR))
        lo = np.maximum(np.minimum(lo, hi - 3), dob)
        # Three strictly increasing days a < b < c in [lo, hi - 1]: diagnosis, resolution,
        # re-diagnosis. Strict order means no same-day tie decides a register state.
        f = np.sort(rng.random((who.size, 3)), axis=1)
        width = np.maximum(hi - lo - 2, 1)
        a = lo + np.floor(f[:, 0] * width).astype(np.int64)
        b = lo + np.floor(f[:, 1] * width).astype(np.int64) + 1
        cc = lo + np.floor(f[:, 2] * width).astype(np.int64) + 2
        resolved, rediag = st.resolved[who], st.rediagnosed[who]
        active = ~resolved & ~rediag
        second = active & (rng.random(who.size) < 0.4)  # a later code from the same cluster
        events.add(who, _pick(rng, ref, c.diagnosis, who.size), a)
        events.add(who[second], _pick(rng, ref, c.diagnosis, int(second.sum())), cc[second])
        if c.resolved is not None:
            r_day = np.where(resolved, cc, b)
            has_res = resolved | rediag
            events.add(who[has_res], _pick(rng, ref, c.resolved, int(has_res.sum())), r_day[has_res])
            events.add(who[rediag], _pick(rng, ref, c.diagnosis, int(rediag.sum())), cc[rediag])


@dataclass
class _EthnicityCounts:
    state: np.ndarray  # 0 coded, 1 not stated, 2 no code (baseline), 3 no code (defect)
    superseded: np.ndarray


def _emit_ethnicity(rng, ref: _Reference, people: _People, defect_kind: np.ndarray, events: _EventBuffer) -> _EthnicityCounts:
    """Emit ethnicity codes: ~8% none, ~3% explicitly not stated, some superseded codes."""
    n = people.n
    u = rng.random(n)
    # Roughly the recording levels seen in GP data: about 8% never coded, 3% not stated.
    state = np.where(u < 0.08, 2, np.where(u < 0.11, 1, 0))
    # Defect: a recorded ethnicity dropped from the extract. Counted only where it removed a code.
    state = np.where((defect_kind == 4) & (state == 0), 3, state)

    lo = np.maximum(people.dob, people.start - int(5 * _YEAR))
    day = _uniform_days(rng, lo, people.last)
    coded = np.flatnonzero(state == 0)
    g16 = people.eth16[coded]
    code = ref.eth16_offset[g16 - 1] + np.floor(rng.random(coded.size) * ref.eth16_count[g16 - 1]).astype(np.int64)
    # A few patients re-stated their ethnicity: an older code of another group, dated
    # strictly earlier, is superseded by the latest one (the latest code wins).
    sup = (rng.random(coded.size) < 0.025) & (people.last[coded] > lo[coded] + 1)
    latest = np.where(sup, _uniform_days(rng, lo[coded] + 1, people.last[coded]), day[coded])
    events.add(coded, code, latest)
    if sup.any():
        older_g = (g16[sup] - 1 + rng.integers(1, 16, int(sup.sum()))) % 16 + 1
        older_code = ref.eth16_offset[older_g - 1] + np.floor(rng.random(older_g.size) * ref.eth16_count[older_g - 1]).astype(np.int64)
        older_day = _uniform_days(rng, lo[coded][sup], latest[sup] - 1)
        events.add(coded[sup], older_code, older_day)
    ns = np.flatnonzero(state == 1)
    events.add(ns, _pick(rng, ref, "eth_not_stated", ns.size), day[ns])
    superseded = np.zeros(n, dtype=bool)
    superseded[coded[sup]] = True
    return _EthnicityCounts(state=state, superseded=superseded)


def _defect_kind(rng: np.random.Generator, n: int, defect_rate: float) -> np.ndarray:
    """Return each patient's defect: 0 none, 1 blank, 2 invalid, 3 non-English postcode, 4 ethnicity.

    The fifth kind, duplicated event rows, is drawn over events (see _EventBuffer.finish).
    """
    u = rng.random(n)
    share = defect_rate / 5.0
    return np.where(u < 4 * share, np.floor(u / share).astype(np.int64) + 1, 0) if share > 0 else np.zeros(n, dtype=np.int64)


# --- indicator events with known gaps -------------------------------------------------------

def _rate(cfg: dict, people: _People) -> np.ndarray:
    """Return p_i = base rate x Core20 multiplier x ethnic-group multiplier, clipped to [0, 1]."""
    eth = np.array([cfg["ethnicity_multipliers"][g] for g in _ETH6])
    p = cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0) * eth[people.eth6]
    return np.clip(p, 0.0, 1.0)


def _controlled(rng, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (systolic, diastolic) at or below the thresholds; some exactly at them."""
    m = thr.size
    sys = np.where(rng.random(m) < 0.12, thr, thr - 1 - rng.integers(0, 30, m))
    dia = np.where(rng.random(m) < 0.12, 90, rng.integers(62, 90, m))
    return sys, dia


def _uncontrolled(rng, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (systolic, diastolic) with systolic, diastolic or both above the thresholds."""
    m = thr.size
    sys_ok, dia_ok = _controlled(rng, thr)
    sys_high = thr + 1 + np.minimum(np.floor(rng.exponential(12.0, m)), 60).astype(np.int64)
    dia_high = 91 + np.minimum(np.floor(rng.exponential(6.0, m)), 30).astype(np.int64)
    kind = rng.random(m)  # 60% systolic high, 25% diastolic high, 15% both
    sys = np.where(kind < 0.60, sys_high, np.where(kind < 0.85, sys_ok, sys_high))
    dia = np.where(kind < 0.60, dia_ok, dia_high)
    return sys, dia


def _emit_bp(rng, ref: _Reference, events: _EventBuffer, pid, day, sys, dia) -> None:
    """Emit one blood pressure reading: a systolic and a diastolic observable on the same day."""
    events.add(pid, _pick(rng, ref, "systolic_blood_pressure_qof", pid.size, _MAIN_SYSTOLIC), day, sys)
    events.add(pid, _pick(rng, ref, "diastolic_blood_pressure_qof", pid.size, _MAIN_DIASTOLIC), day, dia)


def _normal_bp(rng, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return everyday (systolic, diastolic) readings, systolic rising with age (approximate)."""
    sys = np.clip(np.rint(rng.normal(118 + 0.45 * np.maximum(age - 18, 0), 13)), 90, 200)
    dia = np.clip(np.rint(rng.normal(76, 8, age.size)), 50, 120)
    return sys, dia


def _emit_indicator_events(rng, ref: _Reference, people: _People, conditions, cal: _Calendar, events: _EventBuffer) -> dict:
    """Emit SMI health-check and hypertension BP events whose outcome is drawn with p_i.

    The SMI health check and hypertension control share blood pressure readings, so the
    hypertension draw is made first and the SMI draw respects it: an SMI patient who
    passes the check always has a reading in the window, and one who fails has a missing
    component chosen among those the hypertension readings leave free. Neither rate is
    distorted by the other.
    """
    n = people.n
    smi_on, htn_on = conditions["smi"].on, conditions["hypertension"].on
    p_smi, p_htn = _rate(SMI_HEALTH_CHECK, people), _rate(HYPERTENSION_TO_TARGET, people)
    s_smi = smi_on & (rng.random(n) < p_smi)
    s_htn = htn_on & (rng.random(n) < p_htn)
    # Failures: about a third have no reading in the window at all, the rest an
    # uncontrolled latest reading; never "no reading" for an SMI patient passing the check.
    no_reading = htn_on & ~s_htn & (rng.random(n) < 0.35) & ~(smi_on & s_smi)
    w0 = cal.w0

    # Hypertension: history older than the window, then (unless no_reading) a latest day D
    # in the window whose lowest values decide, with earlier in-window readings of the
    # opposite kind so that only the latest one gives the right answer.
    who = np.flatnonzero(htn_on)
    thr = np.where(people.age[who] >= 80, 150, 140)
    hi = people.last[who]
    owner, _ = _expand(rng.integers(2, 11, who.size))
    day = np.minimum(_uniform_days(rng, np.full(owner.size, w0 - int(6 * _YEAR)), np.full(owner.size, w0 - 1)), hi[owner])
    mix = rng.random(owner.size) < 0.5
    cs, cd = _controlled(rng, thr[owner])
    us, ud = _uncontrolled(rng, thr[owner])
    _emit_bp(rng, ref, events, who[owner], np.maximum(day, people.dob[who][owner]), np.where(mix, cs, us), np.where(mix, cd, ud))

    has = ~no_reading[who]
    ok = s_htn[who]
    d_last = _uniform_days(rng, np.minimum(w0 + 60, hi), hi)
    cs, cd = _controlled(rng, thr)
    us, ud = _uncontrolled(rng, thr)
    sys_l, dia_l = np.where(ok, cs, us), np.where(ok, cd, ud)
    _emit_bp(rng, ref, events, who[has], d_last[has], sys_l[has], dia_l[has])
    # A repeat reading on the same day with higher values: the lowest value must win.
    rep = has & (rng.random(who.size) < np.where(ok, 0.30, 0.20))
    _emit_bp(rng, ref, events, who[rep], d_last[rep], sys_l[rep] + rng.integers(5, 31, int(rep.sum())), dia_l[rep] + rng.integers(0, 11, int(rep.sum())))
    n_earlier = np.where(has & (d_last - 1 >= w0), rng.choice(3, who.size, p=[0.4, 0.4, 0.2]), 0)
    owner, _ = _expand(n_earlier)
    day = _uniform_days(rng, np.full(owner.size, w0), d_last[owner] - 1)
    flip = rng.random(owner.size) < 0.6  # earlier readings mostly the opposite of the latest
    earlier_ok = np.where(flip, ~ok[owner], ok[owner])
    cs, cd = _controlled(rng, thr[owner])
    us, ud = _uncontrolled(rng, thr[owner])
    _emit_bp(rng, ref, events, who[owner], day, np.where(earlier_ok, cs, us), np.where(earlier_ok, cd, ud))

    # SMI health check: four components (BP, lipids, HbA1c, smoking status).
    who = np.flatnonzero(smi_on)
    m = who.size
    hi = people.last[who]
    bp_by_htn = htn_on[who]  # these patients' BP comes from the hypertension readings
    fail = ~s_smi[who]
    miss = (rng.random((m, 4)) < 0.45) & fail[:, None]
    miss[:, 0] = np.where(bp_by_htn, no_reading[who], miss[:, 0])
    none_missing = fail & ~miss.any(axis=1)
    col = np.where(bp_by_htn, rng.integers(1, 4, m), rng.integers(0, 4, m))
    miss[np.flatnonzero(none_missing), col[none_missing]] = True
    smoker = rng.random(m) < 0.40  # smoking is far commoner with SMI (approximate)
    old_lo, old_hi = w0 - 3 * 365, w0 - 1
    for j in range(4):  # four components, each vectorised over the SMI cohort
        emit = ~bp_by_htn if j == 0 else np.ones(m, dtype=bool)
        n_in = np.where(emit & ~miss[:, j], 1 + (rng.random(m) < 0.25), 0)
        n_old = np.where(emit & (rng.random(m) < 0.7), rng.integers(1, 3, m), 0)
        n_old = np.where(emit & miss[:, j] & (n_old == 0) & (rng.random(m) < 0.5), 1, n_old)
        o_in, _ = _expand(n_in)
        o_old, _ = _expand(n_old)
        owner = np.concatenate([o_in, o_old])
        day = np.concatenate([
            _uniform_days(rng, np.minimum(w0, hi[o_in]), hi[o_in]),
            np.minimum(_uniform_days(rng, np.full(o_old.size, old_lo), np.full(o_old.size, old_hi)), hi[o_old]),
        ])
        day = np.maximum(day, people.dob[who][owner])
        pid = who[owner]
        if j == 0:
            sys, dia = _normal_bp(rng, people.age[pid])
            _emit_bp(rng, ref, events, pid, day, sys, dia)
        elif j == 1:
            events.add(pid, _pick(rng, ref, "cholesterol_tests", pid.size), day, np.round(np.clip(rng.normal(5.0, 1.0, pid.size), 2.5, 9.5), 1))
        elif j == 2:
            events.add(pid, _pick(rng, ref, "hba1c_tests", pid.size), day, np.clip(np.rint(rng.normal(40, 8, pid.size)), 25, 120))
        else:
            cur = smoker[owner]
            code = np.where(cur, _pick(rng, ref, "lsmok_cod", pid.size), _pick(rng, ref, "exsmok_cod", pid.size))
            events.add(pid, code, day)
    return {"p_smi": p_smi, "s_smi": s_smi, "p_htn": p_htn, "s_htn": s_htn}


def _emit_other_areas(rng, ref: _Reference, people: _People, conditions, cal: _Calendar, events: _EventBuffer) -> None:
    """Emit the events later indicators need: smoking, BP case-finding, tests, statins, flu, SABA.

    Patients on the SMI register are skipped for BP, lipids, HbA1c and smoking (their
    health-check events above must stay exactly as drawn), and hypertension patients for
    BP (their readings decide treated-to-target).
    """
    n, r, w0 = people.n, cal.r, cal.w0
    smi_on, htn_on = conditions["smi"].on, conditions["hypertension"].on
    dm_on, copd_on, ast_on = conditions["diabetes"].on, conditions["copd"].on, conditions["asthma"].on
    age, hi, dob = people.age, people.last, people.dob
    ten_years = int(10 * _YEAR)

    # Smoking status for adults: current smoking ~22% in decile 1 down to ~8% in decile 10
    # (approximate ONS APS gradient). Only current/ex-smoker lists exist (no never-smoked
    # list is shared), so never-smokers carry no status code.
    adult = (age >= 16) & ~smi_on
    current = adult & (rng.random(n) < 0.22 - 0.0155 * (people.decile - 1))
    ex = adult & ~current & (rng.random(n) < 0.30)
    coded = np.flatnonzero((current | ex) & (rng.random(n) < 0.9))
    owner, _ = _expand(rng.integers(1, 7, coded.size))
    pid = coded[owner]
    day = _uniform_days(rng, np.maximum(dob[pid] + int(16 * _YEAR), r - ten_years), hi[pid])
    code = np.where(current[pid], _pick(rng, ref, "lsmok_cod", pid.size), _pick(rng, ref, "exsmok_cod", pid.size))
    events.add(pid, code, day)

    # BP for people not on the hypertension register: 40+ with a reading in the last five
    # years at the OTHER_AREAS rate (fewer in Core20 and in Black groups); 18-39 sometimes.
    cfg = OTHER_AREAS["bp_case_finding_40plus_within_5y"]
    free = ~smi_on & ~htn_on
    p_recent = cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0) * np.where(people.eth6 == 3, cfg["black_multiplier"], 1.0)
    forty = free & (age >= 40)
    recent = forty & (rng.random(n) < p_recent)
    older_only = forty & ~recent & (rng.random(n) < 0.5)
    young = free & (age >= 18) & (age < 40) & (rng.random(n) < 0.7)
    n_recent = np.where(recent, rng.integers(2, 9, n), 0)
    n_older = np.where(recent, rng.integers(1, 7, n), 0) + np.where(older_only, rng.integers(1, 4, n), 0)
    n_young = np.where(young, rng.integers(1, 4, n), 0)
    o1, _ = _expand(n_recent)
    o2, _ = _expand(n_older)
    o3, _ = _expand(n_young)
    pid = np.concatenate([o1, o2, o3])
    day = np.concatenate([
        _uniform_days(rng, np.full(o1.size, r - 1800), hi[o1]),  # safely inside five years
        np.minimum(_uniform_days(rng, np.full(o2.size, r - ten_years), np.full(o2.size, r - 1900)), hi[o2]),
        _uniform_days(rng, np.maximum(dob[o3] + int(16 * _YEAR), r - ten_years), hi[o3]),
    ])
    sys, dia = _normal_bp(rng, age[pid])
    _emit_bp(rng, ref, events, pid, day, sys, dia)

    # Cholesterol and HbA1c tests for adults 40+ (NHS Health Check style), and six-monthly
    # HbA1c for people with diabetes.
    for codelist, mean, sd, lo_v, hi_v, digits in (("cholesterol_tests", 5.0, 1.0, 2.5, 9.5, 1), ("hba1c_tests", 38.0, 6.0, 25.0, 120.0, 0)):
        tested = free | (htn_on & ~smi_on)
        owner, _ = _expand(np.where(tested & (age >= 40) & (rng.random(n) < 0.65), rng.integers(1, 8, n), 0))
        day = _uniform_days(rng, np.full(owner.size, r - 2190), hi[owner])
        val = np.round(np.clip(rng.normal(mean, sd, owner.size), lo_v, hi_v), digits)
        events.add(owner, _pick(rng, ref, codelist, owner.size), day, val)
    dm = np.flatnonzero(dm_on & ~smi_on)
    owner, k = _expand(np.full(dm.size, 6))
    pid = dm[owner]
    day = np.maximum(hi[pid] - k * 182 - rng.integers(0, 31, owner.size), dob[pid])
    events.add(pid, _pick(rng, ref, "hba1c_tests", pid.size), day, np.clip(np.rint(rng.normal(58, 12, pid.size)), 30, 140))

    # Statins: repeat issues every 28 or 56 days from a start up to ten years back; some
    # hypertension patients (fewer in Core20), most adults with diabetes and a third of
    # other over-60s (roughly NHS statin coverage).
    cfg = OTHER_AREAS["hypertension_statin"]
    p = np.where(htn_on, cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0), 0.0)
    p = np.where(dm_on & (age >= 40), np.maximum(p, 0.7), p)
    p = np.where((age >= 60) & ~htn_on & ~dm_on, 0.3, p)
    users = np.flatnonzero(rng.random(n) < p)
    start = np.maximum(hi[users] - rng.integers(90, 3653, users.size), dob[users] + int(30 * _YEAR))
    stop = np.where(rng.random(users.size) < 0.15, start + np.floor(rng.random(users.size) * (hi[users] - start)).astype(np.int64), hi[users])
    interval = np.where(rng.random(users.size) < 0.8, 28, 56)
    count = np.clip((stop - start) // interval + 1, 1, 150)
    product = _pick(rng, ref, "statin_medication", users.size)
    owner, k = _expand(count)
    day = np.minimum(start[owner] + k * interval[owner] + rng.integers(0, 7, owner.size), hi[users][owner])
    events.add(users[owner], product[owner], day)

    # Flu vaccination: COPD register at the OTHER_AREAS rate for the current campaign,
    # also 65+ and people with asthma or diabetes; the nine previous campaigns too.
    cfg = OTHER_AREAS["copd_flu_current_campaign"]
    p_copd = cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0)
    eligible = (age >= 65) | ast_on | dm_on
    for back in range(10):  # ten campaigns
        cs = _days(cal.campaign_start.replace(year=cal.campaign_start.year - back))
        p = np.where(copd_on, p_copd if back == 0 else 0.75, np.where(eligible, 0.70, 0.0))
        got = np.flatnonzero((rng.random(n) < p) & (hi >= cs))
        end = np.minimum(cs + 120, hi[got])
        day = cs + np.floor(rng.random(got.size) ** 2 * (end - cs + 1)).astype(np.int64)
        events.add(got, _pick(rng, ref, "flu_cod", got.size), day)

    # SABA reliever issues for asthma: over-dispersed counts (gamma-Poisson) so some have
    # 6+ a year, more in Core20; plus two earlier years.
    cfg = OTHER_AREAS["asthma_saba_issues_per_year"]
    ast = np.flatnonzero(ast_on)
    mean = cfg["mean"] * np.where(people.is_core20[ast], cfg["core20_multiplier"], 1.0) * np.where(age[ast] < 18, 1.1, 1.0)
    lam = rng.gamma(1.2, mean / 1.2)
    product = _pick(rng, ref, "saba_inhalers_resp02", ast.size)
    o1, _ = _expand(rng.poisson(lam))
    o2, _ = _expand(rng.poisson(2 * lam))
    owner = np.concatenate([o1, o2])
    day = np.concatenate([
        _uniform_days(rng, np.minimum(w0, hi[ast][o1]), hi[ast][o1]),
        np.minimum(_uniform_days(rng, np.full(o2.size, w0 - 730), np.full(o2.size, w0 - 1)), hi[ast][o2]),
    ])
    pid = ast[owner]
    events.add(pid, product[owner], np.maximum(day, dob[pid]))


# --- postcodes and defects ------------------------------------------------------------------

_JUNK_POSTCODES = ("12345", "NOT KNOWN", "UNKNOWN", "N/A", "XXXXXX", "NFA")


def _draw_postcodes(rng, ref: _Reference, people: _People, defect_kind: np.ndarray) -> tuple[pl.Series, dict]:
    """Return the postcode column as written, with formatting variation and the defects."""
    n = people.n
    home = ref.postcodes.gather(people.postcode)
    country = rng.integers(0, 3, n)
    is_foreign = defect_kind == 3
    sizes = np.array([series.len() for series in ref.foreign])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pick = offsets[country] + np.floor(rng.random(n) * sizes[country]).astype(np.int64)
    foreign = pl.concat(list(ref.foreign)).gather(pick)

    frame = pl.DataFrame({
        "home": home,
        "foreign": foreign,
        "kind": defect_kind,
        "fmt": rng.random(n),
        "blank": rng.random(n),
        "bad": rng.integers(0, 4, n),
        "junk": pl.Series(_JUNK_POSTCODES).gather(rng.integers(0, len(_JUNK_POSTCODES), n)),
    })
    base = pl.when(pl.col("kind") == 3).then(pl.col("foreign")).otherwise(pl.col("home"))
    # Formatting variation is not a defect: the pipeline must normalise it away.
    formatted = (
        pl.when(pl.col("fmt") < 0.05).then(base.str.to_lowercase())
        .when(pl.col("fmt") < 0.10).then(base.str.replace_all(" ", ""))
        .when(pl.col("fmt") < 0.13).then(base.str.replace(" ", "  "))
        .when(pl.col("fmt") < 0.15).then(pl.concat_str([pl.lit(" "), base, pl.lit("  ")]))
        .otherwise(base)
    )
    squashed = pl.col("home").str.replace_all(" ", "")
    invalid = (
        pl.when(pl.col("bad") == 0).then(pl.col("home").str.split(" ").list.first())  # outward code only
        .when(pl.col("bad") == 1).then(pl.concat_str([squashed.str.replace_all(r"(.)", "$1 "), pl.lit("X")]))  # spaced out, stray letter
        .when(pl.col("bad") == 2).then(pl.col("home").str.slice(0, pl.col("home").str.len_chars() - 1))  # truncated inward code
        .otherwise(pl.col("junk"))
    )
    blank = pl.when(pl.col("blank") < 0.4).then(pl.lit(None, dtype=pl.String)).when(pl.col("blank") < 0.8).then(pl.lit("")).otherwise(pl.lit("   "))
    out = frame.select(
        pl.when(pl.col("kind") == 1).then(blank).when(pl.col("kind") == 2).then(invalid).otherwise(formatted).alias("postcode"),
        pl.col("kind"),
    )
    # Guard: an "invalid" postcode must not normalise to a valid shape.
    shape_ok = pl.col("postcode").str.to_uppercase().str.replace_all(r"\s", "").str.contains(_POSTCODE_SHAPE)
    out = out.with_columns(pl.when((pl.col("kind") == 2) & shape_ok.fill_null(False)).then(pl.lit("NOT KNOWN")).otherwise(pl.col("postcode")).alias("postcode"))
    counts = {
        "blank_postcode": int((defect_kind == 1).sum()),
        "invalid_postcode": int((defect_kind == 2).sum()),
        "non_english_postcode": int(is_foreign.sum()),
        "non_english_postcode_by_country": {
            name: int((is_foreign & (country == c)).sum()) for c, name in enumerate(("wales", "scotland", "northern_ireland"))
        },
    }
    return out["postcode"], counts


def _patient_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """Return n distinct 13-digit pseudonymous ids: a seeded bijection of 0..n-1 on [0, 2^40).

    Odd multipliers, additions and xor-shifts are each invertible modulo 2^40, so distinct
    inputs give distinct ids without any uniqueness check.
    """
    mask = np.uint64(2**40 - 1)
    a, c = (np.uint64(int(rng.integers(0, 2**39)) * 2 + 1) for _ in range(2))
    b = np.uint64(int(rng.integers(0, 2**40)))
    x = (np.arange(n, dtype=np.uint64) * a + b) & mask
    x ^= x >> np.uint64(19)
    x = (x * c) & mask
    x ^= x >> np.uint64(17)
    ids = x
    return pl.Series("patient_id", ids).cast(pl.String).str.zfill(13)


def _dates(days: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
    """Return a Date series of day numbers, null where `missing`."""
    s = pl.Series(days.astype(np.int32)).cast(pl.Date)
    if missing is not None:
        s = pl.select(pl.when(pl.Series(missing)).then(None).otherwise(s)).to_series()
    return s


def _patients_frame(ref: _Reference, people: _People, ids: pl.Series, postcodes: pl.Series) -> pl.DataFrame:
    """Return the patients table in the input contract's column order and types."""
    frame = pl.DataFrame({
        "patient_id": ids,
        "practice_code": ref.practice_codes.gather(people.practice),
        "postcode": postcodes,
        "lsoa_code": pl.Series([None] * people.n, dtype=pl.String),
        "date_of_birth": _dates(people.dob),
        "year_of_birth": pl.Series([None] * people.n, dtype=pl.Int32),
        "month_of_birth": pl.Series([None] * people.n, dtype=pl.Int32),
        "sex": pl.Series(people.sex, dtype=pl.String),
        "registration_start_date": _dates(people.start),
        "registration_end_date": _dates(np.maximum(people.end, 0), people.end < 0),
    })
    return frame.select(INPUT_PATIENTS.names).cast(INPUT_PATIENTS.schema)


def _events_frame(ref: _Reference, ids: pl.Series, rows: pl.DataFrame) -> pl.DataFrame:
    """Return the events table in the input contract's column order and types."""
    frame = pl.DataFrame({
        "patient_id": ids.gather(rows["pid"]),
        "code": ref.codes.gather(rows["code"]),
        "event_date": rows["day"].cast(pl.Int32).cast(pl.Date),
        "value": rows["value"],
    })
    return frame.select(INPUT_EVENTS.names).cast(INPUT_EVENTS.schema)


# --- ground truth ---------------------------------------------------------------------------

_REGISTER_IDS = {
    "smi": "smi_register", "hypertension": "hypertension_register", "ld": "ld_register", "autism": "autism",
    "copd": "copd_register", "asthma": "asthma_register", "diabetes": "diabetes_register", "epilepsy": "epilepsy_register",
}


def _ground_truth(people, conditions, outcomes, defect_kind, postcode_defects, eth, cal, *, seed, n_patients, icb_code, defect_rate, n_duplicates) -> dict:
    """Summarise what was injected, with groups as the pipeline can observe them."""
    reg = people.registered
    # The pipeline sees Core20 only through the written postcode: a blank, invalid or
    # non-English postcode puts the patient in neither group.
    observable = ~np.isin(defect_kind, (1, 2, 3))
    groups = {"core20": observable & people.is_core20, "rest": observable & ~people.is_core20}

    def indicator(cond: str, p: np.ndarray, s: np.ndarray, cfg: dict) -> dict:
        denom = reg & conditions[cond].on & (people.age >= 18)
        out: dict = {}
        for name, mask in (*groups.items(), ("all_patients", np.ones(people.n, dtype=bool))):
            sel = denom & mask
            n_den = int(sel.sum())
            out[name] = {
                "n_denominator": n_den,
                "expected_rate": float(p[sel].mean()) if n_den else None,
                "realised_numerator": int(s[sel].sum()),
            }
        c, r = out["core20"]["expected_rate"], out["rest"]["expected_rate"]
        out["gap_core20_vs_rest"] = (c - r) if c is not None and r is not None else None
        out["multipliers"] = cfg
        return out

    registers = {}
    for key, reg_id in _REGISTER_IDS.items():
        st = conditions[key]
        registers[reg_id] = {
            "n_registered": int((reg & st.on).sum()),
            "n_resolved_off_register": int((reg & st.resolved).sum()),
            "n_rediagnosed_on_register": int((reg & st.rediagnosed).sum()),
        }
    return {
        "generator": GENERATOR,
        "seed": seed,
        "n_patients": n_patients,
        "icb_code": icb_code,
        "imd_vintage": IMD_VINTAGE,
        "reporting_month": cal.reporting_month.isoformat(),
        "reference_date": cal.reference_date.isoformat(),
        "window_start": cal.window_start.isoformat(),
        "n_registered_at_reference_date": int(reg.sum()),
        "n_deregistered_before_reference_date": int((~reg).sum()),
        "registers": registers,
        "indicators": {
            "smi_health_check": indicator("smi", outcomes["p_smi"], outcomes["s_smi"], SMI_HEALTH_CHECK),
            "hypertension_treated_to_target": indicator("hypertension", outcomes["p_htn"], outcomes["s_htn"], HYPERTENSION_TO_TARGET),
        },
        "other_areas_multipliers": OTHER_AREAS,
        "ethnicity": {
            "n_coded": int((eth.state == 0).sum()),
            "n_not_stated": int((eth.state == 1).sum()),
            "n_no_code": int(np.isin(eth.state, (2, 3)).sum()),
            "n_superseded_code": int(eth.superseded.sum()),
        },
        "defects": {
            "defect_rate": defect_rate,
            **postcode_defects,
            "missing_ethnicity": int((eth.state == 3).sum()),
            "duplicate_event_rows": n_duplicates,
        },
    }
