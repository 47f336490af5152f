"""Write the Power BI Project (.pbip: TMDL semantic model + a minimal report) of a snapshot.

Everything comes from the serving database the snapshot holds: the star tables and their
column types (which derive from the table contracts), the data dictionary (descriptions),
and the dimension keys (each dimension contract's primary key). A table or column the
pipeline starts publishing therefore reaches the model without a change here.

The model reads the snapshot's Parquet files through ONE text parameter, `ParquetFolder`,
and one `Folder.Files` call on it. A scheduled refresh in the Power BI Service refuses a
*dynamic* data source, i.e. a path computed at refresh time from data (such as the
README's Desktop query, which reads the `CURRENT` pointer file and builds the snapshot
path from its contents); a path held in a parameter is static and refreshes through an
on-premises data gateway with one Folder data source. The default value points at
`<serving>/current/parquet`, the symbolic link the pipeline swaps atomically; the
trade-off against reading the pointer once is stated in the README.

Identical snapshots give identical files: objects are written in a fixed order and the
lineage tags and relationship names are UUIDs derived from object names, not random.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.powerbi import measures as dax
from pipelines.powerbi.tmdl import parse_model, quote_name
from pipelines.segmentation import schemas, star

MODEL = "core20plus5"
PARAMETER = "ParquetFolder"
FUNCTION = "Core20Parquet"
COMPATIBILITY_LEVEL = 1601
CULTURE = "en-GB"
PAGE = "core20plus5gaps"
_NAMESPACE = uuid.UUID("5f1c4a2e-3c1d-4f0e-9a57-c0de20b15e55")

# DuckDB type -> (TMDL dataType, Power Query type, format string)
_TYPES = {
    "BOOLEAN": ("boolean", "type logical", None),
    "TINYINT": ("int64", "Int64.Type", "0"), "SMALLINT": ("int64", "Int64.Type", "0"),
    "INTEGER": ("int64", "Int64.Type", "0"), "BIGINT": ("int64", "Int64.Type", "0"),
    "UTINYINT": ("int64", "Int64.Type", "0"), "USMALLINT": ("int64", "Int64.Type", "0"),
    "UINTEGER": ("int64", "Int64.Type", "0"),
    "FLOAT": ("double", "type number", None), "DOUBLE": ("double", "type number", None),
    "VARCHAR": ("string", "type text", None),
    "DATE": ("dateTime", "type date", "yyyy-mm-dd"),
    "TIMESTAMP": ("dateTime", "type datetime", "yyyy-mm-dd hh:nn:ss"),
}


@dataclass(frozen=True)
class StarColumn:
    """One served column: name, DuckDB type and description."""

    name: str
    duckdb_type: str
    description: str


@dataclass(frozen=True)
class StarTable:
    """One served table: name, description and columns in served order."""

    name: str
    description: str
    columns: tuple[StarColumn, ...]

    @property
    def types(self) -> dict[str, str]:
        """Return column -> DuckDB type."""
        return {c.name: c.duckdb_type for c in self.columns}


def model_type(table: str, column: str, duckdb_type: str) -> tuple[str, str, str | None]:
    """Return (TMDL dataType, Power Query type, format string) of a served column.

    Raises ValueError naming the table and column when the type cannot load in Power BI
    (lists, structs and other nested types must be served as text, see star.star_type).

    Examples:
        >>> model_type("dim_month", "reporting_month", "DATE")
        ('dateTime', 'type date', 'yyyy-mm-dd')
    """
    if duckdb_type.startswith("DECIMAL"):
        return "double", "type number", None
    if duckdb_type in _TYPES:
        return _TYPES[duckdb_type]
    raise ValueError(f"star.{table}.{column}: type {duckdb_type} cannot be loaded by Power BI from Parquet; "
                     "serve it as a scalar (see pipelines/segmentation/star.py, star_type)")


def read_star(con: duckdb.DuckDBPyConnection) -> list[StarTable]:
    """Return the served star tables, dimensions first (contract order), then facts by name."""
    described = {(t, c): d for t, c, d in con.execute(
        'select "table", "column", description from meta.data_dictionary').fetchall()}
    about = dict(con.execute('select "table", any_value(table_description) from meta.data_dictionary group by 1').fetchall())
    names = [r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'star' order by table_name").fetchall()]
    dimensions = [t.name.split(".", 1)[1] for t in schemas.STAR_DIMENSIONS]
    ordered = [t for t in dimensions if t in names] + [t for t in names if t not in dimensions]
    tables = []
    for name in ordered:
        columns = tuple(StarColumn(c, dtype, described.get((name, c), star.UNDECLARED))
                        for c, dtype in con.execute(f"select column_name, data_type from information_schema.columns "
                                                    f"where table_schema = 'star' and table_name = ? order by ordinal_position",
                                                    [name]).fetchall())
        tables.append(StarTable(name, about.get(name, star.UNDECLARED), columns))
    return tables


def rate_storage(con: duckdb.DuckDBPyConnection, tables: list[StarTable]) -> bool:
    """Return whether published rates are stored as fractions (True) or on their multiplier's scale.

    Decided from the data: gap-table rows of indicators with a multiplier other than 1 and
    positive counts show whether `rate` equals numerator / denominator or that times the
    multiplier. With no such row, a gap table that carries its own `multiplier` column is
    taken to store scaled rates, one without to store fractions (the contract: "rate:
    numerator / denominator").

    Raises ValueError when both kinds of row are present (the model could not format both).
    """
    gap = next((t for t in tables if t.name == "fact_gap_table"), None)
    if gap is None or not {"rate", "numerator", "denominator", "indicator_key"} <= set(gap.types):
        return True
    evidence = con.execute("""
        select count(*) filter (where abs(f.rate * f.denominator / f.numerator - 1) < 1e-6),
               count(*) filter (where abs(f.rate * f.denominator / f.numerator / i.multiplier - 1) < 1e-6)
        from star.fact_gap_table f join star.dim_indicator i using (indicator_key)
        where i.multiplier is not null and i.multiplier <> 1 and f.numerator > 0 and f.denominator > 0
          and f.rate is not null""").fetchone()
    fraction, scaled = evidence
    if fraction and scaled:
        raise ValueError(f"star.fact_gap_table: {fraction} rates are stored as fractions and {scaled} multiplied by "
                         "their indicator's multiplier; the Power BI measures need one convention")
    if fraction or scaled:
        return bool(fraction)
    return "multiplier" not in gap.types


def relationships(tables: list[StarTable]) -> list[tuple[str, str, str, str]]:
    """Return (fact, key column, dimension, dimension key) for each fact key a fact can fill.

    Each dimension is joined on its contract's primary key; a fact column of that name
    joins it many-to-one, single direction.
    """
    dimension_keys = {d.primary_key[0]: d.name.split(".", 1)[1] for d in schemas.STAR_DIMENSIONS}
    served = {t.name for t in tables}
    out = []
    for table in tables:
        if not table.name.startswith("fact_"):
            continue
        published = [c.name for c in table.columns if c.name not in dimension_keys]
        for key in star.fact_keys(published):
            if key in table.types and dimension_keys.get(key) in served:
                out.append((table.name, key, dimension_keys[key], key))
    return out


def _tag(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def _description(text: str, indent: str) -> list[str]:
    return [f"{indent}/// {line}".rstrip() for line in text.splitlines() or [""]]


def _expression(text: str, indent: str) -> list[str]:
    """Return a multi-line expression body, two tabs deeper than its declaring line."""
    body = indent + "\t\t"
    return [f"{body}{line}" if line.strip() else "" for line in text.splitlines()]


def _m_text(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def partition_source(table: StarTable) -> str:
    """Return the M query loading a star table from its Parquet files, typed as the model declares."""
    names = ",\n        ".join(_m_text(c.name) for c in table.columns)
    types = ",\n        ".join(f"{{{_m_text(c.name)}, {model_type(table.name, c.name, c.duckdb_type)[1]}}}" for c in table.columns)
    return (f"let\n    Source = {FUNCTION}({_m_text(table.name)}),\n"
            f"    // Exactly the served columns, in served order; one the files lack loads as empty rather than failing.\n"
            f"    Selected = Table.SelectColumns(Source, {{\n        {names}\n    }}, MissingField.UseNull),\n"
            f"    Typed = Table.TransformColumnTypes(Selected, {{\n        {types}\n    }})\nin\n    Typed")


FOLDER_FUNCTION = """(TableName as text) as table =>
let
    // One Folder.Files call on the parameter: one static data source for the gateway.
    // Files are <ParquetFolder>\\<table>\\part-0.parquet or <ParquetFolder>\\<table>\\month=YYYY-MM\\part-0.parquet.
    Root = Text.Trim(Text.Replace(ParquetFolder, "/", "\\"), "\\"),
    Depth = List.Count(Text.Split(Root, "\\")),
    TableOf = (path as text) as nullable text =>
        List.First(List.Skip(Text.Split(Text.Trim(Text.Replace(path, "/", "\\"), "\\"), "\\"), Depth), null),
    Files = Table.SelectRows(Folder.Files(ParquetFolder), each Text.Lower([Extension]) = ".parquet"),
    Own = Table.SelectRows(Files, each TableOf([Folder Path]) = TableName),
    Ordered = Table.Sort(Own, {{"Folder Path", Order.Ascending}, {"Name", Order.Ascending}}),
    Parts = List.Transform(Ordered[Content], each Parquet.Document(_))
in
    Table.Combine(Parts)"""


def render_table(table: StarTable, keys: set[str], table_measures: list[dax.Measure]) -> str:
    """Return the TMDL of one table: description, measures, columns and its M partition."""
    lines = _description(table.description, "") + [f"table {quote_name(table.name)}", f"\tlineageTag: {_tag('table', table.name)}", ""]
    for m in table_measures:
        lines += _description(m.description, "\t")
        if "\n" in m.expression:
            lines += [f"\tmeasure {quote_name(m.name)} ="] + _expression(m.expression, "\t")
        else:
            lines.append(f"\tmeasure {quote_name(m.name)} = {m.expression}")
        if m.format_string:
            lines.append(f"\t\tformatString: {m.format_string}")
        if m.format_expression:
            lines.append(f"\t\tformatStringDefinition = {m.format_expression}")
        if m.hidden:
            lines.append("\t\tisHidden")
        if m.data_category:
            lines.append(f"\t\tdataCategory: {m.data_category}")
        lines += [f"\t\tdisplayFolder: {m.folder}", f"\t\tlineageTag: {_tag('measure', table.name, m.name)}", ""]
    for column in table.columns:
        data_type, _, format_string = model_type(table.name, column.name, column.duckdb_type)
        lines += _description(column.description, "\t") + [f"\tcolumn {quote_name(column.name)}", f"\t\tdataType: {data_type}"]
        if column.name in keys:
            lines.append("\t\tisHidden")
        if format_string:
            lines.append(f"\t\tformatString: {format_string}")
        lines += [f"\t\tlineageTag: {_tag('column', table.name, column.name)}", "\t\tsummarizeBy: none",
                  f"\t\tsourceColumn: {column.name}"]
        if table.name == "dim_month" and column.name == "month_label" and "month_key" in table.types:
            lines.append("\t\tsortByColumn: month_key")
        lines.append("")
        if column.duckdb_type == "DATE":
            lines += ["\t\tannotation UnderlyingDateTimeDataType = Date", ""]
    lines += [f"\tpartition {quote_name(table.name)} = m", "\t\tmode: import", "\t\tsource ="]
    lines += _expression(partition_source(table), "\t\t")
    lines += ["", "\tannotation PBI_ResultType = Table", ""]
    return "\n".join(lines)


def render_model(tables: list[StarTable], parquet_folder: str, fraction: bool) -> dict[str, str]:
    """Return the semantic model's TMDL files: relative path -> text."""
    joins = relationships(tables)
    hidden_keys = {(fact, key) for fact, key, _, _ in joins}
    files = {
        "database.tmdl": f"database {MODEL}\n\tcompatibilityLevel: {COMPATIBILITY_LEVEL}\n\tcompatibilityMode: powerBI\n",
    }
    query_order = json.dumps([PARAMETER, FUNCTION] + [t.name for t in tables], separators=(",", ":"))
    files["model.tmdl"] = "\n".join([
        "model Model", f"\tculture: {CULTURE}", "\tdefaultPowerBIDataSourceVersion: powerBI_V3", "\tdiscourageImplicitMeasures",
        f"\tsourceQueryCulture: {CULTURE}", "\tdataAccessOptions", "\t\tlegacyRedirects", "\t\treturnErrorValuesAsNull", "",
        f"annotation PBI_QueryOrder = {query_order}", "",
        # No automatic date tables: the star has its own month dimension.
        "annotation __PBI_TimeIntelligenceEnabled = 0", "",
        *[f"ref table {quote_name(t.name)}" for t in tables], ""])
    files["expressions.tmdl"] = "\n".join([
        "/// Folder holding the serving snapshot's Parquet tables, as the machine that refreshes sees it "
        "(Power BI Desktop, or the on-premises data gateway for the Service): normally <serving>\\current\\parquet.",
        f"expression {PARAMETER} = {_m_text(parquet_folder)} meta [IsParameterQuery=true, Type=\"Text\", IsParameterQueryRequired=true]",
        f"\tlineageTag: {_tag('expression', PARAMETER)}", "", "\tannotation PBI_ResultType = Text", "",
        f"/// Reads one star table: every Parquet file under {PARAMETER}\\<table>, combined.",
        f"expression {FUNCTION} =", *_expression(FOLDER_FUNCTION, ""),
        f"\tlineageTag: {_tag('expression', FUNCTION)}", "", "\tannotation PBI_ResultType = Function", ""])
    rels = []
    for fact, key, dimension, dimension_key in joins:
        rels += [f"relationship {_tag('relationship', fact, key, dimension)}",
                 f"\tfromColumn: {quote_name(fact)}.{quote_name(key)}", f"\ttoColumn: {quote_name(dimension)}.{quote_name(dimension_key)}",
                 "\tfromCardinality: many", "\ttoCardinality: one", "\tcrossFilteringBehavior: oneDirection", ""]
    files["relationships.tmdl"] = "\n".join(rels)
    for table in tables:
        table_measures = []
        if table.name.startswith("fact_") and "rate" in table.types:
            table_measures = dax.rate_measures(table.name, table.types, fraction=fraction)
        elif table.name.startswith("fact_"):
            table_measures = dax.inequality_measures(table.name, table.types)
        keys = {key for fact, key in hidden_keys if fact == table.name}
        files[f"tables/{table.name}.tmdl"] = render_table(table, keys, table_measures)
    return files


def _json(value: dict) -> str:
    return json.dumps(value, indent=2, sort_keys=False) + "\n"


def render_project(tables: list[StarTable], parquet_folder: str, fraction: bool) -> dict[str, str]:
    """Return every file of the Power BI Project: relative path -> text."""
    schema = "https://developer.microsoft.com/json-schemas/fabric"
    sm, report = f"{MODEL}.SemanticModel", f"{MODEL}.Report"
    files = {
        f"{MODEL}.pbip": _json({"$schema": f"{schema}/pbip/pbipProperties/1.0.0/schema.json", "version": "1.0",
                                "artifacts": [{"report": {"path": report}}], "settings": {"enableAutoRecovery": True}}),
        f"{sm}/definition.pbism": _json({"$schema": f"{schema}/item/semanticModel/definitionProperties/1.0.0/schema.json",
                                         "version": "4.0", "settings": {}}),
        f"{sm}/.platform": _json({"$schema": f"{schema}/gitIntegration/platformProperties/2.0.0/schema.json",
                                  "metadata": {"type": "SemanticModel", "displayName": MODEL},
                                  "config": {"version": "2.0", "logicalId": _tag("item", "SemanticModel")}}),
        f"{report}/definition.pbir": _json({"$schema": f"{schema}/item/report/definitionProperties/2.0.0/schema.json",
                                            "version": "4.0", "datasetReference": {"byPath": {"path": f"../{sm}"}}}),
        f"{report}/.platform": _json({"$schema": f"{schema}/gitIntegration/platformProperties/2.0.0/schema.json",
                                      "metadata": {"type": "Report", "displayName": MODEL},
                                      "config": {"version": "2.0", "logicalId": _tag("item", "Report")}}),
        f"{report}/definition/version.json": _json({"$schema": f"{schema}/item/report/definition/versionMetadata/1.0.0/schema.json",
                                                    "version": "2.0.0"}),
        f"{report}/definition/report.json": _json({"$schema": f"{schema}/item/report/definition/report/1.3.0/schema.json",
                                                   "themeCollection": {}, "layoutOptimization": "None"}),
        f"{report}/definition/pages/pages.json": _json({"$schema": f"{schema}/item/report/definition/pagesMetadata/1.0.0/schema.json",
                                                        "pageOrder": [PAGE], "activePageName": PAGE}),
        f"{report}/definition/pages/{PAGE}/page.json": _json({
            "$schema": f"{schema}/item/report/definition/page/1.4.0/schema.json", "name": PAGE,
            "displayName": "Core20PLUS5 gaps", "displayOption": "FitToPage", "height": 720, "width": 1280}),
        ".gitignore": "**/.pbi/localSettings.json\n**/.pbi/cache.abf\n",
    }
    for path, text in render_model(tables, parquet_folder, fraction).items():
        files[f"{sm}/definition/{path}"] = text
    return dict(sorted(files.items()))


def write_project(database: Path, folder: Path, parquet_folder: str) -> dict[str, dict]:
    """Write the Power BI Project of a serving database into `folder`, check it, and list its files.

    Arguments:
        database: the snapshot's serving DuckDB file (read only).
        folder: where the project goes (the snapshot's `powerbi` folder); created.
        parquet_folder: default value of the `ParquetFolder` parameter, e.g.
            `\\\\analytics-server\\core20\\serving\\current\\parquet`.

    Returns:
        relative file path -> {"sha256": ...}, for the snapshot manifest.

    Raises:
        ValueError or TmdlError when a served column cannot be modelled or the written model
        does not parse; the caller's snapshot is then not published.
    """
    with duckdb.connect(str(database), read_only=True) as con:
        tables = read_star(con)
        fraction = rate_storage(con, tables)
    files = render_project(tables, parquet_folder, fraction)
    written = {}
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("utf-8")
        path.write_bytes(data)
        written[relative] = {"sha256": hashlib.sha256(data).hexdigest()}
    parse_model(folder / f"{MODEL}.SemanticModel" / "definition")
    return written
