"""The real reference data the generator draws from: the ICB's LSOAs, live postcodes, practices and codelists.

Nothing clinical or geographic is invented: every postcode, practice and code written to
an extract comes from the pinned files in the reference directory, read through
`reference_data.loader` (sha256-checked). Frames are sorted before use so that the same
seed gives the same bytes whatever order the files list their rows in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.synthetic.parameters import CITY_LADS, CLUSTER_IDS, CODELISTS, CONDITIONS, TYPE_SPECIFIC


@dataclass
class Reference:
    """The ICB's geography and the codes events are drawn from, as arrays indexed by position."""

    lsoa_code: np.ndarray  # the ICB's LSOA 2011 codes, sorted
    lsoa_decile: np.ndarray
    lsoa_is_city: np.ndarray
    postcodes: pl.Series  # live postcodes of the ICB's LSOAs, canonical form, sorted by LSOA
    pc_lsoa: np.ndarray  # index into the lsoa_* arrays of each postcode's LSOA
    pc_weight: np.ndarray  # share of the ICB's residents living at each postcode (sums to 1)
    pc_easting: np.ndarray  # Code-Point 2025 centroid, British National Grid metres
    pc_northing: np.ndarray
    foreign: tuple[pl.Series, ...]  # live Welsh, Scottish, NI postcodes
    codes: pl.Series  # every code of every list used, concatenated
    slices: dict[str, tuple[int, int]]  # codelist id -> (offset, length) into `codes`
    eth16_offset: np.ndarray  # per grouping_16 (1-16) offset into `codes`
    eth16_count: np.ndarray
    eth16_group6: np.ndarray  # grouping_6 index (0-4) of each grouping_16


def load_reference(icb_code: str, reference_dir: str | Path | None) -> Reference:
    """Load and shape the ICB's geography and the codelists once: LSOAs, live postcodes (with centroids), codes."""
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
    # Code-Point 2025 centroids place postcodes for the distance to practices; the few
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
    pc_lsoa = np.repeat(np.arange(lsoas.height), counts)

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
    for cid in CODELISTS:
        frame = loader.read_codelist(cid, reference_dir)
        if cid == "ethnicity_snomed":
            frame = frame.with_columns(pl.col("grouping_16").cast(pl.Int64), pl.col("grouping_6").cast(pl.Int64)).sort("grouping_16", "code")
            eth = frame
        elif cid in ("systolic_blood_pressure_qof", "diastolic_blood_pressure_qof"):
            # Only observables that are also in BP_COD, so one reading serves both the
            # hypertension rule and the SMI health check's BP component.
            bp = loader.read_codelist("bp_cod", reference_dir)["code"]
            frame = frame.filter(pl.col("code").is_in(bp.implode())).sort("code")
        elif cid in CLUSTER_IDS:
            # Clusters overlap: 23 SMHRES "in remission" codes are also MH_COD, and a few
            # codes sit in two registers (asthma-COPD overlap, LD with autism, epilepsy or
            # diabetes). A shared code would put a patient on a register that was not drawn
            # (or, for SMI, be a same-day resolution), so each cluster's codes are drawn
            # only from those in no other cluster; a resolved cluster may share with its
            # own diagnosis cluster, since a same-day pair is still "resolved".
            own_dx = {c.diagnosis for c in CONDITIONS if c.resolved == cid}
            others = [loader.read_codelist(o, reference_dir)["code"] for o in CLUSTER_IDS if o != cid and o not in own_dx]
            # Diabetes diagnoses are drawn from the codes that name no type, so that the
            # type code written on the same day alone decides type 1 or type 2.
            others += [loader.read_codelist(o, reference_dir)["code"] for o in TYPE_SPECIFIC.get(cid, ())]
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

    return Reference(
        lsoa_code=lsoas["lsoa11_code"].to_numpy(),
        lsoa_decile=lsoas["imd2019_decile"].to_numpy().astype(np.int64),
        lsoa_is_city=lsoas["lad22_code"].is_in(list(CITY_LADS)).to_numpy(),
        postcodes=live["postcode"],
        pc_lsoa=pc_lsoa,
        pc_weight=weight[pc_lsoa] / counts[pc_lsoa],
        pc_easting=live["easting"].to_numpy(),
        pc_northing=live["northing"].to_numpy(),
        foreign=foreign,
        codes=codes,
        slices=slices,
        eth16_offset=g16_offset,
        eth16_count=g16_count,
        eth16_group6=g6_of_16,
    )


def pick_codes(rng: np.random.Generator, ref: Reference, codelist: str, size: int, main: str | None = None) -> np.ndarray:
    """Return indices into ref.codes drawn from one codelist (75% its main code when given)."""
    offset, n = ref.slices[codelist]
    idx = offset + rng.integers(0, n, size)
    if main is not None:
        listed = ref.codes.slice(offset, n)
        where = np.flatnonzero((listed == main).to_numpy())
        if where.size:
            idx = np.where(rng.random(size) < 0.75, offset + where[0], idx)
    return idx




def pick_codes_apart(rng: np.random.Generator, ref: Reference, codelist: str, size: int) -> np.ndarray:
    """Return indices into ref.codes drawn from the codes of one codelist that no other listed codelist holds.

    Some published lists share codes (hypertensive CKD is in HYP_COD and CKD35, diabetic
    PAD in DM_COD and PAD_COD): a risk-factor code drawn from the shared ones would also put
    the patient on another register and move figures the generator drew separately.
    """
    offset, n = ref.slices[codelist]
    own = ref.codes.slice(offset, n)
    others = pl.concat([ref.codes.slice(o, k) for name, (o, k) in ref.slices.items() if name != codelist])
    keep = offset + np.flatnonzero((~own.is_in(others.implode())).to_numpy())
    return keep[rng.integers(0, keep.size, size)]
