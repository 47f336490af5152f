"""The Power BI Project of a real published month: parses, matches the serving files, no patient data."""

from pathlib import Path

import duckdb
import pytest

from pipelines import serving
from pipelines.segmentation import star
from pipeline_helpers import patient_values
from powerbi_model import model_vs_parquet, parse_every_file, relationships_vs_data


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, base_warehouse) -> Path:
    """The snapshot a run builds from October 2026 (2,000 generated patients) as published."""
    root = tmp_path_factory.mktemp("serving")
    serving.publish_snapshot(base_warehouse, root)
    return serving.read_pointer(root)


def test_the_generated_model_parses_and_matches_every_served_table_and_relationship(snapshot):
    model = parse_every_file(snapshot)
    assert model_vs_parquet(snapshot, model) == []
    assert relationships_vs_data(snapshot, model) == []
    facts = [t for t in model.tables if t.startswith("fact_")]
    assert {"fact_gap_table", "fact_spc_series", "fact_inequality_table", "fact_indicator_catalogue",
            "fact_deprivation_quality", "fact_data_quality"} <= set(facts)
    # Each fact joins the month and geography dimensions; those with indicators and groups join those too.
    joined = {(str(r.properties["fromColumn"]).split(".")[0], str(r.properties["toColumn"]).split(".")[0]) for r in model.relationships}
    assert {(f, "dim_month") for f in facts} | {(f, "dim_geography") for f in facts} <= joined
    assert {("fact_gap_table", "dim_indicator"), ("fact_gap_table", "dim_group"), ("fact_spc_series", "dim_group"),
            ("fact_inequality_table", "dim_indicator")} <= joined
    measures = {m.name for t in model.tables.values() for m in t.child("measure")}
    assert {"Rate", "Gap", "Rate (shown)", "Numerator (shown)", "Variation icon", "Assurance icon", "SII (shown)"} <= measures


def test_every_served_column_has_a_contract_and_a_description(snapshot):
    with duckdb.connect(str(snapshot / serving.SERVING_DB), read_only=True) as con:
        undeclared = con.execute('select "table", "column" from meta.data_dictionary where description = ? or table_description = ?',
                                 [star.UNDECLARED, star.UNDECLARED]).fetchall()
        empty = con.execute("select count(*) from meta.data_dictionary where coalesce(trim(description), '') = ''").fetchone()[0]
    assert undeclared == [] and empty == 0
    assert "(no contract declared" not in (snapshot / serving.DICTIONARY).read_text()


def test_no_patient_level_value_reaches_the_power_bi_files(snapshot, clean_extracts):
    text = "\n".join(p.read_text(encoding="utf-8") for p in (snapshot / "powerbi").rglob("*") if p.is_file())
    assert "patient_id" not in text
    ids = patient_values(clean_extracts / "2026-10")
    assert ids and not [value for value in ids if value in text]
