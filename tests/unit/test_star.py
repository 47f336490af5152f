"""The star schema and dictionary derive from the published tables and the contracts alone."""

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl

from pipelines import serving
from pipelines.segmentation import star
from pipelines.segmentation.schemas import DIM_GROUP, DIM_INDICATOR, DIM_MONTH, GAP_TABLE

REPO = Path(__file__).resolve().parents[2]
OCT, NOV = dt.date(2026, 10, 1), dt.date(2026, 11, 1)


def gap_rows() -> pl.DataFrame:
    rows = []
    for month in (OCT, NOV):
        for group, num, den in (("core20", 40, 100), ("rest", 150, 200)):
            rows.append({"reporting_month": month, "indicator_id": "htn", "indicator_version": 2, "clinical_area": "hypertension",
                         "direction": "higher_is_better", "imd_vintage": "IMD2025", "breakdown": "core20", "group": group,
                         "numerator": num, "denominator": den, "rate": num / den, "rate_lower": None, "rate_upper": None,
                         "reference_group": "rest", "gap": None, "gap_lower": None, "gap_upper": None, "rate_ratio": None,
                         "comparison": None, "is_suppressed": False, "disclosure_profile": "nhs_suppress_1_7_round_5"})
    return pl.DataFrame(rows, schema=GAP_TABLE.schema)


def make_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema published")
        con.register("gaps", gap_rows().to_arrow())
        con.execute("create table published.gap_table as select * from gaps")
        # A table some later part of the pipeline starts publishing, with no contract and no code here.
        con.execute("""create table published.new_measure as
                       select * from (values (date '2026-10-01', 'htn', 0.5::double), (date '2026-11-01', 'htn', 0.6::double))
                       t(reporting_month, indicator_id, score)""")


def test_a_newly_published_table_reaches_the_star_the_parquet_and_the_dictionary_without_code_changes(tmp_path):
    make_warehouse(tmp_path / "w.duckdb")
    manifest = serving.publish_snapshot(tmp_path / "w.duckdb", tmp_path / "serving")
    assert "fact_new_measure" in manifest["star_tables"]
    assert {f"fact_new_measure/month=2026-{m}/part-0.parquet" for m in ("10", "11")} <= set(manifest["parquet_files"])
    with duckdb.connect(str(tmp_path / "serving" / "current" / serving.SERVING_DB), read_only=True) as con:
        assert con.execute("select month_key, indicator_key, score from star.fact_new_measure order by 1").fetchall() == [
            (202610, None, 0.5), (202611, None, 0.6)]  # no version column and no catalogue: the key is unknown, not guessed
        described = dict(con.execute("select \"column\", description from meta.data_dictionary where \"table\" = 'fact_new_measure'").fetchall())
        assert described["score"] == star.UNDECLARED and described["month_key"].startswith("Reporting month")
        months = con.execute("select month_key, month_label, financial_year from star.dim_month order by 1").fetchall()
        assert months == [(202610, "Oct 2026", "2026/27"), (202611, "Nov 2026", "2026/27")]
        groups = con.execute("select group_key, group_label, is_reference from star.dim_group order by sort_order").fetchall()
        assert groups == [("core20:core20", "Core20 (national IMD deciles 1-2)", False), ("core20:rest", "Rest of the population", True)]
        storage = con.execute("select tags from duckdb_databases() where database_name = 'core20plus5'").fetchall()
        assert storage == [({"storage_version": "v1.0.0+"},)], "readable by DuckDB 1.x clients such as the ODBC driver"
        # Dimension layouts are exactly their contracts.
        for contract in (DIM_MONTH, DIM_INDICATOR, DIM_GROUP):
            columns = [r[0] for r in con.execute(f"describe {contract.name}").fetchall()]
            assert columns == contract.names


def test_january_to_march_belong_to_the_previous_financial_year(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("create schema published")
        con.execute("create table published.t as select * from (values (date '2027-03-01'), (date '2027-04-01')) v(reporting_month)")
    serving.publish_snapshot(tmp_path / "w.duckdb", tmp_path / "s")
    with duckdb.connect(str(tmp_path / "s" / "current" / serving.SERVING_DB), read_only=True) as con:
        assert con.execute("select financial_year from star.dim_month order by 1").fetchall() == [("2026/27",), ("2027/28",)]


def test_snapshots_beyond_keep_are_pruned_and_current_always_names_a_complete_one(tmp_path):
    make_warehouse(tmp_path / "w.duckdb")
    ids = [serving.publish_snapshot(tmp_path / "w.duckdb", tmp_path / "s", keep=2)["snapshot"] for _ in range(4)]
    left = sorted(p.name for p in (tmp_path / "s" / "snapshots").iterdir())
    assert left == ids[-2:]
    assert serving.read_pointer(tmp_path / "s").name == ids[-1] == serving.current_snapshot(tmp_path / "s").name
    assert json.loads((tmp_path / "s" / "current" / serving.MANIFEST).read_text())["snapshot"] == ids[-1]


def test_the_committed_data_dictionary_is_the_generated_one():
    generated = star.dictionary_markdown(star.dictionary_rows(star.declared_star_tables()))
    committed = (REPO / "docs" / "data_dictionary.md").read_text(encoding="utf-8")
    assert committed == generated, "regenerate with `core20 dictionary --out docs/data_dictionary.md`"
