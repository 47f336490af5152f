"""The star schema Power BI reads: dimensions declared in schemas.py, facts from published tables.

Every table in the warehouse's `published` schema that has a `reporting_month` becomes a
fact `fact_<table>`: the published columns unchanged, plus the keys of `STAR_KEYS`
derived from conventional column names (`indicator_id`, `breakdown`/`group`,
`practice_code`/`sicbl_code`/`icb_code`). Nothing here lists the published tables, so a
table another part of the pipeline starts publishing appears in the star, the Parquet
export and the data dictionary without a code change; declaring its contract in
schemas.py gives its columns their descriptions.

The functions work on a DuckDB connection to the serving database with the warehouse
attached read-only as `wh` (see pipelines/serving.py); they only read `wh`.
"""

from __future__ import annotations

from types import ModuleType

import duckdb
import polars as pl

from pipelines.segmentation import schemas
from pipelines.segmentation.gaps import REFERENCE_GROUPS, UNKNOWN
from pipelines.segmentation.schemas import AREA_COLUMNS, DIM_GEOGRAPHY, DIM_GROUP, DIM_INDICATOR, DIM_MONTH, STAR_KEYS, Table

SOURCE = "wh"
# Where the star reads the published tables: views in the building connection's own catalog
# (publication.published_views), so a snapshot can be built from a month's gated candidates
# before they are published as well as from the published tables.
PUBLISHED = "memory.pub"
STAR = "star"
MONTH_COLUMN = "reporting_month"
GEOGRAPHY_LEVELS = {"practice_code": "practice", "sicbl_code": "sub_icb", "icb_code": "icb"}
# Breakdowns whose groups are organisations (issue 5 adds practice and Sub-ICB/ICB breakdowns).
GEOGRAPHY_BREAKDOWNS = {"practice": "practice", "sub_icb": "sub_icb", "sicbl": "sub_icb", "icb": "icb"}

_DUCKDB_TYPES = {
    pl.String: "VARCHAR", pl.Int8: "TINYINT", pl.Int16: "SMALLINT", pl.Int32: "INTEGER", pl.Int64: "BIGINT",
    pl.Float64: "DOUBLE", pl.Boolean: "BOOLEAN", pl.Date: "DATE",
}


def q(identifier: str) -> str:
    """Return an identifier quoted for DuckDB.

    Examples:
        >>> q("group")
        '"group"'
    """
    return '"' + identifier.replace('"', '""') + '"'


def duckdb_type(dtype: pl.DataType) -> str:
    """Return the DuckDB type a contract column is stored as.

    Examples:
        >>> duckdb_type(pl.Int32), duckdb_type(pl.String())
        ('INTEGER', 'VARCHAR')
    """
    if isinstance(dtype, pl.List):
        return duckdb_type(dtype.inner) + "[]"
    for polars_type, name in _DUCKDB_TYPES.items():
        if dtype == polars_type:
            return name
    raise ValueError(f"no DuckDB type declared for contract dtype {dtype}")


def star_type(dtype: pl.DataType) -> str:
    """Return the DuckDB type a published contract column has in the star (what BI tools load).

    Power BI loads only scalar columns from Parquet (a list-valued cell fails the load), so a
    list column reaches the star as text joined with '; '.

    Examples:
        >>> star_type(pl.List(pl.String)), star_type(pl.Int64)
        ('VARCHAR', 'BIGINT')
    """
    return "VARCHAR" if isinstance(dtype, pl.List) else duckdb_type(dtype)


def _scalar_select(column: str, data_type: str) -> str:
    """Return SQL selecting a published column as a scalar a BI tool can load.

    Lists become their items joined with '; ' (an empty list gives ''); structs and maps
    become JSON text. Scalars pass unchanged.
    """
    if data_type.endswith("[]"):
        return f"array_to_string(t.{q(column)}, '; ')"
    if data_type.startswith(("STRUCT", "MAP", "UNION")):
        return f"to_json(t.{q(column)})::varchar"
    return f"t.{q(column)}"


