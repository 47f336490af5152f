"""Place postcodes in 2021 LSOAs where the exact lookup cannot: the spatial reference table.

The ONS postcode lookup is on 2011 LSOAs. Its 2011 -> 2021 bridge is one-to-one only for
unchanged (U) and merged (M) LSOAs; a postcode in a split (S) or complex (X) 2011 LSOA,
or a postcode newer than the lookup (May 2022), needs its Code-Point Open centroid placed
in the 2021 LSOA polygons. This module builds that table once per reference version; the
pipeline stores it as a reference asset and `deprivation.attach_deprivation` joins it.

Facts measured on the shared reference data (the ONS May 2022 lookup, Code-Point Open
2025.2.0 and the December 2021 BSC boundaries), which shape the rules below:

* Bare point-in-polygon agrees with the exact lookup for only 88.6% of postcodes whose
  2021 LSOA is known: the boundaries are *super generalised*, so a centroid near an edge
  often lands in the neighbour. Spatial placement is therefore used only where no exact
  answer exists, and is restricted to the 2011 LSOA's own children whenever the lookup
  gives the 2011 LSOA (a postcode cannot leave its parent).
* 92.7% of split-LSOA postcode centroids fall inside one of their own children; the rest
  (generalisation again) go to the nearest child.
* For postcodes newer than the lookup, every polygon within `CANDIDATE_DISTANCE_M` is a
  candidate. Checked on the 1.38 million live English postcodes whose 2021 LSOA is exact
  (U/M): the chosen polygon gives the right IoD2025 decile for 91.5% of them, 99.0% when
  `is_decile_certain`, and the true LSOA is among the candidates for 99.1%
  (`place_points` over those postcodes versus the lookup).
* Only 21% of split-LSOA postcodes have all children sharing one IoD2025 decile, but 87%
  share Core20 status: `is_core20_certain` is usually True even when the decile is not.

Geopandas and shapely are imported inside the functions that need them so that importing
the segmentation package stays light (a test checks `import pipelines.definitions`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

__all__ = [
    "SPATIAL_SCHEMA",
    "SPATIAL_RULES",
    "CANDIDATE_DISTANCE_M",
    "build_spatial_lsoa21",
    "place_points",
]

# Rules, in the order they are tried.
SPATIAL_RULES = ("within_child", "nearest_child", "point_in_polygon")

SPATIAL_SCHEMA: dict[str, pl.DataType] = {
    "postcode": pl.String(),
    "lsoa21_code": pl.String(),
    "n_candidates": pl.Int16(),
    "is_decile_certain": pl.Boolean(),
    "is_core20_certain": pl.Boolean(),
    "spatial_rule": pl.String(),
}

# For a postcode with no 2011 LSOA (newer than the lookup), every 2021 polygon within this
# distance of the centroid is a candidate; the containing (else nearest) one is chosen and
# a centroid with no polygon this close is left out. 100 m is about the displacement the
# super-generalised boundaries introduce, and it catches coastal centroids that fall just
# outside the clipped coastline (see the module docstring for the measured agreement).
CANDIDATE_DISTANCE_M = 100.0

_BNG = 27700  # British National Grid: Code-Point eastings/northings are in metres here.
_ENGLAND = "E92000001"


def _read_polygons(reference_dir: str | Path | None):
    """Return the England LSOA21 polygons as (codes frame with poly_idx, geometry array in 27700)."""
    import geopandas as gpd

    from reference_data.loader import verified_path

    path = verified_path("lsoa21_boundaries", reference_dir)
    # GDAL reads the gzip directly; transforming once here keeps every distance in metres.
    frame = gpd.read_file(f"/vsigzip/{path}", engine="pyogrio", columns=["LSOA21CD"]).to_crs(_BNG)
    frame = frame[frame["LSOA21CD"].str.startswith("E01")].reset_index(drop=True)
    codes = pl.DataFrame({"lsoa21_code": frame["LSOA21CD"].tolist()}).with_row_index("poly_idx")
    return codes, frame.geometry.values


def place_points(
    points: pl.DataFrame,
    codes: pl.DataFrame,
    geometries,
    *,
    candidates: pl.DataFrame | None = None,
    max_distance: float = CANDIDATE_DISTANCE_M,
) -> pl.DataFrame:
    """Return, per point, the chosen polygon code, its distance and the candidate codes.

    With `candidates` (columns `postcode`, `lsoa21_code`) each point chooses only among its
    own candidates, whatever the distance (the split-LSOA rule). Without it, candidates are
    all polygons within `max_distance` metres, found with an STRtree (the new-postcode rule).
    The containing polygon has distance 0; ties go to the lower LSOA code so reruns agree.

    Arguments:
        points: `postcode`, `easting`, `northing` (EPSG:27700), one row per postcode.
        codes: `poly_idx`, `lsoa21_code`, indexing `geometries`.
        geometries: shapely geometry array in EPSG:27700.
        candidates: optional fixed candidate polygons per postcode.
        max_distance: candidate radius in metres when `candidates` is None.

    Returns:
        `postcode`, `lsoa21_code`, `distance`, `candidate_codes` (list of String).

    Examples:
        >>> import polars as pl, shapely
        >>> squares = shapely.box([0, 10], [0, 0], [10, 20], [10, 10])
        >>> codes = pl.DataFrame({"lsoa21_code": ["E01000001", "E01000002"]}).with_row_index("poly_idx")
        >>> points = pl.DataFrame({"postcode": ["A1 1AA", "A1 1AB", "A1 1AD"],
        ...                        "easting": [5.0, 15.0, 500.0], "northing": [5.0, 5.0, 5.0]})
        >>> place_points(points, codes, squares).select("postcode", "lsoa21_code", "distance")
        shape: (2, 3)
        ┌──────────┬─────────────┬──────────┐
        │ postcode ┆ lsoa21_code ┆ distance │
        │ ---      ┆ ---         ┆ ---      │
        │ str      ┆ str         ┆ f64      │
        ╞══════════╪═════════════╪══════════╡
        │ A1 1AA   ┆ E01000001   ┆ 0.0      │
        │ A1 1AB   ┆ E01000002   ┆ 0.0      │
        └──────────┴─────────────┴──────────┘
    """
    import numpy as np
    import shapely

    points = points.select("postcode", "easting", "northing").with_row_index("point_idx")
    if candidates is not None:
        pairs = (
            points.join(candidates.select("postcode", "lsoa21_code"), on="postcode")
            .join(codes, on="lsoa21_code")
            .select("point_idx", "poly_idx")
        )
    else:
        xy = shapely.points(points["easting"].to_numpy(), points["northing"].to_numpy())
        tree = shapely.STRtree(geometries)
        found = tree.query(xy, predicate="dwithin", distance=max_distance)
        pairs = pl.DataFrame(
            {"point_idx": found[0].astype(np.uint32), "poly_idx": found[1].astype(np.uint32)}
        )
    pairs = pairs.join(points, on="point_idx").join(codes, on="poly_idx")
    xy = shapely.points(pairs["easting"].to_numpy(), pairs["northing"].to_numpy())
    distance = shapely.distance(geometries[pairs["poly_idx"].to_numpy()], xy)
    pairs = pairs.with_columns(pl.Series("distance", distance, dtype=pl.Float64))
    if candidates is None:
        pairs = pairs.filter(pl.col("distance") <= max_distance)
    return (
        pairs.sort("point_idx", "distance", "lsoa21_code")
        .group_by("point_idx", maintain_order=True)
        .agg(
            pl.col("postcode").first(),
            pl.col("lsoa21_code").first(),
            pl.col("distance").first(),
            pl.col("lsoa21_code").sort().alias("candidate_codes"),
        )
        .drop("point_idx")
    )


def build_spatial_lsoa21(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Build the postcode -> 2021 LSOA table for postcodes the exact lookup cannot place.

    Covers (a) live postcodes of the ONS May 2022 lookup whose 2011 LSOA was split (S) or
    changed irregularly (X): the child of that LSOA whose polygon contains the Code-Point
    centroid ('within_child'), else the nearest child ('nearest_child'); and (b) English
    Code-Point postcodes with no LSOA in the ONS lookup: the containing England polygon,
    else the nearest within `CANDIDATE_DISTANCE_M` ('point_in_polygon'), else left out.
    Postcodes without a Code-Point centroid cannot be placed and are left out.

    `n_candidates` counts the possible 2021 LSOAs (the 2011 LSOA's children for (a); the
    polygons within `CANDIDATE_DISTANCE_M` for (b)); `is_decile_certain` /
    `is_core20_certain` say whether all of them share the IoD2025 decile / Core20 status,
    so the answer is right whichever candidate is truly the postcode's LSOA.

    Arguments:
        reference_dir: the shared reference directory (see `reference_data.loader`).

    Returns:
        A frame with `SPATIAL_SCHEMA`, one row per postcode, sorted by postcode.

    Examples:
        >>> table = build_spatial_lsoa21()  # doctest: +SKIP
        >>> table.columns  # doctest: +SKIP
        ['postcode', 'lsoa21_code', 'n_candidates', 'is_decile_certain', 'is_core20_certain', 'spatial_rule']
    """
    from reference_data.loader import (
        read_imd2025,
        read_lsoa11_lsoa21,
        scan_postcode_centroids,
        scan_postcode_lsoa11,
    )

    deciles = read_imd2025(reference_dir).select("lsoa21_code", "imd2025_decile")
    bridge = read_lsoa11_lsoa21(reference_dir).filter(pl.col("lsoa11_code").str.starts_with("E01"))
    children = bridge.filter(pl.col("change_code").is_in(["S", "X"])).select("lsoa11_code", "lsoa21_code")
    lookup = scan_postcode_lsoa11(reference_dir).select("postcode", "lsoa11_code", "date_terminated")
    centroids = scan_postcode_centroids(reference_dir).select("postcode", "easting", "northing", "country_code")
    codes, geometries = _read_polygons(reference_dir)

    # (a) live postcodes in split/complex 2011 LSOAs, placed among their own children.
    split_points = (
        lookup.filter(pl.col("date_terminated").is_null())
        .join(children.lazy().select("lsoa11_code").unique(), on="lsoa11_code")
        .join(centroids, on="postcode")
        .select("postcode", "lsoa11_code", "easting", "northing")
        .collect()
    )
    split_candidates = split_points.select("postcode", "lsoa11_code").join(children, on="lsoa11_code")
    split = place_points(split_points, codes, geometries, candidates=split_candidates).with_columns(
        pl.when(pl.col("distance") == 0)
        .then(pl.lit("within_child"))
        .otherwise(pl.lit("nearest_child"))
        .alias("spatial_rule")
    )

    # (b) English centroids the lookup has no LSOA for (postcodes created after April 2022,
    # and the few lookup rows without geography).
    new_points = (
        centroids.filter(pl.col("country_code") == _ENGLAND)
        .join(lookup.filter(pl.col("lsoa11_code").is_not_null()), on="postcode", how="anti")
        .select("postcode", "easting", "northing")
        .collect()
    )
    new = place_points(new_points, codes, geometries).with_columns(
        pl.lit("point_in_polygon").alias("spatial_rule")
    )

    placed = pl.concat([split, new])
    # Certainty: explode candidates, look up their deciles, and ask whether they all agree.
    agreement = (
        placed.select("postcode", pl.col("candidate_codes").alias("lsoa21_code"))
        .explode("lsoa21_code")
        .join(deciles, on="lsoa21_code", how="left")
        .group_by("postcode")
        .agg(
            pl.len().cast(pl.Int16).alias("n_candidates"),
            # A candidate without a decile (not English) makes the answer uncertain.
            (
                (pl.col("imd2025_decile").n_unique() == 1) & pl.col("imd2025_decile").is_not_null().all()
            ).alias("is_decile_certain"),
            (
                ((pl.col("imd2025_decile") <= 2).n_unique() == 1) & pl.col("imd2025_decile").is_not_null().all()
            ).alias("is_core20_certain"),
        )
    )
    return (
        placed.join(agreement, on="postcode", how="left")
        .select(list(SPATIAL_SCHEMA))
        .cast(SPATIAL_SCHEMA)
        .sort("postcode")
    )
