"""The strict TMDL parser: literal models it accepts, and each kind of mistake it must refuse."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.powerbi import tmdl

TABLE = """/// Facts.
table fact_x
\tlineageTag: 11111111-1111-1111-1111-111111111111

\t/// The rate.
\tmeasure Rate =
\t\t\tIF (
\t\t\t    COUNTROWS ( 'fact_x' ) = 1,
\t\t\t    SELECTEDVALUE ( 'fact_x'[rate] )
\t\t\t)
\t\tformatStringDefinition = [Rate format]
\t\tdisplayFolder: Rates

\tmeasure 'Rate format' = "0.0%"
\t\tisHidden

\t/// Month key.
\tcolumn month_key
\t\tdataType: int64
\t\tisHidden
\t\tsummarizeBy: none
\t\tsourceColumn: month_key

\tcolumn rate
\t\tdataType: double
\t\tsummarizeBy: none
\t\tsourceColumn: rate

\tpartition fact_x = m
\t\tmode: import
\t\tsource =
\t\t\t\tlet
\t\t\t\t    Source = F("fact_x")
\t\t\t\tin
\t\t\t\t    Source

\tannotation PBI_ResultType = Table
"""

DIM = """table dim_month
\tcolumn month_key
\t\tdataType: int64
\t\tsourceColumn: month_key

\tpartition dim_month = m
\t\tmode: import
\t\tsource = F("dim_month")
"""

MODEL = """model Model
\tculture: en-GB
\tdiscourageImplicitMeasures
\tdataAccessOptions
\t\tlegacyRedirects

annotation __PBI_TimeIntelligenceEnabled = 0

