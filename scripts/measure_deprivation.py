"""Measure the deprivation chain on the real reference data: spatial agreement and speed.

    .venv/bin/python scripts/measure_deprivation.py [--patients 1000000] [--seed 7]

1. Agreement (the evidence for when spatial assignment is trustworthy). Over live English
   postcodes whose 2021 LSOA is known exactly (their 2011 LSOA was unchanged or merged, so
   the ONS lookup plus the 2011->2021 bridge gives it) and that have a Code-Point centroid:
   - bare point-in-polygon on the generalised boundaries (no radius, no candidates);
   - the pipeline's rule for postcodes newer than the lookup (`spatial.place_points`:
     polygons within `CANDIDATE_DISTANCE_M`, containing else nearest), reported for the
     LSOA, the IoD2025 decile, Core20 status, and the subset flagged `is_decile_certain`;
   and, for live postcodes in split/complex 2011 LSOAs (where there is no exact answer),
   how often the centroid falls inside one of the LSOA's own children and how often all
   children share a decile / Core20 status.
2. Speed: building the spatial reference table, loading the reference, and attaching both
   vintages to N patients drawn from the real lookup (live and terminated English
   postcodes, Welsh and Scottish ones, post-2022 postcodes, messy formatting, blanks and
   junk), plus the same N rows through `core20 imd`'s function.

Figures are printed as Markdown for the README; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.segmentation import spatial  # noqa: E402
from pipelines.segmentation.codes import normalise_postcode, postcode_status  # noqa: E402
from pipelines.segmentation.deprivation import attach_deprivation, load_deprivation_reference  # noqa: E402
from pipelines.segmentation.imd_lookup import attach_imd  # noqa: E402
from reference_data.loader import (  # noqa: E402
    read_imd2025,
    read_lsoa11_lsoa21,
    scan_postcode_centroids,
    scan_postcode_lsoa11,
)


def share(mask: pl.Series) -> str:
    return f"{mask.mean():.1%} of {mask.len():,}"


def agreement() -> None:
    deciles = read_imd2025().select("lsoa21_code", "imd2025_decile")
    bridge = read_lsoa11_lsoa21()
    one_to_one = bridge.filter(pl.col("change_code").is_in(["U", "M"])).select("lsoa11_code", "lsoa21_code")
    centroids = scan_postcode_centroids().select("postcode", "easting", "northing")
    live = scan_postcode_lsoa11().filter(
        pl.col("date_terminated").is_null() & (pl.col("country_code") == "E92000001")
    ).select("postcode", "lsoa11_code")
    exact = live.join(one_to_one.lazy(), on="lsoa11_code").join(centroids, on="postcode").collect()
    codes, geometries = spatial._read_polygons(None)

    bare = spatial.place_points(exact, codes, geometries, max_distance=0.0)
    bare = exact.select("postcode", "lsoa21_code").join(bare.rename({"lsoa21_code": "placed"}), on="postcode", how="left")
    rule = spatial.place_points(exact, codes, geometries)
    rule = (
        exact.select("postcode", "lsoa21_code")
        .join(rule.rename({"lsoa21_code": "placed"}), on="postcode", how="left")
        .join(deciles, on="lsoa21_code")
        .join(deciles.rename({"lsoa21_code": "placed", "imd2025_decile": "placed_decile"}), on="placed", how="left")
    )
    candidates = (
        rule.select("postcode", "candidate_codes").explode("candidate_codes")
        .join(deciles.rename({"lsoa21_code": "candidate_codes"}), on="candidate_codes", how="left")
        .group_by("postcode")
        .agg(((pl.col("imd2025_decile").n_unique() == 1) & pl.col("imd2025_decile").is_not_null().all()).alias("certain"))
    )
    rule = rule.join(candidates, on="postcode", how="left")
    certain = rule.filter(pl.col("certain").fill_null(False))

    split_children = bridge.filter(pl.col("change_code").is_in(["S", "X"]) & pl.col("lsoa11_code").str.starts_with("E01"))
    table = spatial.build_spatial_lsoa21()
    split = table.filter(pl.col("spatial_rule").is_in(["within_child", "nearest_child"]))

    print(f"\n### Spatial agreement ({exact.height:,} live English postcodes with an exact 2021 LSOA)\n")
    print("| method | agrees with the exact lookup |\n|---|---:|")
    print(f"| bare point-in-polygon, LSOA | {share(bare['placed'] == bare['lsoa21_code'])} |")
    print(f"| pipeline rule (containing, else nearest within {spatial.CANDIDATE_DISTANCE_M:.0f} m), LSOA | "
          f"{share((rule['placed'] == rule['lsoa21_code']).fill_null(False))} |")
    print(f"| pipeline rule, IoD2025 decile | {share((rule['placed_decile'] == rule['imd2025_decile']).fill_null(False))} |")
    print(f"| pipeline rule, Core20 status | "
          f"{share(((rule['placed_decile'] <= 2) == (rule['imd2025_decile'] <= 2)).fill_null(False))} |")
    print(f"| pipeline rule, decile where flagged `is_decile_certain` | "
          f"{share((certain['placed_decile'] == certain['imd2025_decile']).fill_null(False))} |")
    print(f"| true LSOA among the candidates | "
          f"{share(rule.select(pl.col('lsoa21_code').is_in(pl.col('candidate_codes')).fill_null(False)).to_series())} |")
    print(f"\nSplit/complex 2011 LSOAs: {split_children['lsoa11_code'].n_unique():,} of them; "
          f"{split.height:,} live postcodes placed.\n")
    print("| split-LSOA postcodes | share |\n|---|---:|")
    print(f"| centroid inside one of its own children | {share(split['spatial_rule'] == 'within_child')} |")
    print(f"| all children share the IoD2025 decile (`is_decile_certain`) | {share(split['is_decile_certain'])} |")
    print(f"| all children share Core20 status (`is_core20_certain`) | {share(split['is_core20_certain'])} |")


def patients_sample(n: int, seed: int) -> pl.DataFrame:
    """N raw postcodes in realistic proportions, as a supplier would send them."""
    lookup = scan_postcode_lsoa11().select("postcode", "country_code", "date_terminated").collect()
    english = lookup.filter(pl.col("country_code") == "E92000001")
    live = english.filter(pl.col("date_terminated").is_null())["postcode"]
    terminated = english.filter(pl.col("date_terminated").is_not_null())["postcode"]
    other = lookup.filter(pl.col("country_code").is_in(["W92000004", "S92000003"]))["postcode"]
    new = (
        scan_postcode_centroids().filter(pl.col("country_code") == "E92000001").select("postcode")
        .join(lookup.lazy().select("postcode"), on="postcode", how="anti").collect()["postcode"]
    )
    parts = {"live": (live, 0.93), "terminated": (terminated, 0.02), "outside": (other, 0.01), "new": (new, 0.01)}
    frames = [s.sample(int(n * w), with_replacement=True, seed=seed + i).to_frame("postcode") for i, (s, w) in enumerate(parts.values())]
    frame = pl.concat(frames)
    rest = n - frame.height
    junk = pl.DataFrame({"postcode": [None, "", "unknown", "N/A"] * (rest // 4 + 1)}).head(rest)
    frame = pl.concat([frame, junk]).sample(fraction=1.0, shuffle=True, seed=seed)
    style = pl.int_range(pl.len()) % 3
    return frame.select(
        pl.when(style == 0).then(pl.col("postcode").str.to_lowercase())
        .when(style == 1).then(pl.col("postcode").str.replace(" ", ""))
        .otherwise(pl.col("postcode")).alias("postcode")
    )


def timed(label: str, fn):
    started = time.perf_counter()
    value = fn()
    print(f"| {label} | {time.perf_counter() - started:.1f} s |", flush=True)
    return value


def speed(n: int, seed: int) -> None:
    raw = patients_sample(n, seed)
    print(f"\n### Speed ({n:,} patients; 2 cores)\n")
    print("| step | wall time |\n|---|---:|")
    table = timed("build the spatial reference table (once per reference version)", spatial.build_spatial_lsoa21)
    reference = timed("load the deprivation reference (2.7M postcodes)", lambda: load_deprivation_reference(spatial=table))
    patients = raw.select(
        pl.lit(None, dtype=pl.Date).alias("reporting_month"),
        pl.int_range(pl.len()).cast(pl.String).alias("patient_id"),
        pl.lit("C84001").alias("practice_code"),
        normalise_postcode(pl.col("postcode")).alias("postcode"),
        postcode_status(pl.col("postcode")).alias("postcode_status"),
    )
    out = timed(f"attach IMD 2019 and IoD 2025 to {n:,} patients", lambda: attach_deprivation(patients.lazy(), reference).collect())
    timed(f"`core20 imd` function on {n:,} rows (one vintage)", lambda: attach_imd(raw, 2025, reference))
    print(f"\npeak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB")
    print("\n| IoD2025 method | share |\n|---|---:|")
    for method, count in out.group_by("imd2025_method").len().sort("len", descending=True).iter_rows():
        print(f"| {method} | {count / n:.2%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args()
    if not args.skip_agreement:
        agreement()
    speed(args.patients, args.seed)


if __name__ == "__main__":
    main()
