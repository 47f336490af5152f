"""Generate a synthetic practice-register extract with known, injected inequality gaps.

The extract is a test oracle for the whole pipeline: patients live at real live postcodes
of one ICB, are registered at its real active practices, and carry real SNOMED CT / dm+d
codes from the pinned codelists. Nothing clinical or geographic is invented; only the
people are. Every register and every available indicator of the library (and Core20 by
IMD 2019) has a ground truth written beside the extract - the realised count and, where
the generator draws the outcome directly, its expected rate - so a run can be checked
against what was injected. Where the outcome is drawn, the ground truth also holds the
expected rate of every group the gap table will show for Core20 vs rest and for broad
ethnicity (groups as the pipeline observes them, after the injected defects) and the
expected gap of each against the table's reference group, so the published gaps can be
checked against the injected ones. The optional linked feeds (maternity, cancer registry,
HES tooth extractions, MHSDS contacts) are written too, unless `include_feeds=False`.

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

# The shipped ICS parameters (reference_data/definitions/ics.yaml) the ground truth
# assumes; a test checks they still agree.
FLU_CAMPAIGN_START = (9, 1)  # month, day; the COVID-19 autumn campaign uses the same start
RELIEVER_THRESHOLD = 6
CYP_MAX_AGE = 17

# Library indicators drawn directly (synthetic rates near published levels where there
# are any; every multiplier is a synthetic choice, the gap the pipeline must recover).
LIBRARY_RATES = {
    "copd_pneumococcal_ever": {"base_rate": 0.72, "core20_multiplier": 0.90},
    "copd_covid_current_campaign": {
        "base_rate": 0.62, "core20_multiplier": 0.85,
        "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.9, "Asian": 0.85, "Black": 0.7, "Other": 0.9},
    },
    "cyp_type1_cgm_12m": {
        "base_rate": 0.72, "core20_multiplier": 0.80,
        "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.9, "Asian": 0.85, "Black": 0.8, "Other": 0.9},
    },
    "cyp_diabetes_bp_12m": {"base_rate": 0.70, "core20_multiplier": 0.85},
    "qrisk_recorded_5y_40_84": {"base_rate": 0.40},
    "qrisk_high_statin": {"base_rate": 0.45, "core20_multiplier": 0.85},
    "diabetes_type1_share": {"cyp": 0.95, "adults": 0.08, "type_coded": 0.97},
}
# Linked feeds (synthetic rates; gaps in the directions reported for each area).
FEED_RATES = {
    "maternity_booking_12m": {"aged_18_40": 0.07, "aged_16_17_or_41_45": 0.02},
    "continuity_of_carer": {
        "base_rate": 0.30, "core20_multiplier": 1.25,
        "ethnicity_multipliers": {"White": 1.0, "Mixed": 1.1, "Asian": 1.15, "Black": 1.25, "Other": 1.1},
    },
    "cancer_diagnosis_12m": {"at_65": 0.004, "per_year_of_age": 0.06, "cap": 0.03, "min_age": 30},
    "cancer_stage_1_2": {"base_rate": 0.58, "core20_multiplier": 0.88, "aged_75_plus_multiplier": 0.90, "unstaged_share": 0.15},
    "caries_extraction_12m_aged_0_10": {"base_rate": 0.004, "core20_multiplier": 2.5},
    "cyp_mh_contact_12m": {
        "base_rate": 0.07, "core20_multiplier": 1.10, "under_5_multiplier": 0.30,
        "ethnicity_multipliers": {"White": 1.0, "Mixed": 0.9, "Asian": 0.6, "Black": 0.7, "Other": 0.8},
    },
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
    "saba_inhalers_resp02", "statin_medication", "dmtype1_cod", "dmtype2_cod", "diabetes_cgm_dmd",
    "qriskscore_cod", "pneumococcal_vaccination_gmsde", "covadm1_5",
)

_CLUSTER_IDS = tuple(i for c in _CONDITIONS for i in (c.diagnosis, c.resolved) if i is not None)
_TYPE_SPECIFIC = {"dm_cod": ("dmtype1_cod", "dmtype2_cod")}

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
    include_feeds: bool = True,
) -> dict:
    """Write a synthetic monthly extract (patients, events, optional feeds) with its ground truth.

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
        include_feeds: also write the optional linked feeds (maternity, cancer_registry,
            dental_extractions, mh_contacts); without them their indicators are not available.

    Returns:
        The ground truth (also written as `ground_truth.json`): register counts and
        expected prevalences; for every available indicator, per Core20/rest group and
        overall, the denominator, the realised numerator and (where the outcome is drawn
        directly) the expected rate and the standard deviation of the numerator; the
        multipliers used and the count of every injected defect. Drawn indicators also
        carry `breakdowns`: for the gap table's `core20` (IMD 2019) and `ethnicity_broad`
        breakdowns, the reference group, per observable group the same figures, and per
        compared group the expected gap against the reference (a difference of
        proportions, as the gap table's `gap`) with its standard deviation.
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
    latest_dx = _emit_diagnoses(rng, ref, people, conditions, events)
    eth = _emit_ethnicity(rng, ref, people, defect_kind, events)
    outcomes = _emit_indicator_events(rng, ref, people, conditions, cal, events)
    outcomes.update(_emit_other_areas(rng, ref, people, conditions, cal, events))
    outcomes.update(_emit_library_events(rng, ref, people, conditions, latest_dx, cal, events))
    feed_rows, feed_outcomes = _draw_feeds(rng, people, cal)
    outcomes.update(feed_outcomes)
    postcodes, postcode_defects = _draw_postcodes(rng, ref, people, defect_kind)

    event_rows, n_duplicates = events.finish(rng, defect_rate)
    outcomes.update(_derived_outcomes(ref, event_rows, people, cal, reference_dir))
    patient_ids = _patient_ids(rng, n_patients)
    patients = _patients_frame(ref, people, patient_ids, postcodes)
    events_frame = _events_frame(ref, patient_ids, event_rows)
    feeds = _feed_frames(feed_rows, patient_ids, rng)

    truth = _ground_truth(
        people, conditions, outcomes, defect_kind, postcode_defects, eth, cal,
        seed=seed, n_patients=n_patients, icb_code=icb_code, defect_rate=defect_rate,
        n_duplicates=n_duplicates, include_feeds=include_feeds,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    patients.write_parquet(out / "patients.parquet", compression="zstd", statistics=True)
    events_frame.write_parquet(out / "events.parquet", compression="zstd", statistics=True)
    for name, frame in feeds.items():
        target = out / f"{name}.parquet"
        if include_feeds:
            frame.write_parquet(target, compression="zstd", statistics=True)
        else:
            target.unlink(missing_ok=True)
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = {
        "generator": GENERATOR,
        "seed": seed,
        "n_patients": n_patients,
        "reporting_month": reporting_month.isoformat(),
        "reference_date": cal.reference_date.isoformat(),
        "icb_code": icb_code,
        "defect_rate": defect_rate,
        "row_counts": {"patients": patients.height, "events": events_frame.height,
                       **({name: frame.height for name, frame in feeds.items()} if include_feeds else {})},
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
        start_month, start_day = FLU_CAMPAIGN_START
        campaign = date(r.year, start_month, start_day)
        campaign = campaign if campaign <= r else campaign.replace(year=r.year - 1)
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
            # Diabetes diagnoses are drawn from the codes that name no type, so that the
            # type code written on the same day alone decides type 1 or type 2.
            others += [loader.read_codelist(o, reference_dir)["code"] for o in _TYPE_SPECIFIC.get(cid, ())]
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
    p_on: np.ndarray  # each person's probability of being on the register (the expected prevalence)


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
        out[c.name] = _ConditionState(
            ever=ever, on=ever & ~resolved, resolved=resolved, rediagnosed=rediag, p_on=p_ever * (1.0 - c.resolved_share)
        )
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


def _emit_diagnoses(rng, ref, people: _People, conditions: dict[str, _ConditionState], events: _EventBuffer) -> dict[str, np.ndarray]:
    """Emit diagnosis and resolved codes whose order makes each register state true.

    Returns each condition's latest diagnosis day for patients on its register (-1 for the
    rest), so that later codes (e.g. the diabetes type) can sit on that day without moving it.
    """
    latest: dict[str, np.ndarray] = {}
    for c in _CONDITIONS:
        st = conditions[c.name]
        who = np.flatnonzero(st.ever)
        latest[c.name] = np.full(people.n, -1, dtype=np.int64)
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
        latest[c.name][who] = np.where(resolved, -1, np.where(second | rediag, cc, a))
    return latest


@dataclass
class _EthnicityCounts:
    state: np.ndarray  # 0 coded, 1 not stated, 2 no code (baseline), 3 no code (defect)
    superseded: np.ndarray
    recorded_group6: np.ndarray  # grouping_6 index (0-4) of the latest code when coded, else -1


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
    # What the pipeline will read: the codelist's broad group of the latest (winning) code.
    recorded = np.full(n, -1, dtype=np.int64)
    recorded[coded] = ref.eth16_group6[g16 - 1]
    return _EthnicityCounts(state=state, superseded=superseded, recorded_group6=recorded)


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


def _emit_other_areas(rng, ref: _Reference, people: _People, conditions, cal: _Calendar, events: _EventBuffer) -> dict:
    """Emit the events later indicators need: smoking, BP case-finding, tests, QRISK, statins, flu, SABA.

    Patients on the SMI register are skipped for BP, lipids, HbA1c and smoking (their
    health-check events above must stay exactly as drawn), and hypertension patients for
    BP (their readings decide treated-to-target).

    Returns the drawn outcomes the ground truth needs: BP case-finding probabilities, who
    has a QRISK score of 10 or more as their latest in five years, who got a flu vaccine
    in the current campaign.
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
    p_case_finding = np.where(forty, p_recent, 0.0)
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

    # QRISK scores (value = 10-year CVD risk, %) for 40-84s, as NHS Health Checks record
    # them: one within the last five years (safely inside the window), and for some an
    # older one outside it, so that only the latest decides. Risk rises with age and is
    # higher for men (synthetic, roughly QRISK3's shape).
    cfg = LIBRARY_RATES["qrisk_recorded_5y_40_84"]
    scored = np.flatnonzero((age >= 40) & (age <= 84) & (rng.random(n) < cfg["base_rate"]))
    median = 2.5 * np.exp(0.075 * (age[scored] - 40)) * np.where(people.sex[scored] == "M", 1.4, 1.0)
    value = np.round(np.clip(median * np.exp(rng.normal(0.0, 0.45, scored.size)), 0.5, 60.0), 1)
    value = np.where(rng.random(scored.size) < 0.02, 10.0, value)  # some exactly at the threshold
    day = _uniform_days(rng, np.full(scored.size, r - 1800), hi[scored])
    events.add(scored, _pick(rng, ref, "qriskscore_cod", scored.size), day, value)
    older = scored[rng.random(scored.size) < 0.3]
    older_value = np.round(np.clip(2.5 * np.exp(0.075 * (age[older] - 45)) * np.exp(rng.normal(0.0, 0.6, older.size)), 0.5, 60.0), 1)
    events.add(older, _pick(rng, ref, "qriskscore_cod", older.size),
               np.minimum(_uniform_days(rng, np.full(older.size, r - 3650), np.full(older.size, r - 1900)), hi[older]), older_value)
    qrisk_high = np.zeros(n, dtype=bool)
    qrisk_high[scored] = value >= 10.0

    # Statins: repeat issues every 28 or 56 days from a start up to ten years back; some
    # hypertension patients (fewer in Core20), most adults with diabetes, some with a high
    # QRISK score (fewer in Core20) and a third of other over-60s (roughly NHS statin coverage).
    cfg = OTHER_AREAS["hypertension_statin"]
    p = np.where(htn_on, cfg["base_rate"] * np.where(people.is_core20, cfg["core20_multiplier"], 1.0), 0.0)
    p = np.where(dm_on & (age >= 40), np.maximum(p, 0.7), p)
    q = LIBRARY_RATES["qrisk_high_statin"]
    p = np.where(qrisk_high & ~htn_on & ~dm_on, q["base_rate"] * np.where(people.is_core20, q["core20_multiplier"], 1.0), p)
    p = np.where((age >= 60) & ~htn_on & ~dm_on & ~qrisk_high, 0.3, p)
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
    flu_current = np.zeros(n, dtype=bool)
    for back in range(10):  # ten campaigns
        cs = _days(cal.campaign_start.replace(year=cal.campaign_start.year - back))
        p = np.where(copd_on, p_copd if back == 0 else 0.75, np.where(eligible, 0.70, 0.0))
        got = np.flatnonzero((rng.random(n) < p) & (hi >= cs))
        if back == 0:
            flu_current[got] = True
        end = np.minimum(cs + 120, hi[got])
        day = cs + np.floor(rng.random(got.size) ** 2 * (end - cs + 1)).astype(np.int64)
        events.add(got, _pick(rng, ref, "flu_cod", got.size), day)

    # SABA reliever issues for asthma: over-dispersed counts (gamma-Poisson, shape 1.2) so
    # some have 6+ a year, more in Core20; plus two earlier years. Issues in the last year
    # fall on distinct days (one product per patient: two on a day would be one row).
    cfg = OTHER_AREAS["asthma_saba_issues_per_year"]
    ast = np.flatnonzero(ast_on)
    mean = cfg["mean"] * np.where(people.is_core20[ast], cfg["core20_multiplier"], 1.0) * np.where(age[ast] < 18, 1.1, 1.0)
    lam = rng.gamma(1.2, mean / 1.2)
    product = _pick(rng, ref, "saba_inhalers_resp02", ast.size)
    n_recent = np.minimum(rng.poisson(lam), 300)
    o1, k1 = _expand(n_recent)
    o2, _ = _expand(rng.poisson(2 * lam))
    owner = np.concatenate([o1, o2])
    shift = rng.random(ast.size)  # one per patient: evenly spaced offsets stay distinct
    recent_day = hi[ast][o1] - np.floor((k1 + shift[o1]) * 364 / n_recent[o1]).astype(np.int64)
    day = np.concatenate([
        np.maximum(recent_day, w0),
        np.minimum(_uniform_days(rng, np.full(o2.size, w0 - 730), np.full(o2.size, w0 - 1)), hi[ast][o2]),
    ])
    pid = ast[owner]
    events.add(pid, product[owner], np.maximum(day, dob[pid]))
    saba_mean = np.zeros(n)
    saba_mean[ast] = mean
    return {"p_case_finding": p_case_finding, "qrisk_high": qrisk_high, "flu_current": flu_current,
            "p_flu_copd": p_copd, "saba_mean": saba_mean}


# --- the rest of the indicator library ------------------------------------------------------

def _multiplied(cfg: dict, people: _People) -> np.ndarray:
    """Return base rate x Core20 multiplier x ethnic-group multiplier (missing keys: 1), clipped to [0, 1]."""
    eth = np.array([cfg.get("ethnicity_multipliers", {}).get(g, 1.0) for g in _ETH6])
    p = cfg["base_rate"] * np.where(people.is_core20, cfg.get("core20_multiplier", 1.0), 1.0) * eth[people.eth6]
    return np.clip(p, 0.0, 1.0)


def _emit_library_events(rng, ref: _Reference, people: _People, conditions, latest_dx: dict, cal: _Calendar,
                         events: _EventBuffer) -> dict:
    """Emit diabetes type codes, CGM issues, CYP diabetes BP, pneumococcal and COVID vaccines.

    Each outcome is drawn directly with its probability p_i (returned for the ground truth),
    and the events written make exactly that outcome true under the definitions' rules.
    """
    n, r, w0 = people.n, cal.r, cal.w0
    age, hi, dob = people.age, people.last, people.dob
    dm_on, copd_on = conditions["diabetes"].on, conditions["copd"].on
    cyp = age <= CYP_MAX_AGE

    # Diabetes type, coded on the latest diagnosis day (so the register state is unchanged);
    # a few patients carry no type code at all (they are in no type-specific denominator).
    shares = LIBRARY_RATES["diabetes_type1_share"]
    type1 = dm_on & (rng.random(n) < np.where(cyp, shares["cyp"], shares["adults"]))
    typed = dm_on & (rng.random(n) < shares["type_coded"])
    who = np.flatnonzero(typed)
    code = np.where(type1[who], _pick(rng, ref, "dmtype1_cod", who.size), _pick(rng, ref, "dmtype2_cod", who.size))
    events.add(who, code, latest_dx["diabetes"][who])

    # CGM / flash monitor issues for CYP with type 1: 2-6 issues in the window when drawn,
    # otherwise sometimes one lapsed issue before it.
    cyp_t1 = typed & type1 & cyp
    p_cgm = np.where(cyp_t1, _multiplied(LIBRARY_RATES["cyp_type1_cgm_12m"], people), 0.0)
    s_cgm = cyp_t1 & (rng.random(n) < p_cgm)
    users = np.flatnonzero(s_cgm)
    owner, _ = _expand(rng.integers(2, 7, users.size))
    pid = users[owner]
    events.add(pid, _pick(rng, ref, "diabetes_cgm_dmd", pid.size), _uniform_days(rng, np.full(pid.size, w0), hi[pid]))
    lapsed = np.flatnonzero(cyp_t1 & ~s_cgm & (rng.random(n) < 0.25))
    day = np.maximum(_uniform_days(rng, np.full(lapsed.size, w0 - 700), np.full(lapsed.size, w0 - 1)), dob[lapsed])
    events.add(lapsed, _pick(rng, ref, "diabetes_cgm_dmd", lapsed.size), day)

    # Blood pressure for CYP with diabetes (their HbA1c comes with every diabetic's
    # six-monthly tests): a reading in the window when drawn, else sometimes an older one.
    cyp_dm = dm_on & cyp
    p_bp = np.where(cyp_dm, _multiplied(LIBRARY_RATES["cyp_diabetes_bp_12m"], people), 0.0)
    s_bp = cyp_dm & (rng.random(n) < p_bp)
    measured = np.flatnonzero(s_bp)
    old = np.flatnonzero(cyp_dm & ~s_bp & (rng.random(n) < 0.5))
    pid = np.concatenate([measured, old])
    day = np.concatenate([
        _uniform_days(rng, np.full(measured.size, w0), hi[measured]),
        np.maximum(_uniform_days(rng, np.full(old.size, w0 - 700), np.full(old.size, w0 - 1)), dob[old]),
    ])
    sys = np.clip(np.rint(rng.normal(100 + 1.2 * age[pid], 9)), 80, 140)
    dia = np.clip(np.rint(rng.normal(62, 7, pid.size)), 40, 90)
    _emit_bp(rng, ref, events, pid, day, sys, dia)

    # Pneumococcal vaccination for COPD (ever), and for some other over-65s.
    p_pneumo = np.where(copd_on, _multiplied(LIBRARY_RATES["copd_pneumococcal_ever"], people), 0.0)
    s_pneumo = copd_on & (rng.random(n) < p_pneumo)
    got = np.flatnonzero(s_pneumo | (~copd_on & (age >= 65) & (rng.random(n) < 0.6)))
    day = np.maximum(_uniform_days(rng, hi[got] - 5000, hi[got]), dob[got] + int(2 * _YEAR))
    events.add(got, _pick(rng, ref, "pneumococcal_vaccination_gmsde", got.size), np.minimum(day, hi[got]))

    # COVID-19 vaccination in the current autumn campaign for COPD (and some over-65s),
    # plus doses in the three previous campaigns.
    p_covid = np.where(copd_on, _multiplied(LIBRARY_RATES["copd_covid_current_campaign"], people), 0.0)
    s_covid = copd_on & (rng.random(n) < p_covid)
    for back in range(4):
        cs = _days(cal.campaign_start.replace(year=cal.campaign_start.year - back))
        chosen = s_covid if back == 0 else (copd_on | (age >= 65)) & (rng.random(n) < 0.7)
        if back == 0:
            chosen = chosen | (~copd_on & (age >= 65) & (rng.random(n) < 0.5))
        got = np.flatnonzero(chosen & (hi >= cs))
        day = _uniform_days(rng, np.full(got.size, cs), np.minimum(cs + 90, hi[got]))
        events.add(got, _pick(rng, ref, "covadm1_5", got.size), day)
    return {"type1": type1, "typed": typed, "p_cgm": p_cgm, "s_cgm": s_cgm, "p_bp_cyp": p_bp,
            "p_pneumo": p_pneumo, "s_pneumo": s_pneumo, "p_covid": p_covid, "s_covid": s_covid}


# --- optional linked feeds --------------------------------------------------------------------

def _draw_feeds(rng, people: _People, cal: _Calendar) -> tuple[dict[str, dict], dict]:
    """Draw the four feeds' rows (patient index, date, columns) and the outcomes behind them.

    Each feed also carries rows the pipeline must ignore: older records outside the
    12-month window, records dated after R, exact duplicate rows, and rows for patient ids
    that are not in the GP extract.
    """
    n, r, w0 = people.n, cal.r, cal.w0
    age, hi, dob = people.age, people.last, people.dob
    rows: dict[str, dict] = {}

    # Maternity: women 16-45 with an antenatal booking in the last 12 months.
    cfg = FEED_RATES["maternity_booking_12m"]
    woman = people.sex == "F"
    p_book = np.where(woman & (age >= 18) & (age <= 40), cfg["aged_18_40"],
                      np.where(woman & (age >= 16) & (age <= 45), cfg["aged_16_17_or_41_45"], 0.0))
    booked = rng.random(n) < p_book
    p_coc = np.where(booked, _multiplied(FEED_RATES["continuity_of_carer"], people), 0.0)
    s_coc = booked & (rng.random(n) < p_coc)
    b = np.flatnonzero(booked)
    earlier = np.flatnonzero(woman & (age >= 20) & (age <= 45) & (rng.random(n) < 0.3))
    future = np.flatnonzero(woman & (age >= 18) & (age <= 40) & ~booked & (rng.random(n) < 0.01))
    dup = b[rng.random(b.size) < 0.02]
    pid = np.concatenate([b, earlier, future, dup])
    day = np.concatenate([
        _uniform_days(rng, np.full(b.size, w0), hi[b]),
        np.maximum(_uniform_days(rng, np.full(earlier.size, r - 1500), np.full(earlier.size, w0 - 1)), dob[earlier]),
        r + rng.integers(1, 21, future.size),
        np.zeros(dup.size, dtype=np.int64),
    ])
    flag = np.concatenate([s_coc[b], rng.random(earlier.size) < 0.3, rng.random(future.size) < 0.5, np.zeros(dup.size, bool)])
    first = {int(i): k for k, i in enumerate(b)} if dup.size else {}
    for k, i in enumerate(dup):  # exact copies of the patient's in-window booking row
        day[b.size + earlier.size + future.size + k] = day[first[int(i)]]
        flag[b.size + earlier.size + future.size + k] = flag[first[int(i)]]
    rows["maternity"] = {"pid": pid, "booking_date": day, "is_on_continuity_pathway": flag}

    # Cancer registry: tumours diagnosed in the last 12 months (incidence rising with age),
    # 15% not staged; stage 1-2 less often in Core20 and at 75+; older tumours too.
    cfg = FEED_RATES["cancer_diagnosis_12m"]
    p_cancer = np.where(age >= cfg["min_age"], np.minimum(cfg["at_65"] * np.exp(cfg["per_year_of_age"] * (age - 65)), cfg["cap"]), 0.0)
    diagnosed = rng.random(n) < p_cancer
    st = FEED_RATES["cancer_stage_1_2"]
    staged = diagnosed & (rng.random(n) >= st["unstaged_share"])
    p_early = np.where(staged, np.clip(st["base_rate"] * np.where(people.is_core20, st["core20_multiplier"], 1.0)
                                       * np.where(age >= 75, st["aged_75_plus_multiplier"], 1.0), 0, 1), 0.0)
    early = staged & (rng.random(n) < p_early)
    stage = np.where(early, rng.integers(1, 3, n), rng.integers(3, 5, n))
    d = np.flatnonzero(diagnosed)
    older = np.flatnonzero((age >= 40) & (rng.random(n) < p_cancer * 2))
    pid = np.concatenate([d, older])
    day = np.concatenate([
        _uniform_days(rng, np.full(d.size, w0), hi[d]),
        _uniform_days(rng, np.full(older.size, r - 2000), np.full(older.size, w0 - 1)),
    ])
    stage_col = np.concatenate([np.where(staged[d], stage[d], 0), rng.integers(0, 5, older.size)])
    rows["cancer_registry"] = {"pid": pid, "diagnosis_date": day, "stage": stage_col}  # 0 = not staged

    # Hospital tooth extractions for decay, children 10 and under (strong deprivation
    # gradient); some extraction episodes not for decay; older episodes outside the window.
    child = age <= 10
    p_tooth = np.where(child, _multiplied(FEED_RATES["caries_extraction_12m_aged_0_10"], people), 0.0)
    s_tooth = child & (rng.random(n) < p_tooth)
    t = np.flatnonzero(s_tooth)
    other = np.flatnonzero(child & ~s_tooth & (rng.random(n) < 0.002))
    old_t = np.flatnonzero(child & (age >= 2) & ~s_tooth & (rng.random(n) < 0.004))
    owner, _ = _expand(rng.integers(1, 3, t.size))
    pid = np.concatenate([t[owner], other, old_t])
    day = np.concatenate([
        _uniform_days(rng, np.full(owner.size, w0), hi[t[owner]]),
        _uniform_days(rng, np.full(other.size, w0), hi[other]),
        np.maximum(_uniform_days(rng, np.full(old_t.size, w0 - 700), np.full(old_t.size, w0 - 1)), dob[old_t]),
    ])
    flag = np.concatenate([np.ones(owner.size, bool), np.zeros(other.size, bool), np.ones(old_t.size, bool)])
    rows["dental_extractions"] = {"pid": pid, "episode_date": day, "is_caries_extraction": flag}

    # CYP mental health contacts, 0-17: 1-8 attended contacts in the window when drawn
    # (lower for under-5s and for some ethnic groups); older contacts for some others.
    cfg = FEED_RATES["cyp_mh_contact_12m"]
    young = age <= CYP_MAX_AGE
    p_mh = np.where(young, np.clip(_multiplied(cfg, people) * np.where(age < 5, cfg["under_5_multiplier"], 1.0), 0, 1), 0.0)
    s_mh = young & (rng.random(n) < p_mh)
    m = np.flatnonzero(s_mh)
    owner, _ = _expand(rng.integers(1, 9, m.size))
    old_m = np.flatnonzero(young & (age >= 2) & ~s_mh & (rng.random(n) < 0.05))
    pid = np.concatenate([m[owner], old_m])
    day = np.concatenate([
        _uniform_days(rng, np.full(owner.size, w0), hi[m[owner]]),
        np.maximum(_uniform_days(rng, np.full(old_m.size, w0 - 700), np.full(old_m.size, w0 - 1)), dob[old_m]),
    ])
    rows["mh_contacts"] = {"pid": pid, "contact_date": day}
    outcomes = {
        "booked": booked, "p_coc": p_coc, "s_coc": s_coc,
        "staged": staged, "p_early": p_early, "early": early,
        "p_tooth": p_tooth, "s_tooth": s_tooth, "p_mh": p_mh, "s_mh": s_mh,
    }
    return rows, outcomes


def _feed_frames(rows: dict[str, dict], ids: pl.Series, rng: np.random.Generator) -> dict[str, pl.DataFrame]:
    """Return each feed as a frame in its contract's column order, with a few stray ids."""
    from pipelines.segmentation.schemas import FEEDS

    frames = {}
    for name, columns in rows.items():
        feed = FEEDS[name]
        data = {"patient_id": ids.gather(columns["pid"])}
        for column, values in columns.items():
            if column == "pid":
                continue
            if column == feed.date_column:
                data[column] = pl.Series(values.astype(np.int32)).cast(pl.Date)
            elif column == "stage":
                data[column] = pl.Series(values).cast(pl.Int8).replace(0, None)
            else:
                data[column] = pl.Series(values)
        frame = pl.DataFrame(data)
        # Rows for patients the GP extract does not hold (ids outside the generator's
        # 2^40 range): the pipeline must drop them.
        stray = frame.head(3).with_columns(
            pl.Series("patient_id", [f"99999{i:08d}" for i in range(min(3, frame.height))], dtype=pl.String)
        )
        frame = pl.concat([frame, stray])
        for column in feed.table.names:
            if column not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype=feed.table.column(column).dtype).alias(column))
        frames[name] = frame.select(feed.table.names).cast(feed.table.schema).sort("patient_id", feed.date_column, maintain_order=True)
    return frames


# --- the ground truth of derived indicators: an independent count over the written rows -----

def _months_back(reference_date: date, months: int) -> int:
    """Return the day number of R - `months` months + 1 day (month-end clamped), as the rules define."""
    import calendar

    total = reference_date.year * 12 + reference_date.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    day = min(reference_date.day, calendar.monthrange(year, month)[1])
    return _days(date(year, month, day)) + 1


def _codelist_mask(ref: _Reference, reference_dir, *codelist_ids: str) -> np.ndarray:
    """Return, per index into ref.codes, whether the code is in any of the codelists."""
    from reference_data import loader

    codes = pl.concat([loader.read_codelist(c, reference_dir)["code"] for c in codelist_ids])
    return ref.codes.is_in(codes.implode()).to_numpy()


def _derived_outcomes(ref: _Reference, rows: pl.DataFrame, people: _People, cal: _Calendar, reference_dir) -> dict:
    """Count, per patient, what the written events show for indicators whose outcome is not
    drawn directly (BP in 5 years, smoking status, statins, reliever issues, CYP diabetes
    checks, SMI health-check components): written independently of the pipeline's engine."""
    pid, code, day = rows["pid"].to_numpy(), rows["code"].to_numpy(), rows["day"].to_numpy()
    r = cal.r

    def any_since(mask: np.ndarray, start: int) -> np.ndarray:
        sel = mask[code] & (day >= start) & (day <= r)
        out = np.zeros(people.n, dtype=bool)
        out[pid[sel]] = True
        return out

    bp = _codelist_mask(ref, reference_dir, "bp_cod", "systolic_blood_pressure_qof", "diastolic_blood_pressure_qof")
    smoking = _codelist_mask(ref, reference_dir, "lsmok_cod", "exsmok_cod")
    hba1c = _codelist_mask(ref, reference_dir, "hba1c_tests", "ifcchbam_cod")
    saba = _codelist_mask(ref, reference_dir, "saba_inhalers_resp02", "saba_inhaler_medications")
    m12, m24, m60 = (_months_back(cal.reference_date, m) for m in (12, 24, 60))
    # Counting needs each row once: the injected exact duplicates are dropped from the few
    # reliever rows only (a unique over every event would dominate the generation time).
    issues = rows.filter(pl.Series(saba[code] & (day >= m12) & (day <= r))).unique()
    counted = issues["pid"].to_numpy()
    return {
        "bp_5y": any_since(bp, m60),
        "bp_12m": any_since(bp, m12),
        "smoking_24m": any_since(smoking, m24),
        "smoking_12m": any_since(smoking, m12),
        "cholesterol_12m": any_since(_codelist_mask(ref, reference_dir, "cholesterol_tests"), m12),
        "hba1c_12m": any_since(hba1c, m12),
        "statin_12m": any_since(_codelist_mask(ref, reference_dir, "statin_medication"), m12),
        "saba_12m": np.bincount(counted, minlength=people.n),
    }


def _reliever_overuse_probability(mean: np.ndarray, threshold: int, shape: float = 1.2) -> np.ndarray:
    """Return P(N >= threshold) for N gamma-Poisson (negative binomial) with the given means.

    Examples:
        >>> round(float(_reliever_overuse_probability(np.array([2.8]), 6)[0]), 4)
        0.1551
    """
    from math import exp, lgamma, log

    out = np.zeros(mean.shape)
    for m in np.unique(mean):
        if m <= 0:
            continue
        p = shape / (shape + m)
        below = sum(exp(lgamma(k + shape) - lgamma(shape) - lgamma(k + 1) + shape * log(p) + k * log(1 - p)) for k in range(threshold))
        out[mean == m] = 1.0 - below
    return out


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


def _counts(denominator: np.ndarray, realised: np.ndarray, p: np.ndarray | None, groups: dict,
            breakdowns: dict | None = None) -> dict:
    """Return, per group and overall, the denominator, realised numerator and expected rate.

    `expected_numerator_sd` is sqrt(sum p_i (1 - p_i)): the numerator is a sum of
    independent Bernoulli(p_i) draws, so a correct pipeline's numerator lies within a few
    of these of `expected_rate * n_denominator`. Where the outcome is drawn (p given) and
    `breakdowns` are given, the entry also holds `breakdowns`: see `_breakdown_truth`.
    """
    out: dict = {}
    for name, mask in (*groups.items(), ("all_patients", np.ones(denominator.size, dtype=bool))):
        sel = denominator & mask
        n_den = int(sel.sum())
        entry: dict = {"n_denominator": n_den, "realised_numerator": int(realised[sel].sum())}
        if p is not None:
            entry["expected_rate"] = float(p[sel].mean()) if n_den else None
            entry["expected_numerator_sd"] = float(np.sqrt((p[sel] * (1 - p[sel])).sum()))
        out[name] = entry
    if p is not None:
        c, r = out["core20"]["expected_rate"], out["rest"]["expected_rate"]
        out["gap_core20_vs_rest"] = (c - r) if c is not None and r is not None else None
        if breakdowns is not None:
            out["breakdowns"] = _breakdown_truth(denominator, realised, p, breakdowns)
    return out


def _breakdown_truth(denominator: np.ndarray, realised: np.ndarray, p: np.ndarray, breakdowns: dict) -> dict:
    """Return, per gap-table breakdown, each observable group's expected rate and each gap's expected value.

    `breakdowns` maps a breakdown name to (its attributes, reference group, {group label:
    mask}), the labels being those the gap table publishes. Per group: the denominator,
    realised numerator, expected rate (mean p_i over the group's denominator: the rate
    expected given this sample's covariates) and the numerator's SD. Per compared group
    (not the reference, not a missing-data group, both groups non-empty): `expected_gap`,
    the expected rate minus the reference group's, as a proportion (the gap table's
    `gap` is a difference of proportions, not of percentages), and `expected_gap_sd`,
    sqrt((sd_g / n_g)^2 + (sd_ref / n_ref)^2), the SD of the realised rate difference
    around it (disjoint groups, independent draws).
    """
    from pipelines.segmentation.gaps import NOT_COMPARED_GROUPS

    out: dict = {}
    for breakdown, (attributes, reference, masks) in breakdowns.items():
        groups = {}
        for label, mask in masks.items():
            sel = denominator & mask
            n_den = int(sel.sum())
            groups[label] = {
                "n_denominator": n_den,
                "realised_numerator": int(realised[sel].sum()),
                "expected_rate": float(p[sel].mean()) if n_den else None,
                "expected_numerator_sd": float(np.sqrt((p[sel] * (1 - p[sel])).sum())),
            }
        ref = groups[reference]
        gaps = {}
        for label, g in groups.items():
            if label == reference or label.lower() in NOT_COMPARED_GROUPS or not g["n_denominator"] or not ref["n_denominator"]:
                continue
            gaps[label] = {
                "expected_gap": g["expected_rate"] - ref["expected_rate"],
                "expected_gap_sd": float(np.hypot(g["expected_numerator_sd"] / g["n_denominator"],
                                                  ref["expected_numerator_sd"] / ref["n_denominator"])),
            }
        out[breakdown] = {**attributes, "reference_group": reference, "groups": groups, "gaps": gaps}
    return out


def _observable_breakdowns(groups: dict, observable: np.ndarray, eth: _EthnicityCounts) -> dict:
    """Return the gap table's Core20 and broad-ethnicity groups as the pipeline will see them.

    Labels and reference groups are the gap table's own (`gaps.REFERENCE_GROUPS`,
    `cohorts.ETHNICITY_BROAD_BY_GROUP_6`): Core20 by IMD 2019 (the generator's vintage), and
    'rest' for everyone else - a blank, invalid or non-English postcode included, as the gap
    table's 'rest' is "not Core20" (gaps._deprivation_groups); the broad group of the latest
    recorded ethnicity code, 'Not stated' for a not-stated code, 'unknown' for no code
    (never coded, or dropped by the missing-ethnicity defect) - not the latent group.
    """
    from pipelines.segmentation.cohorts import ETHNICITY_BROAD_BY_GROUP_6, NOT_STATED
    from pipelines.segmentation.gaps import REFERENCE_GROUPS, UNKNOWN

    ethnicity = {label: eth.recorded_group6 == int(code) - 1 for code, label in ETHNICITY_BROAD_BY_GROUP_6.items()}
    ethnicity[NOT_STATED] = eth.state == 1
    ethnicity[UNKNOWN] = np.isin(eth.state, (2, 3))
    return {
        "core20": ({"imd_vintage": IMD_VINTAGE}, REFERENCE_GROUPS["core20"],
                   {"core20": groups["core20"], "rest": ~groups["core20"]}),
        "ethnicity_broad": ({}, REFERENCE_GROUPS["ethnicity_broad"], ethnicity),
    }


def _ground_truth(people, conditions, outcomes, defect_kind, postcode_defects, eth, cal, *, seed, n_patients, icb_code,
                  defect_rate, n_duplicates, include_feeds=True) -> dict:
    """Summarise what was injected, with groups as the pipeline can observe them."""
    reg = people.registered
    # The pipeline sees Core20 only through the written postcode: a blank, invalid or
    # non-English postcode puts the patient in neither group.
    observable = ~np.isin(defect_kind, (1, 2, 3))
    groups = {"core20": observable & people.is_core20, "rest": observable & ~people.is_core20}
    breakdowns = _observable_breakdowns(groups, observable, eth)
    o = outcomes
    on = {key: conditions[key].on for key in _REGISTER_IDS}
    age = people.age
    adult_smi = reg & on["smi"] & (age >= 18)
    cyp = age <= CYP_MAX_AGE

    # BP case-finding: 40+ not on the hypertension register. Outside the SMI register the
    # reading was drawn with p_case_finding; with SMI (and no hypertension) it comes from
    # the health-check draws: missing only when the BP component was missed (probability
    # (1 - p_smi) * q, q = 0.45 + 0.55^4 / 4 from the forced-miss rule) and no older reading
    # was written (0.3 * 0.5).
    q = 0.45 + 0.55**4 / 4
    p_bp = np.where(on["smi"], 1.0 - (1.0 - o["p_smi"]) * q * 0.15, o["p_case_finding"])
    cyp_dm = reg & on["diabetes"] & cyp
    # CYP diabetes checks: HbA1c comes with every diabetic's tests and BP is drawn; with
    # SMI both come from the health-check draws, so those few count at their realised value.
    care = o["hba1c_12m"] & o["bp_12m"]
    p_care = np.where(on["smi"], care.astype(float), o["p_bp_cyp"])
    cvd_risk = reg & (age >= 40) & (on["hypertension"] | on["diabetes"] | o["qrisk_high"])
    indicators = {
        "smi_health_check": {**_counts(adult_smi, o["s_smi"], o["p_smi"], groups, breakdowns), "multipliers": SMI_HEALTH_CHECK},
        "hypertension_treated_to_target": {
            **_counts(reg & on["hypertension"] & (age >= 18), o["s_htn"], o["p_htn"], groups, breakdowns),
            "multipliers": HYPERTENSION_TO_TARGET,
        },
        "smi_hc_blood_pressure": _counts(adult_smi, o["bp_12m"], None, groups),
        "smi_hc_lipids": _counts(adult_smi, o["cholesterol_12m"], None, groups),
        "smi_hc_glucose": _counts(adult_smi, o["hba1c_12m"], None, groups),
        "smi_hc_smoking": _counts(adult_smi, o["smoking_12m"], None, groups),
        "bp_case_finding": _counts(reg & (age >= 40) & ~on["hypertension"], o["bp_5y"], p_bp, groups, breakdowns),
        "lipid_statin": _counts(cvd_risk, o["statin_12m"], None, groups),
        "copd_flu_vaccination": _counts(reg & on["copd"], o["flu_current"], np.where(on["copd"], o["p_flu_copd"], 0.0), groups, breakdowns),
        "copd_pneumococcal_vaccination": _counts(reg & on["copd"], o["s_pneumo"], o["p_pneumo"], groups, breakdowns),
        "copd_covid_vaccination": _counts(reg & on["copd"], o["s_covid"], o["p_covid"], groups, breakdowns),
        "smoking_status_recorded": _counts(reg & (age >= 18), o["smoking_24m"], None, groups),
        "cyp_asthma_reliever_overuse": _counts(
            reg & on["asthma"] & cyp, o["saba_12m"] >= RELIEVER_THRESHOLD,
            _reliever_overuse_probability(o["saba_mean"], RELIEVER_THRESHOLD), groups, breakdowns,
        ),
        "cyp_diabetes_cgm": _counts(reg & on["diabetes"] & cyp & o["typed"] & o["type1"], o["s_cgm"], o["p_cgm"], groups, breakdowns),
        "cyp_diabetes_care_processes": _counts(cyp_dm, care, p_care, groups, breakdowns),
    }
    if include_feeds:
        indicators.update({
            "maternity_continuity_of_carer": _counts(reg & o["booked"], o["s_coc"], o["p_coc"], groups, breakdowns),
            "cancer_early_stage": _counts(reg & o["staged"], o["early"], o["p_early"], groups, breakdowns),
            "cyp_tooth_extractions": _counts(reg & (age <= 10), o["s_tooth"], o["p_tooth"], groups, breakdowns),
            "cyp_mental_health_access": _counts(reg & cyp, o["s_mh"], o["p_mh"], groups, breakdowns),
        })

    registers = {}
    for key, reg_id in _REGISTER_IDS.items():
        st = conditions[key]
        p_on = st.p_on[reg]
        registers[reg_id] = {
            "n_registered": int((reg & st.on).sum()),
            "n_resolved_off_register": int((reg & st.resolved).sum()),
            "n_rediagnosed_on_register": int((reg & st.rediagnosed).sum()),
            "expected_prevalence": float(p_on.mean()) if p_on.size else None,
            "expected_count_sd": float(np.sqrt((p_on * (1 - p_on)).sum())),
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
        "indicators": indicators,
        "feeds_included": include_feeds,
        "ics_parameters_assumed": {"campaign_start": "%02d-%02d" % FLU_CAMPAIGN_START,
                                   "reliever_issues_threshold": RELIEVER_THRESHOLD, "cyp_max_age": CYP_MAX_AGE},
        "other_areas_multipliers": OTHER_AREAS,
        "library_multipliers": LIBRARY_RATES,
        "feed_multipliers": FEED_RATES,
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