ref table dim_month
ref table fact_x
"""

RELATIONSHIPS = """relationship r1
\tfromColumn: fact_x.month_key
\ttoColumn: dim_month.month_key
\tcrossFilteringBehavior: oneDirection
"""


def write_model(root: Path, **overrides: str) -> Path:
    """Write a two-table model; `overrides` replaces whole files (key: path with / as __)."""
    files = {"database.tmdl": "database m\n\tcompatibilityLevel: 1601\n\tcompatibilityMode: powerBI\n",
             "model.tmdl": MODEL, "relationships.tmdl": RELATIONSHIPS,
             "expressions.tmdl": 'expression F =\n\t\t(t as text) => Folder.Files(P)\n',
             "tables/fact_x.tmdl": TABLE, "tables/dim_month.tmdl": DIM}
    files.update({k.replace("__", "/"): v for k, v in overrides.items()})
    definition = root / "definition"
    for name, text in files.items():
        (definition / name).parent.mkdir(parents=True, exist_ok=True)
        (definition / name).write_text(text, encoding="utf-8")
    return definition


def test_a_well_formed_model_parses_into_its_objects(tmp_path):
    model = tmdl.parse_model(write_model(tmp_path))
    fact = model.tables["fact_x"]
    assert fact.description == "Facts."
    assert [c.name for c in fact.child("column")] == ["month_key", "rate"]
    assert model.columns("fact_x")["month_key"].properties == {"dataType": "int64", "isHidden": True,
                                                               "summarizeBy": "none", "sourceColumn": "month_key"}
    rate = fact.child("measure")[0]
    assert rate.expression.splitlines()[0] == "IF (" and rate.expressions == {"formatStringDefinition": "[Rate format]"}
    assert fact.child("partition")[0].expressions["source"].splitlines() == [
        "let", '    Source = F("fact_x")', "in", "    Source"]
    assert [(r.properties["fromColumn"], r.properties["toColumn"]) for r in model.relationships] == [
        ("fact_x.month_key", "dim_month.month_key")]


@pytest.mark.parametrize("file, old, new, message", [
    ("tables/fact_x.tmdl", "\t\tdataType: double", "    dataType: double", "tabs only"),
    ("tables/fact_x.tmdl", "\t\tdataType: double", "\t\tdataType: float", "dataType' must be one of"),
    ("tables/fact_x.tmdl", "\t\tsummarizeBy: none\n\t\tsourceColumn: rate", "\t\tsummarise: none\n\t\tsourceColumn: rate",
     "not a property or object"),
    ("tables/fact_x.tmdl", "\t/// Month key.\n\tcolumn month_key", "\t/// Month key.\n\n\tcolumn month_key", "directly above"),
    ("tables/fact_x.tmdl", "\tcolumn rate\n", "\tcolumn 'rate\n", "unterminated quoted name"),
    ("tables/fact_x.tmdl", "[Rate format]", "[Rate fmt]", "is not a measure"),
    ("tables/fact_x.tmdl", "'fact_x'[rate] )", "'fact_x'[rates] )", "does not exist"),
    ("tables/fact_x.tmdl", "'fact_x'[rate] )\n", "'fact_x'[rate]\n", "left open in DAX"),
    ("tables/fact_x.tmdl", "\t\t\t\t    Source = F", "\t\t\t    Source = F", "tabs only"),
    ("tables/fact_x.tmdl", "\t\t\t\t    Source = F", "\t\t\tSource = F", "indented 3 tabs where 2"),
    ("tables/fact_x.tmdl", '"fact_x")\n', '"fact_x)\n', "unterminated string in M"),
    ("tables/fact_x.tmdl", "\tcolumn rate\n\t\tdataType: double\n", "\tcolumn rate\n\t\tdataType: double\n\t\tdataType: double\n",
     "given twice"),
    ("tables/fact_x.tmdl", "\tcolumn rate\n\t\tdataType: double\n\t\tsummarizeBy: none\n\t\tsourceColumn: rate\n",
     "\tcolumn month_key\n\t\tdataType: double\n\t\tsummarizeBy: none\n\t\tsourceColumn: rate\n", "declared twice"),
    ("tables/fact_x.tmdl", "\t\tisHidden\n\t\tsummarizeBy", "\t\tisHidden: yes\n\t\tsummarizeBy", "true or false"),
    ("tables/fact_x.tmdl", "\t\tsourceColumn: rate\n", "", "has no sourceColumn"),
    ("tables/fact_x.tmdl", "\tpartition fact_x = m", "\tpartition fact_x = sql", "source type"),
    ("tables/fact_x.tmdl", "table fact_x", "tabel fact_x", "not a property or object"),
    ("relationships.tmdl", "dim_month.month_key", "dim_month.key", "does not exist"),
    ("relationships.tmdl", "oneDirection", "oneWay", "must be one of"),
    ("model.tmdl", "ref table fact_x\n", "", "exactly once"),
    ("model.tmdl", "ref table fact_x\n", "ref table fact_x\nref culture en-GB\n", "only 'ref table'"),
    ("database.tmdl", "1601", "1200", "compatibilityLevel"),
])
def test_each_kind_of_mistake_is_refused_with_file_and_line(tmp_path, file, old, new, message):
    texts = {"tables/fact_x.tmdl": TABLE, "relationships.tmdl": RELATIONSHIPS, "model.tmdl": MODEL,
             "database.tmdl": "database m\n\tcompatibilityLevel: 1601\n\tcompatibilityMode: powerBI\n"}
    assert old in texts[file], "the test's own fixture changed"
    definition = write_model(tmp_path, **{file.replace("/", "__"): texts[file].replace(old, new, 1)})
    with pytest.raises(tmdl.TmdlError, match=message) as error:
        tmdl.parse_model(definition)
    assert str(error.value).split(":")[0].endswith((".tmdl", "definition")) or ".tmdl:" in str(error.value)


def test_a_table_file_must_be_named_after_its_table(tmp_path):
    definition = write_model(tmp_path)
    (definition / "tables" / "dim_month.tmdl").rename(definition / "tables" / "months.tmdl")
    with pytest.raises(tmdl.TmdlError, match="named after its table"):
        tmdl.parse_model(definition)


def test_windows_line_ends_and_stray_files_are_refused(tmp_path):
    with pytest.raises(tmdl.TmdlError, match="carriage return"):
        tmdl.parse_text(DIM.replace("\n", "\r\n"), "dim.tmdl")
    definition = write_model(tmp_path)
    (definition / "notes.txt").write_text("x")
    with pytest.raises(tmdl.TmdlError, match="unexpected files"):
        tmdl.parse_model(definition)


def test_dax_references_skip_strings_and_comments():
    refs = tmdl.dax_references('IF ( [A] = 1, "[not a ref] \'x\'", \'t u\'[c] ) -- [nor this]\n/* [or this] */', "x")
    assert refs == [(None, "A"), ("t u", "c")]
    with pytest.raises(tmdl.TmdlError, match="unbalanced quote"):
        tmdl.dax_references('IF ( [A] = 1, "open )', "x")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30))
def test_any_name_survives_quoting(name):
    quoted = tmdl.quote_name(name)
    parsed = tmdl.parse_text(f"table {quoted}\n\tcolumn c\n\t\tdataType: string\n\t\tsourceColumn: c\n", "t.tmdl")
    assert parsed[0].name == name
