"""The national release is served as an ICS month is: a snapshot whose star and Power BI model hold every area side by side."""

from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import serving
from pipelines.national.rollup import area_table
from powerbi_model import model_vs_parquet, parse_every_file, relationships_vs_data
from test_powerbi_project import catalogue, gaps, make_warehouse

AREAS = [("icb", "QT1", "NHS Nottingham and Nottinghamshire ICB"), ("icb", "QOX", "NHS Bath and North East Somerset, Swindon and Wiltshire ICB"),
         ("region", "Y60", "Midlands"), ("region", "Y58", "South West"), ("england", "ENG", "England")]


def national_warehouse(path: Path) -> Path:
    """A national warehouse as publish_national leaves it: every table carries its area; `areas` says how they nest."""
    gap = pl.concat([gaps().select(pl.lit(level).alias("geography_level"), pl.lit(code).alias("geography_code"),
                                   pl.lit(name).alias("geography_name"), pl.all()) for level, code, name in AREAS])
    return make_warehouse(path, gap, catalogue(), schema="national", others={"areas": area_table(["QT1", "QOX"])})


@pytest.fixture
def snapshot(tmp_path) -> Path:
    serving.publish_snapshot(national_warehouse(tmp_path / "core20plus5_national.duckdb"), tmp_path / "serving", schema="national")
    return serving.read_pointer(tmp_path / "serving")


def test_every_area_is_a_row_of_dim_geography_with_its_place_in_the_hierarchy(snapshot):
    with duckdb.connect(str(snapshot / serving.SERVING_DB), read_only=True) as con:
        rows = con.execute("select geography_key, level, code, icb_code, region_code from star.dim_geography order by 1").fetchall()
    assert rows == [("england:ENG", "england", "ENG", None, None),
                    ("icb:QOX", "icb", "QOX", "QOX", "Y58"), ("icb:QT1", "icb", "QT1", "QT1", "Y60"),
                    ("region:Y58", "region", "Y58", None, "Y58"), ("region:Y60", "region", "Y60", None, "Y60")]


def test_each_fact_row_joins_the_area_it_describes(snapshot):
    with duckdb.connect(str(snapshot / serving.SERVING_DB), read_only=True) as con:
        keys = con.execute("select geography_level || ':' || geography_code = geography_key, count(*) "
                           "from star.fact_gap_table group by 1").fetchall()
        levels = con.execute("select g.level, count(*) from star.fact_gap_table f join star.dim_geography g using (geography_key) "
                             "group by 1 order by 1").fetchall()
    assert keys == [(True, 15)]
    assert levels == [("england", 3), ("icb", 6), ("region", 6)]


def test_the_national_power_bi_model_parses_and_matches_its_parquet_files(snapshot):
    model = parse_every_file(snapshot)
    assert model_vs_parquet(snapshot, model) == []
    assert relationships_vs_data(snapshot, model) == []
    geography = model.columns("fact_gap_table")
    assert {"geography_level", "geography_code", "geography_name"} <= set(geography)
    assert "icb, region" in geography["geography_level"].description
    assert ("fact_gap_table.geography_key", "dim_geography.geography_key") in {
        (str(r.properties["fromColumn"]), str(r.properties["toColumn"])) for r in model.relationships}


def published_national(root: Path, gap_numerator: int = 40) -> Path:
    """A national root as `core20 national --root ROOT` leaves it: ROOT/warehouse and ROOT/serving."""
    (root / "warehouse").mkdir(parents=True)
    warehouse = national_warehouse(root / "warehouse" / "core20plus5_national.duckdb")
    with duckdb.connect(str(warehouse)) as con:
        con.execute('update "national".gap_table set numerator = ? where geography_code = ? and numerator = 40',
                    [gap_numerator, "Y58"])
    serving.publish_snapshot(warehouse, root / "serving", schema="national")
    return root


def test_the_disclosure_audit_reads_the_national_release_and_finds_no_breach(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["disclosure-audit", "--national", str(published_national(tmp_path / "national"))]) == 0
    out = capsys.readouterr().out
    assert "3 published table(s), 1 serving snapshot(s)" in out and "no breach" in out


def test_the_disclosure_audit_names_a_small_count_in_a_region_row_of_the_national_release(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["disclosure-audit", "--national", str(published_national(tmp_path / "national", gap_numerator=3))]) == 2
    out = capsys.readouterr().out
    breaches = [line for line in out.splitlines() if "BREACH" in line]
    # The table, the snapshot's Parquet file and both copies in its DuckDB file; each line names
    # the surface and the rule, never the value.
    assert len(breaches) == 4 and all("small_count (1 time(s))" in line for line in breaches)
    assert any("national.gap_table" in line for line in breaches)


def test_a_snapshot_that_fails_its_check_is_never_pointed_at(tmp_path):
    root = published_national(tmp_path / "national")
    before = serving.read_pointer(root / "serving")

    def refuse(folder: Path) -> None:
        raise RuntimeError("breach")

    with pytest.raises(RuntimeError, match="breach"):
        serving.publish_snapshot(root / "warehouse" / "core20plus5_national.duckdb", root / "serving", schema="national",
                                 check=refuse)
    assert serving.read_pointer(root / "serving") == before
    assert not list((root / "serving" / "snapshots").glob(".*.building"))
