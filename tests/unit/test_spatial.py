"""Unit tests for placing postcode centroids in 2021 LSOA polygons."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.segmentation.spatial import SPATIAL_RULES, SPATIAL_SCHEMA, place_points

shapely = pytest.importorskip("shapely")

# Three 100 m squares side by side along the x axis: A [0,100], B [100,200], C [200,300].
CODES = pl.DataFrame({"lsoa21_code": ["E0100000A", "E0100000B", "E0100000C"]}).with_row_index("poly_idx")
SQUARES = shapely.box([0, 100, 200], [0, 0, 0], [100, 200, 300], [100, 100, 100])


def points(rows: list[tuple[str, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["postcode", "easting", "northing"], orient="row")


def test_point_in_polygon_with_radius():
    out = place_points(
        points([("IN A", 50, 50), ("NEAR C", 350, 50), ("FAR", 1000, 50), ("EDGE AB", 100, 50)]),
        CODES,
        SQUARES,
        max_distance=60,
    ).sort("postcode")
    assert out.select("postcode", "lsoa21_code", "distance").rows() == [
        ("EDGE AB", "E0100000A", 0.0),  # on the shared edge: tie goes to the lower code
        ("IN A", "E0100000A", 0.0),
        ("NEAR C", "E0100000C", 50.0),  # outside every polygon but within the radius
    ]
    # Candidates are every polygon within the radius, so certainty can be judged later.
    assert out.filter(pl.col("postcode") == "IN A")["candidate_codes"].to_list() == [["E0100000A", "E0100000B"]]


def test_fixed_candidates_choose_own_child_even_when_another_polygon_contains_the_point():
    candidates = pl.DataFrame({"postcode": ["P", "P"], "lsoa21_code": ["E0100000B", "E0100000C"]})
    out = place_points(points([("P", 50, 50)]), CODES, SQUARES, candidates=candidates)
    # The point lies in A, but A is not a child of this postcode's 2011 LSOA: nearest child wins.
    assert out.select("lsoa21_code", "distance").row(0) == ("E0100000B", 50.0)
    assert out["candidate_codes"].to_list() == [["E0100000B", "E0100000C"]]


def test_place_points_keeps_one_row_per_point():
    many = points([(f"P{i}", float(i % 300), 50.0) for i in range(1000)])
    out = place_points(many, CODES, SQUARES)
    assert out.height == 1000
    assert out["postcode"].n_unique() == 1000


@pytest.mark.reference
def test_real_spatial_table_reproduces_measured_facts():
    import time

    from pipelines.segmentation.spatial import build_spatial_lsoa21

    start = time.perf_counter()
    table = build_spatial_lsoa21()
    assert time.perf_counter() - start < 120  # a reference asset: minutes at most
    assert table.schema == pl.Schema(SPATIAL_SCHEMA)
    assert table["postcode"].is_unique().all()
    assert set(table["spatial_rule"]) <= set(SPATIAL_RULES)
    split = table.filter(pl.col("spatial_rule") != "point_in_polygon")
    within = (split["spatial_rule"] == "within_child").mean()
    assert 0.92 < within < 0.935  # 92.7% of split-LSOA centroids fall inside their own child
    assert 0.19 < split["is_decile_certain"].mean() < 0.23  # 21%
    assert 0.85 < split["is_core20_certain"].mean() < 0.89  # 87%
    assert table.filter(pl.col("spatial_rule") == "point_in_polygon").height > 20_000  # ~25k new postcodes