def published_contracts(module: ModuleType = schemas) -> dict[str, Table]:
    """Return table name -> contract for every `published.*` contract declared in schemas.py.

    Examples:
        >>> "gap_table" in published_contracts()
        True
    """
    return {value.name.split(".", 1)[1]: value for value in vars(module).values()
            if isinstance(value, Table) and value.name.startswith("published.")}


def source_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Return published table -> its column names, for every view in `PUBLISHED`."""
    catalog, schema = PUBLISHED.split(".")
    rows = con.execute(
        "select table_name, column_name from information_schema.columns "
        "where table_catalog = ? and table_schema = ? and table_name not like '\\_candidate\\_%' escape '\\' "
        "order by table_name, ordinal_position",
        [catalog, schema],
    ).fetchall()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


def fact_name(table: str) -> str:
    """Return the star name of a published table.

    Examples:
        >>> fact_name("gap_table")
        'fact_gap_table'
    """
    return f"fact_{table}"


def order_columns(table: str, columns: list[str]) -> list[str]:
    """Return the columns a table is sorted by: its contract's key, then every other column.

    Sorting on every column makes the row order, and so the Parquet bytes, a function of
    the rows alone.
    """
    contract = published_contracts().get(table)
    key = [c for c in (contract.primary_key if contract else ()) if c in columns]
    return key + [c for c in columns if c not in key]


def _create(con: duckdb.DuckDBPyConnection, contract: Table, select_sql: str) -> None:
    name = contract.name.split(".", 1)[1]
    ddl = ", ".join(f"{q(c.name)} {duckdb_type(c.dtype)}" for c in contract.columns)
    con.execute(f"create or replace table {STAR}.{q(name)} ({ddl})")
    con.execute(f"insert into {STAR}.{q(name)} select * from ({select_sql}) order by 1")


def _has(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_catalog = ? and table_schema = ? and table_name = ?",
        [SOURCE, schema, table],
    ).fetchall()[0][0])


def extract_icbs(con: duckdb.DuckDBPyConnection) -> str:
    """Return SQL for (reporting_month, icb_code): the ICB most of each month's practices belong to.

    Counts practices, not patients: which ICS an extract covers is an organisational fact.
    Empty when the warehouse holds no staged patients or no practice reference table.
    """
    if not (_has(con, "staging", "patients") and _has(con, "reference", "gp_practices")):
        return "select null::date as reporting_month, null::varchar as icb_code where false"
    return f"""
        select reporting_month, arg_max(icb_code, n) as icb_code from (
            select p.reporting_month, g.icb_code, count(distinct p.practice_code) as n
            from {SOURCE}.staging.patients p join {SOURCE}.reference.gp_practices g using (practice_code)
            group by all)
        group by reporting_month"""


def build_dim_month(con: duckdb.DuckDBPyConnection, facts: dict[str, list[str]]) -> None:
    """Create star.dim_month from the months present in the facts."""
    months = " union ".join(f"select {MONTH_COLUMN} from {PUBLISHED}.{q(t)}" for t in facts) or \
        f"select null::date as {MONTH_COLUMN} where false"
    _create(con, DIM_MONTH, f"""
        select (year(m) * 100 + month(m))::integer, m, strftime(m, '%b %Y'), year(m)::integer, month(m)::integer,
               case when month(m) >= 4 then year(m) || '/' || lpad(((year(m) + 1) % 100)::varchar, 2, '0')
                    else (year(m) - 1) || '/' || lpad((year(m) % 100)::varchar, 2, '0') end
        from (select distinct {MONTH_COLUMN} as m from ({months}))""")


def build_dim_indicator(con: duckdb.DuckDBPyConnection, facts: dict[str, list[str]]) -> None:
    """Create star.dim_indicator from the published indicator catalogue (or the facts' ids).

    A dimension column the catalogue does not publish (yet) is left empty rather than
    guessed, so the dimension keeps its contract's layout whatever the catalogue holds.
    """
    catalogue = facts.get("indicator_catalogue", [])
    if {"indicator_id", "indicator_version"} <= set(catalogue):
        def col(name: str) -> str:
            return f"arg_max({q(name)}, {MONTH_COLUMN})" if name in catalogue else "null"
        derived = {"indicator_key": "indicator_id || '@v' || indicator_version", "indicator_id": "indicator_id",
                   "indicator_version": "indicator_version", "first_month": f"min({MONTH_COLUMN})",
                   "last_month": f"max({MONTH_COLUMN})"}
        select = (f"select {', '.join(derived.get(c.name) or col(c.name) for c in DIM_INDICATOR.columns)} "
                  f"from {PUBLISHED}.indicator_catalogue group by indicator_id, indicator_version")
    else:
        ids = " union ".join(f"select distinct indicator_id, indicator_version from {PUBLISHED}.{q(t)}"
                             for t, cols in facts.items() if {"indicator_id", "indicator_version"} <= set(cols))
        known = {"indicator_key": "indicator_id || '@v' || indicator_version", "indicator_id": "indicator_id",
                 "indicator_version": "indicator_version"}
        select = (f"select {', '.join(known.get(c.name, 'null') for c in DIM_INDICATOR.columns)} from ({ids})") if ids else \
            "select " + ", ".join(["null"] * len(DIM_INDICATOR.columns)) + " where false"
    _create(con, DIM_INDICATOR, select)


def group_label(breakdown: str, group: str) -> str:
    """Return a readable label for a breakdown's group (intersections 'A|B' label each part).

    Examples:
        >>> group_label("imd_quintile", "1"), group_label("imd_decile", "10")
        ('IMD quintile 1 (most deprived)', 'IMD decile 10 (least deprived)')
        >>> group_label("core20", "core20"), group_label("sex", "unknown")
        ('Core20 (national IMD deciles 1-2)', 'Unknown / not recorded')
        >>> group_label("cohort:smi", "member"), group_label("imd_quintile|ethnicity_broad", "1|Asian or Asian British")
        ('smi cohort: member', 'IMD quintile 1 (most deprived) & Asian or Asian British')
    """
    if "|" in breakdown and breakdown.count("|") == group.count("|"):
        return " & ".join(group_label(b, g) for b, g in zip(breakdown.split("|"), group.split("|")))
    if group == UNKNOWN:
        return "Unknown / not recorded"
    if breakdown.startswith("cohort:"):
        return f"{breakdown.split(':', 1)[1]} cohort: {group.replace('_', ' ')}"
    if breakdown in ("imd_decile", "imd_quintile"):
        word = breakdown.replace("imd_", "")
        extreme = {"1": " (most deprived)", "10" if word == "decile" else "5": " (least deprived)"}.get(group, "")
        return f"IMD {word} {group}{extreme}"
    fixed = {("core20", "core20"): "Core20 (national IMD deciles 1-2)", ("core20", "rest"): "Rest of the population",
             ("overall", "all"): "Everyone", ("sex", "F"): "Female", ("sex", "M"): "Male", ("sex", "I"): "Indeterminate"}
    if breakdown in GEOGRAPHY_BREAKDOWNS and group == "all":
        return "Whole population (benchmark)"
    return fixed.get((breakdown, group), group)


def build_dim_group(con: duckdb.DuckDBPyConnection, facts: dict[str, list[str]]) -> None:
    """Create star.dim_group from the breakdown/group pairs present in the facts.

    A group is the reference of its breakdown when published rows name it as their
    `reference_group` (or, for facts without that column, when `REFERENCE_GROUPS` says so).
    """
    selects = []
    for t, cols in facts.items():
        if {"breakdown", "group"} <= set(cols):
            is_ref = 'coalesce("group" = reference_group, false)' if "reference_group" in cols else "false"
            selects.append(f'select breakdown, "group", {is_ref} as is_ref from {PUBLISHED}.{q(t)}')
    rows = con.execute(f"select breakdown, \"group\", bool_or(is_ref) from ({' union all '.join(selects)}) "
                       "group by 1, 2 order by 1, 2").fetchall() if selects else []

    def sort_key(row: tuple) -> tuple:
        group = row[1]
        return (row[0], group == UNKNOWN, not group.isdigit(), int(group) if group.isdigit() else 0, group)

    ordered = sorted(rows, key=sort_key)
    frame = pl.DataFrame(
        [(f"{b}:{g}", b, g, group_label(b, g), n, bool(is_ref) or REFERENCE_GROUPS.get(b) == g)
         for n, (b, g, is_ref) in enumerate(ordered)],
        schema=DIM_GROUP.schema, orient="row",
    )
    con.register("_groups", frame.to_arrow())
    try:
        _create(con, DIM_GROUP, "select * from _groups")
    finally:
        con.unregister("_groups")


AREAS = "areas"


def build_dim_geography(con: duckdb.DuckDBPyConnection) -> None:
    """Create star.dim_geography: every practice in ODS epraccur, with Sub-ICB, ICB and their names.

    A national release (published `areas`, see pipelines/national) adds its areas: the ICBs
    of the run with their regions, the NHS England regions and England. An area already
    listed from the practice reference (an ICB) is not listed twice.
    """
    parts = []
    if _has(con, "reference", "gp_practices"):
        names = (f"select distinct sicbl24_code_nhs as sub_icb_code, sicbl24_name as sub_icb_name, icb24_code_nhs as icb_code, "
                 f"icb24_name as icb_name from {SOURCE}.reference.lsoa21_geography") if _has(con, "reference", "lsoa21_geography") else \
            "select null::varchar as sub_icb_code, null::varchar as sub_icb_name, null::varchar as icb_code, null::varchar as icb_name where false"
        parts.append(f"""
            with names as ({names}),
            sub_icb as (select distinct sub_icb_code, sub_icb_name from names),
            icb as (select distinct icb_code, icb_name from names),
            practices as (
                select p.practice_code, p.practice_name, p.sicbl_code, s.sub_icb_name, p.icb_code, i.icb_name,
                       p.region_code, p.is_active
                from {SOURCE}.reference.gp_practices p
                left join sub_icb s on s.sub_icb_code = p.sicbl_code left join icb i on i.icb_code = p.icb_code)
            select 'practice:' || practice_code as geography_key, 'practice', practice_code, practice_name, practice_code, sicbl_code,
                   sub_icb_name, icb_code, icb_name, region_code, is_active from practices
            union all
            select 'sub_icb:' || sicbl_code, 'sub_icb', sicbl_code, any_value(sub_icb_name), null, sicbl_code,
                   any_value(sub_icb_name), any_value(icb_code), any_value(icb_name), any_value(region_code), null
            from practices where sicbl_code is not null group by sicbl_code
            union all
            select 'icb:' || icb_code, 'icb', icb_code, any_value(icb_name), null, null, null, icb_code,
                   any_value(icb_name), any_value(region_code), null
            from practices where icb_code is not null group by icb_code""")
    if AREAS in source_tables(con):
        parts.append(f"""
            select geography_level || ':' || geography_code as geography_key, geography_level, geography_code, geography_name, null, null,
                   null, icb_code, icb_name, region_code, null
            from {PUBLISHED}.{AREAS}""")
    if not parts:
        _create(con, DIM_GEOGRAPHY, "select " + ", ".join(["null"] * len(DIM_GEOGRAPHY.columns)) + " where false")
        return
    rows = parts[0]
    for part in parts[1:]:
        rows = (f"select * from ({rows}) union all "
                f"select * from ({part}) where geography_key not in (select geography_key from ({rows}))")
    _create(con, DIM_GEOGRAPHY, rows)


def _geography_key(columns: list[str]) -> str:
    """Return SQL for a fact row's geography key.

    A national release's row (`geography_level`, `geography_code`) gives the area it
    describes - ICB, region or England - whatever its breakdown: a practice group of a
    region's row stays a group of that region. Otherwise an organisation column or
    breakdown gives that organisation; 'ALL'/'all' (the whole extract, or the benchmark
    row) gives the ICS; 'unknown' gives null (no organisation).
    """
    if {"geography_level", "geography_code"} <= set(columns):
        return "t.geography_level || ':' || t.geography_code"
    ics = "'icb:' || ics.icb_code"

    def organisation(value: str, level: str) -> str:
        return (f"case when {value} is null or {value} = '{UNKNOWN}' then null "
                f"when upper({value}) = 'ALL' then {ics} else '{level}:' || {value} end")

    for column, level in GEOGRAPHY_LEVELS.items():
        if column in columns:
            return organisation(f"t.{q(column)}", level)
    if {"breakdown", "group"} <= set(columns):
        group = 't."group"'
        cases = " ".join(f"when '{b}' then {organisation(group, lvl)}" for b, lvl in GEOGRAPHY_BREAKDOWNS.items())
        return f"case t.breakdown {cases} else {ics} end"
    return ics


def fact_keys(columns: list[str]) -> list[str]:
    """Return the STAR_KEYS a fact with these published columns can fill (the others stay null).

    The month and the geography (ICS-wide at least) are always known; an indicator key needs
    `indicator_id`, a group key `breakdown` and `group` (as build_fact derives them).

    Examples:
        >>> fact_keys(["reporting_month", "indicator_id", "score"])
        ['month_key', 'indicator_key', 'geography_key']
    """
    fills = {"month_key": True, "indicator_key": "indicator_id" in columns,
             "group_key": {"breakdown", "group"} <= set(columns), "geography_key": True}
    return [c.name for c in STAR_KEYS.columns if fills[c.name]]


def build_fact(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> None:
    """Create star.fact_<table>: the STAR_KEYS then the published table's columns, sorted."""
    has_indicator = "indicator_id" in columns
    if has_indicator and "indicator_version" in columns:
        indicator = "t.indicator_id || '@v' || t.indicator_version"
        join_catalogue = ""
    elif has_indicator and "indicator_catalogue" in source_tables(con):
        indicator = "t.indicator_id || '@v' || c.indicator_version"
        join_catalogue = (f"left join {PUBLISHED}.indicator_catalogue c "
                          f"on c.{MONTH_COLUMN} = t.{MONTH_COLUMN} and c.indicator_id = t.indicator_id")
    else:
        indicator, join_catalogue = "null", ""
    group = "t.breakdown || ':' || t.\"group\"" if {"breakdown", "group"} <= set(columns) else "null"
    keys = [c.name for c in STAR_KEYS.columns]
    order = ", ".join(f"t.{q(c)}" for c in order_columns(table, columns))
    catalog, schema = PUBLISHED.split(".")
    types = dict(con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_catalog = ? and table_schema = ? and table_name = ?", [catalog, schema, table]).fetchall())
    values = ", ".join(f"{_scalar_select(c, types.get(c, ''))} as {q(c)}" for c in columns)
    con.execute(f"""
        create or replace table {STAR}.{q(fact_name(table))} as
        select (year(t.{MONTH_COLUMN}) * 100 + month(t.{MONTH_COLUMN}))::integer as {keys[0]},
               ({indicator})::varchar as {keys[1]}, ({group})::varchar as {keys[2]},
               ({_geography_key(columns)})::varchar as {keys[3]},
               {values}
        from {PUBLISHED}.{q(table)} t
        left join ({extract_icbs(con)}) ics on ics.{MONTH_COLUMN} = t.{MONTH_COLUMN}
        {join_catalogue}
        order by {order}""")


def build_star(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create every dimension and fact in schema `star`; return the star table names in build order."""
    con.execute(f"create schema if not exists {STAR}")
    tables = source_tables(con)
    facts = {t: cols for t, cols in tables.items() if MONTH_COLUMN in cols}
    build_dim_month(con, facts)
    build_dim_indicator(con, facts)
    build_dim_group(con, facts)
    build_dim_geography(con)
    for table, columns in facts.items():
        build_fact(con, table, columns)
    return [c.name.split(".", 1)[1] for c in (DIM_MONTH, DIM_INDICATOR, DIM_GROUP, DIM_GEOGRAPHY)] + \
        [fact_name(t) for t in facts]


UNDECLARED = "(no contract declared in pipelines/segmentation/schemas.py)"


def declared_star_tables() -> dict[str, list[tuple[str, str]]]:
    """Return star table -> [(column, DuckDB type)] as the contracts declare them.

    Facts are listed for the published contracts that have a `reporting_month`; a
    published table without a contract still reaches the star, but only the serving
    snapshot's dictionary (read from the database) can list its columns.
    """
    tables = {c.name.split(".", 1)[1]: [(col.name, duckdb_type(col.dtype)) for col in c.columns]
              for c in (DIM_MONTH, DIM_INDICATOR, DIM_GROUP, DIM_GEOGRAPHY)}
    keys = [(col.name, duckdb_type(col.dtype)) for col in STAR_KEYS.columns]
    for table, contract in sorted(published_contracts().items()):
        if MONTH_COLUMN in contract.names:
            tables[fact_name(table)] = keys + [(col.name, star_type(col.dtype)) for col in contract.columns]
    return tables


def dictionary_rows(tables: dict[str, list[tuple[str, str]]]) -> pl.DataFrame:
    """Return one row per star table column: table, column, type, description, table description.

    Descriptions come from the contracts: the dimension's own, STAR_KEYS for the keys, the
    published table's for a fact's other columns.
    """
    contracts = {c.name.split(".", 1)[1]: c for c in (DIM_MONTH, DIM_INDICATOR, DIM_GROUP, DIM_GEOGRAPHY)}
    for table, contract in published_contracts().items():
        contracts[fact_name(table)] = contract
    keys = {c.name: c for c in STAR_KEYS.columns}
    areas = {c.name: c for c in AREA_COLUMNS}
    rows = []
    for table, columns in tables.items():
        contract = contracts.get(table)
        described = {c.name: c for c in contract.columns} if contract else {}
        about = contract.description if contract else UNDECLARED
        if table.startswith("fact_"):
            about = f"Fact from published.{table[5:]}. {about}"
        for name, dtype in columns:
            column = described.get(name) or (keys.get(name) or areas.get(name) if table.startswith("fact_") else None)
            rows.append({"table": table, "column": name, "type": dtype,
                         "description": column.description if column else UNDECLARED, "table_description": about})
    return pl.DataFrame(rows, schema={"table": pl.String, "column": pl.String, "type": pl.String,
                                      "description": pl.String, "table_description": pl.String})


def dictionary_markdown(rows: pl.DataFrame) -> str:
    """Return the data dictionary as Markdown: a section per table, a row per column."""
    lines = [
        "# core20plus5 serving data dictionary",
        "",
        "Generated from the table contracts in `pipelines/segmentation/schemas.py` "
        "(`core20 dictionary` writes it; every serving snapshot carries its own copy and a "
        "`meta.data_dictionary` table). Facts join dimensions on the `*_key` columns.",
    ]
    for table in rows["table"].unique(maintain_order=True).to_list():
        part = rows.filter(pl.col("table") == table)
        lines += ["", f"## {table}", "", part["table_description"][0], "", "| column | type | description |",
                  "|---|---|---|"]
        lines += [f"| `{r['column']}` | {r['type']} | {r['description'].replace('|', '/')} |" for r in part.iter_rows(named=True)]
    return "\n".join(lines) + "\n"
