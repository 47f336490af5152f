"""The Power BI Project written into each snapshot: parsed, matched to the Parquet files, deterministic."""

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import serving
from pipelines.powerbi import project, tmdl
from pipelines.segmentation.schemas import GAP_TABLE, INDICATOR_CATALOGUE
from powerbi_model import model_vs_parquet, parse_every_file, relationships_vs_data

OCT = dt.date(2026, 10, 1)


def catalogue(multiplier: int = 100_000) -> pl.DataFrame:
    rows = [{"reporting_month": OCT, "indicator_id": "htn", "indicator_version": 2, "title": "Hypertension to target",
             "clinical_area": "hypertension", "direction": "higher_is_better", "target": 0.8, "unavailable_components": [],
             "definition_hash": "a" * 64, "is_available": True, "not_available_reason": None, "multiplier": 1,
             "requires_feeds": [], "codelists": ["bp", "htn"], "denominator_rule": "on register", "numerator_rule": "BP at target"},
            {"reporting_month": OCT, "indicator_id": "teeth", "indicator_version": 1, "title": "Tooth extractions",
             "clinical_area": "cyp_oral_health", "direction": "lower_is_better", "target": None, "unavailable_components": [],
             "definition_hash": "b" * 64, "is_available": True, "not_available_reason": None, "multiplier": multiplier,
             "requires_feeds": ["dental_extractions"], "codelists": [], "denominator_rule": "aged 0-10", "numerator_rule": "extraction"}]
    return pl.DataFrame(rows, schema=INDICATOR_CATALOGUE.schema)


def gaps(teeth_rate_scale: float = 1.0) -> pl.DataFrame:
    base = {"reporting_month": OCT, "imd_vintage": "IMD2025", "breakdown": "core20", "reference_group": "rest",
            "gap": None, "gap_lower": None, "gap_upper": None, "rate_ratio": None, "comparison": None, "comparison_method": None,
            "disclosure_profile": "nhs_suppress_1_7_round_5"}
    rows = [base | {"indicator_id": "htn", "indicator_version": 2, "clinical_area": "hypertension", "direction": "higher_is_better",
                    "group": "core20", "numerator": 40, "denominator": 100, "rate": 0.4, "rate_lower": 0.31, "rate_upper": 0.5,
                    "is_suppressed": False},
            base | {"indicator_id": "htn", "indicator_version": 2, "clinical_area": "hypertension", "direction": "higher_is_better",
                    "group": "rest", "numerator": None, "denominator": None, "rate": None, "rate_lower": None, "rate_upper": None,
                    "is_suppressed": True},
            base | {"indicator_id": "teeth", "indicator_version": 1, "clinical_area": "cyp_oral_health", "direction": "lower_is_better",
                    "group": "core20", "numerator": 10, "denominator": 2000, "rate": 10 / 2000 * teeth_rate_scale,
                    "rate_lower": None, "rate_upper": None, "is_suppressed": False}]
    return pl.DataFrame(rows, schema=GAP_TABLE.schema)


def make_warehouse(path: Path, gap_table: pl.DataFrame, catalogue_table: pl.DataFrame, *, schema: str = "published",
                   others: dict[str, pl.DataFrame] | None = None) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute(f'create schema "{schema}"')
        for name, frame in {"gap_table": gap_table, "indicator_catalogue": catalogue_table, **(others or {})}.items():
            con.register("f", frame.to_arrow())
            con.execute(f'create table "{schema}".{name} as select * from f')
            con.unregister("f")
    return path


@pytest.fixture
def snapshot(tmp_path) -> Path:
    warehouse = make_warehouse(tmp_path / "w.duckdb", gaps(), catalogue())
    serving.publish_snapshot(warehouse, tmp_path / "serving")
    return serving.read_pointer(tmp_path / "serving")


def test_every_generated_tmdl_file_parses_and_matches_the_parquet_files(snapshot):
    model = parse_every_file(snapshot)
    assert model_vs_parquet(snapshot, model) == []
    assert relationships_vs_data(snapshot, model) == []
    assert set(model.tables) == {"dim_month", "dim_indicator", "dim_group", "dim_geography", "fact_gap_table",
                                 "fact_indicator_catalogue"}
    joins = {(str(r.properties["fromColumn"]), str(r.properties["toColumn"])) for r in model.relationships}
    assert joins == {("fact_gap_table.month_key", "dim_month.month_key"), ("fact_gap_table.indicator_key", "dim_indicator.indicator_key"),
                     ("fact_gap_table.group_key", "dim_group.group_key"), ("fact_gap_table.geography_key", "dim_geography.geography_key"),
                     ("fact_indicator_catalogue.month_key", "dim_month.month_key"),
                     ("fact_indicator_catalogue.indicator_key", "dim_indicator.indicator_key"),
                     ("fact_indicator_catalogue.geography_key", "dim_geography.geography_key")}
    # The list columns are served as text, so every column loads.
    codelists = model.columns("fact_indicator_catalogue")["codelists"]
    assert codelists.properties["dataType"] == "string" and "joined with '; '" in codelists.description


def test_the_list_columns_reach_the_star_as_joined_text(snapshot):
    with duckdb.connect(str(snapshot / serving.SERVING_DB), read_only=True) as con:
        assert con.execute("select indicator_id, codelists, requires_feeds from star.fact_indicator_catalogue order by 1").fetchall() == [
            ("htn", "bp; htn", ""), ("teeth", "", "dental_extractions")]
        assert con.execute("select indicator_key, multiplier from star.dim_indicator order by 1").fetchall() == [
            ("htn@v2", 1), ("teeth@v1", 100_000)]


