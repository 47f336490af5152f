"""Unit: the audit trail - definition usage and registry, run manifest, attrition."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from pipelines.segmentation.definitions import load_definitions, parse_definitions
from pipelines.segmentation.lineage import REGISTRY_VIEW_SQL, attrition, definition_usage, run_manifest
from pipelines.segmentation.schemas import ATTRITION, DEFINITION_USAGE, RUN_MANIFEST

R = date(2025, 3, 31)
HEADER = "\n    version: 1\n    title: t\n    description: d\n    source: s\n"
TEXTS = {
    "registers.yaml": "registers:\n  - id: hyp" + HEADER + "    diagnosis: [hyp_cod]\n    resolved: [hypres_cod]\n",
    "cohorts.yaml": "cohorts:\n  - id: older" + HEADER + "    criteria: {age: {min: 40}}\n",
    "indicators.yaml": (
        "indicators:\n  - id: bp_recorded" + HEADER + "    clinical_area: hypertension\n    direction: higher_is_better\n"
        "    denominator:\n      all_of:\n        - on_register: hyp\n        - in_cohort: older\n"
        "    numerator:\n      has_event: {codelists: [bp_cod], within_months: 12}\n"
    ),
}
CODELISTS = {"hyp_cod": frozenset({"HYP"}), "hypres_cod": frozenset({"HYP_RES"}), "bp_cod": frozenset({"BP"})}


def test_attrition_counts_each_rule_in_order():
    defs = parse_definitions(TEXTS, known_codelists=set(CODELISTS))
    patients = pl.DataFrame({
        "patient_id": ["a", "b", "c", "d", "e"],
        "date_of_birth": [date(1950, 1, 1), date(1950, 1, 1), date(1990, 1, 1), date(1950, 1, 1), date(1950, 1, 1)],
    })
    events = pl.DataFrame({
        "patient_id": ["a", "a", "b", "c", "d", "d"],
        "code": ["HYP", "BP", "HYP", "HYP", "HYP", "HYP_RES"],
        "event_date": [date(2020, 1, 1), date(2025, 1, 1), date(2020, 1, 1), date(2020, 1, 1), date(2020, 1, 1), date(2021, 1, 1)],
        "value": [None] * 6,
    }, schema_overrides={"value": pl.Float64})
    table = attrition(defs, patients.lazy(), events.lazy(), None, CODELISTS, R)
    assert table.schema == pl.Schema(ATTRITION.schema)
    rows = table.select("definition_id", "stage", "step", "n_before", "n_kept", "n_removed").rows()
    assert rows == [
        ("hyp", "register", 1, 5, 4, 1),     # e has no hypertension code
        ("hyp", "register", 2, 4, 3, 1),     # d resolved
        ("older", "criteria", 1, 5, 4, 1),   # c is 35
        ("bp_recorded", "denominator", 1, 5, 3, 2),
        ("bp_recorded", "denominator", 2, 3, 2, 1),
        ("bp_recorded", "numerator", 3, 2, 1, 1),
    ]
    assert table.filter(pl.col("definition_id") == "bp_recorded")["rule"].to_list() == [
        "on register hyp", "in cohort older", "a bp_cod code within 12 months"
    ]


def test_usage_and_registry_say_which_version_made_each_month():
    month_1, month_2 = date(2026, 1, 1), date(2026, 2, 1)
    old = parse_definitions(TEXTS, known_codelists=set(CODELISTS))
    new = parse_definitions(dict(TEXTS, **{"cohorts.yaml": TEXTS["cohorts.yaml"].replace("min: 40", "min: 45").replace("version: 1", "version: 2")}),
                            known_codelists=set(CODELISTS))
    usage = pl.concat([definition_usage(old, month_1), definition_usage(new, month_2)])
    assert usage.schema == pl.Schema(DEFINITION_USAGE.schema)
    assert "min: 45" in usage.filter((pl.col("definition_id") == "older") & (pl.col("reporting_month") == month_2))["definition_text"].item()
    con = duckdb.connect()
    con.execute("create schema lineage")
    con.register("incoming", usage.to_arrow())
    con.execute("create table lineage.definition_usage as select * from incoming")
    con.execute(REGISTRY_VIEW_SQL)
    registry = pl.from_arrow(con.sql(
        "select definition_id, definition_version, first_month_used, last_month_used from lineage.definitions_registry "
        "order by definition_id, first_month_used").to_arrow_table())
    assert registry.rows() == [
        ("bp_recorded", 1, month_1, month_1),  # the indicator's hash changed with the cohort it uses
        ("bp_recorded", 1, month_2, month_2),
        ("hyp", 1, month_1, month_2),
        ("older", 1, month_1, month_1),
        ("older", 2, month_2, month_2),
    ]


def test_run_manifest_pins_definitions_codelists_reference_files_and_code():
    defs = load_definitions()
    manifest = run_manifest(defs, date(2026, 1, 1), run_id="run-1", settings={"primary_imd_vintage": "IMD2025"},
                            feeds_present=["maternity"], version="0.1.0+abc")
    assert manifest.schema == pl.Schema(RUN_MANIFEST.schema)
    by = {(t, i): (v, h) for t, i, v, h in manifest.select("item_type", "item_id", "item_version", "item_hash").iter_rows()}
    assert by[("definition", "indicator:smi_health_check")][1] == defs.definition_hash("indicator", "smi_health_check")
    assert by[("codelist", "mh_cod")] == ("20210127", "e973d36625e7313002afde7e1c3c6ce5387dd8b85221ca3b6d5ec7cf22f7c60b")
    assert ("codelist", "ethnicity_snomed") in by and ("reference_file", "imd2025_lsoa21") in by
    assert by[("feed", "maternity")][0] == "present" and by[("feed", "mh_contacts")][0] == "absent"
    assert by[("setting", "primary_imd_vintage")][0] == "IMD2025"
    assert by[("code", "core20plus5")][0] == "0.1.0+abc"
    assert manifest.select("reporting_month", "item_type", "item_id").is_unique().all()


def test_a_register_with_a_second_way_on_counts_it_as_one_step_and_explain_names_it():
    # The SMI register's shape: diagnosis after resolution, OR lithium in the last 6 months.
    texts = dict(TEXTS, **{"registers.yaml": "registers:\n  - id: hyp" + HEADER + "    diagnosis: [hyp_cod]\n"
                           "    resolved: [hypres_cod]\n    also: {has_event: {codelists: [lithium], within_months: 6}}\n"})
    codelists = dict(CODELISTS, lithium=frozenset({"LITH"}))
    defs = parse_definitions(texts, known_codelists=set(codelists))
    patients = pl.DataFrame({"patient_id": ["dx", "lith", "resolved", "none"], "date_of_birth": [date(1950, 1, 1)] * 4})
    events = pl.DataFrame({
        "patient_id": ["dx", "lith", "resolved", "resolved", "resolved"],
        "code": ["HYP", "LITH", "HYP", "HYP_RES", "LITH"],
        "event_date": [date(2020, 1, 1), date(2025, 2, 1), date(2020, 1, 1), date(2021, 1, 1), date(2024, 1, 1)],
        "value": [None] * 5,
    }, schema_overrides={"value": pl.Float64})
    rows = attrition(defs, patients.lazy(), events.lazy(), None, codelists, R).filter(pl.col("definition_id") == "hyp")
    assert rows.select("step", "n_before", "n_kept").rows() == [(1, 4, 2)]  # dx and lith; older lithium does not count
    assert rows["rule"][0].endswith("or a lithium code within 6 months")

    from pipelines.segmentation.explain import explain_patient

    text = "\n".join(explain_patient(defs, codelists, patients.filter(pl.col("patient_id") == "lith"),
                                     events.filter(pl.col("patient_id") == "lith"), R).lines())
    assert "IN   hyp v1" in text
    assert "also: a lithium code within 6 months -- latest LITH on 2025-02-01" in text