def test_the_folder_parameter_is_a_static_path_to_current_and_can_be_set(tmp_path, snapshot, monkeypatch):
    expressions = (snapshot / "powerbi" / "core20plus5.SemanticModel" / "definition" / "expressions.tmdl").read_text()
    serving_root = snapshot.parent.parent
    assert f'expression ParquetFolder = "{serving_root.resolve() / "current" / "parquet"}" meta [IsParameterQuery=true' in expressions
    # One Folder.Files call, on the parameter itself: no path is built from file contents at refresh time.
    assert expressions.count("Folder.Files(") == 1 and "Folder.Files(ParquetFolder)" in expressions
    assert "File.Contents" not in expressions and "CURRENT" not in expressions.replace("current", "")
    share = r"\\analytics-server\core20\serving\current\parquet"
    warehouse = make_warehouse(tmp_path / "w2.duckdb", gaps(), catalogue())
    serving.publish_snapshot(warehouse, tmp_path / "s2", powerbi_parquet_folder=share)
    text = (serving.read_pointer(tmp_path / "s2") / "powerbi" / "core20plus5.SemanticModel" / "definition" / "expressions.tmdl").read_text()
    assert f'expression ParquetFolder = "{share}" meta' in text


def test_identical_inputs_give_byte_identical_project_files(tmp_path):
    warehouse = make_warehouse(tmp_path / "w.duckdb", gaps(), catalogue())
    first = serving.publish_snapshot(warehouse, tmp_path / "serving")
    second = serving.publish_snapshot(warehouse, tmp_path / "serving")
    assert first["snapshot"] != second["snapshot"]
    assert first["powerbi_files"] == second["powerbi_files"] and len(first["powerbi_files"]) > 10
    manifest = json.loads((serving.read_pointer(tmp_path / "serving") / serving.MANIFEST).read_text())
    assert manifest["powerbi_files"] == second["powerbi_files"]


@pytest.mark.parametrize("scale, fraction", [(1.0, True), (100_000.0, False)])
def test_rates_are_scaled_for_display_only_when_stored_as_fractions(tmp_path, scale, fraction):
    """Published rate 10/2000 of a per-100,000 indicator: stored 0.005 is shown x 100,000; stored 500 as is."""
    warehouse = make_warehouse(tmp_path / "w.duckdb", gaps(teeth_rate_scale=scale), catalogue())
    database = tmp_path / "s.duckdb"
    serving.build_snapshot(warehouse, tmp_path / "snap")
    database = tmp_path / "snap" / serving.SERVING_DB
    with duckdb.connect(str(database), read_only=True) as con:
        assert project.rate_storage(con, project.read_star(con)) is fraction
    rate = tmdl.parse_model(tmp_path / "snap" / "powerbi" / "core20plus5.SemanticModel" / "definition").tables[
        "fact_gap_table"].child("measure")
    expression = next(m for m in rate if m.name == "Rate").expression
    assert expression.endswith("* [Gap table multiplier]\n)" if fraction else "* 1\n)")


def test_rates_stored_both_ways_stop_the_snapshot(tmp_path):
    mixed = pl.concat([gaps(), gaps(teeth_rate_scale=100_000.0).with_columns(pl.lit("rest").alias("group"))])
    warehouse = make_warehouse(tmp_path / "w.duckdb", mixed, catalogue())
    with pytest.raises(ValueError, match="one convention"):
        serving.publish_snapshot(warehouse, tmp_path / "serving")
    assert not (tmp_path / "serving" / serving.POINTER).exists(), "nothing was published"


def test_a_model_that_does_not_parse_is_never_published(tmp_path, monkeypatch):
    warehouse = make_warehouse(tmp_path / "w.duckdb", gaps(), catalogue())
    first = serving.publish_snapshot(warehouse, tmp_path / "serving")
    broken = project.render_model

    def render_with_a_typo(*args, **kwargs):
        files = broken(*args, **kwargs)
        files["tables/fact_gap_table.tmdl"] = files["tables/fact_gap_table.tmdl"].replace("dataType: double", "dataType: real", 1)
        return files

    monkeypatch.setattr(project, "render_model", render_with_a_typo)
    with pytest.raises(tmdl.TmdlError, match="dataType"):
        serving.publish_snapshot(warehouse, tmp_path / "serving")
    assert serving.read_pointer(tmp_path / "serving").name == first["snapshot"]
    assert not list((tmp_path / "serving" / serving.SNAPSHOTS).glob(".*.building"))


def test_suppressed_counts_are_shown_as_suppressed_and_measures_are_formatted_by_multiplier(snapshot):
    model = parse_every_file(snapshot)
    measures = {m.name: m for m in model.tables["fact_gap_table"].child("measure")}
    numerator = measures["Numerator (shown)"].expression
    # A null numerator reads "suppressed" when the row is flagged, never a zero.
    assert "ISBLANK ( _n ), IF ( SELECTEDVALUE ( 'fact_gap_table'[is_suppressed] ) = TRUE (), \"suppressed\"" in numerator
    assert "COALESCE ( _n" not in numerator and "+ 0" not in numerator
    assert measures["Rate"].expressions == {"formatStringDefinition": "[Gap table rate format]"}
    rate_format = measures["Gap table rate format"].expression
    assert '"0.0%"' in rate_format and '"#,0.0 ""per " & FORMAT ( [Gap table multiplier], "#,0" )' in rate_format
    assert "RELATED ( 'dim_indicator'[multiplier] )" in measures["Gap table multiplier"].expression
    # Every measure is described; helpers are hidden.
    assert all(m.description for m in measures.values())
    assert measures["Gap table multiplier"].properties.get("isHidden") is True
