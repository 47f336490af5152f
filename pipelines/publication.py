"""Write-audit-publish: a month's published tables change together, and only after every gate passed.

Each published table is first built as a candidate in the `audit` schema, by an asset
keyed `["audit", name]` that carries a blocking asset check (its gate). The single publish
step (`assets/publish.py`) depends on all of them; Dagster skips it when any gate upstream
blocks, and it also refuses by itself unless every registered candidate passed a blocking
gate in the same run. It then copies the month's rows of every candidate into
`published.<name>` inside ONE DuckDB transaction: a blocked or failed run leaves every
published table exactly as it was, and a good run changes all of them at once.

Adding a published table is one line in `PUBLISHED_TABLES` below, given an asset
`["audit", "<name>"]` with `metadata={"partition_expr": "reporting_month"}` (MONTH_META),
a `reporting_month` column, and at least one blocking check, e.g.::

    PublishedTable("definition_attrition"),

`tests/unit/test_publication.py` fails when a registered candidate has no blocking gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterable

from pipelines.segmentation.schemas import DATA_QUALITY, PUBLISHED_DATA_QUALITY

AUDIT, PUBLISHED = "audit", "published"


@dataclass(frozen=True)
class PublishedTable:
    """One published table of a month.

    Attributes:
        name: the table name in both `audit` (candidate) and `published`.
        partition_column: the month column; None would replace the whole table.
        audit_asset: whether `audit.<name>` is built by an asset with its own gate. The data-quality
            history is not: the gates themselves write it, for blocked months too.
        exclude: candidate columns kept out of the published table (e.g. which run wrote a row,
            so that re-running a month publishes identical rows).
        controlled: the candidate holds exact counts (the gates' own history) and is published
            through `candidate_frame`, with the month's disclosure profile on every count.
    """

    name: str
    partition_column: str | None = "reporting_month"
    audit_asset: bool = True
    exclude: tuple[str, ...] = ()
    controlled: bool = False


PUBLISHED_TABLES: tuple[PublishedTable, ...] = (
    PublishedTable("gap_table"),
    PublishedTable("indicator_catalogue"),
    PublishedTable("inequality_table"),
    PublishedTable("spc_series"),
    PublishedTable("deprivation_quality"),
    PublishedTable("age_standardised_rates"),
    PublishedTable("data_quality", audit_asset=False, controlled=True,
                   exclude=tuple(c for c in DATA_QUALITY.names if c not in PUBLISHED_DATA_QUALITY.names)),
)


def audit_key(table: PublishedTable):
    """Return the asset key of a table's candidate, e.g. audit/gap_table."""
    import dagster as dg

    return dg.AssetKey([AUDIT, table.name])


def published_key(table: PublishedTable):
    """Return the asset key of a published table, e.g. published/gap_table."""
    import dagster as dg

    return dg.AssetKey([PUBLISHED, table.name])


def ungated(check_evaluations: Iterable, tables: Iterable[PublishedTable] = PUBLISHED_TABLES) -> list[str]:
    """Return why the month may not be published, from the run's asset-check evaluations (empty: it may).

    A registered candidate must have passed at least one blocking check in this run, and no
    blocking check of the run may have failed.

    Arguments:
        check_evaluations: the run's `AssetCheckEvaluation`s.
        tables: the registry.
    """
    evaluations = list(check_evaluations)
    reasons = [
        f"gate {e.asset_key.to_user_string()}:{e.check_name} failed"
        for e in evaluations
        if e.blocking and not e.passed and str(getattr(e.severity, "value", e.severity)) == "ERROR"
    ]
    passed = {e.asset_key for e in evaluations if e.blocking and e.passed}
    for table in tables:
        if table.audit_asset and audit_key(table) not in passed:
            reasons.append(
                f"{audit_key(table).to_user_string()} has no passing blocking gate in this run (materialise it, "
                "with its checks, in the same run as the publish step)"
            )
    return reasons


def month_profile(con, reporting_month: date, catalog: str | None = None) -> str:
    """Return the disclosure profile the month's candidate gap table was built with."""
    from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5

    prefix = f"{catalog}." if catalog else ""
    exists = con.execute("select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
                         + (" and table_catalog = ?" if catalog else ""),
                         [AUDIT, "gap_table", *([catalog] if catalog else [])]).fetchall()[0][0]
    if exists:
        found = con.execute(f"select any_value(disclosure_profile) from {prefix}{AUDIT}.gap_table where reporting_month = ?",
                            [reporting_month]).fetchall()
        if found and found[0][0]:
            return found[0][0]
    return NHS_SUPPRESS_ROUND5.name


def candidate_frame(con, table: PublishedTable, reporting_month: date, catalog: str | None = None):
    """Return the month's rows of a table exactly as they would be published (a polars frame).

    `catalog`: the name the warehouse is attached under, when `con` is another database's.
    """
    import polars as pl

    from pipelines.quality import controlled_rows
    from pipelines.warehouse import quote

    prefix = f"{catalog}." if catalog else ""
    rows = pl.from_arrow(con.sql(f"select * from {prefix}{quote(AUDIT)}.{quote(table.name)} where reporting_month = ?",
                                 params=[reporting_month]).to_arrow_table())
    if table.controlled:
        rows = controlled_rows(rows, month_profile(con, reporting_month, catalog))
    return rows.drop([c for c in table.exclude if c in rows.columns])


PUBLICATIONS = (AUDIT, "publications")


def publish(warehouse, reporting_month: date, tables: Iterable[PublishedTable] = PUBLISHED_TABLES,
            token: str | None = None) -> dict[str, int]:
    """Copy the month's candidate rows of every table into `published`, in one transaction.

    Arguments:
        warehouse: the `Warehouse` resource (or its file).
        reporting_month: the month.
        tables: the registry.
        token: the publication journal's token (`pipelines/publish_journal.py`), recorded in
            `audit.publications` in the same transaction, so that after a crash the journal
            can tell whether the commit happened.

    Returns:
        published table -> rows published for the month.
    """
    from pipelines.warehouse import as_warehouse, copy_partitions, table_exists

    tables = list(tables)
    with as_warehouse(warehouse).connect() as con:
        missing = [t.name for t in tables if not table_exists(con, AUDIT, t.name)]
        if missing:
            raise ValueError(f"nothing published: the candidate table(s) {[f'{AUDIT}.{m}' for m in missing]} do not exist")
        sources = {}
        for t in tables:
            if t.controlled:
                # The controlled rows are made here, in the publishing connection, as a temporary
                # table the one transaction below copies from.
                frame = candidate_frame(con, t, reporting_month)
                con.register("_controlled", frame.to_arrow())
                con.execute(f"create or replace temp table _controlled_{t.name} as select * from _controlled")
                con.unregister("_controlled")
                sources[t.name] = ("temp", f"_controlled_{t.name}")
            else:
                sources[t.name] = (AUDIT, t.name)
        from pipelines.releases import record_release

        return copy_partitions(
            con, [(sources[t.name], (PUBLISHED, t.name), t.partition_column) for t in tables], reporting_month,
            exclude={f"{PUBLISHED}.{t.name}": t.exclude for t in tables if t.exclude and not t.controlled},
            # What this release showed and hid, privately, for the next release of the month to link to.
            then=lambda c: (record_release(c, reporting_month), token and record_publication(c, token, reporting_month)),
        )


def record_publication(con, token: str, reporting_month: date) -> None:
    """Record that the publication `token` committed (inside the publish transaction)."""
    schema, table = PUBLICATIONS
    con.execute(f"create table if not exists {schema}.{table} (token VARCHAR, reporting_month DATE, committed_at TIMESTAMP)")
    con.execute(f"insert into {schema}.{table} values (?, ?, current_timestamp::timestamp)", [token, reporting_month])


def publication_committed(con, token: str) -> bool:
    """Return whether the publication `token` committed in this warehouse."""
    from pipelines.warehouse import table_exists

    schema, table = PUBLICATIONS
    return table_exists(con, schema, table) and bool(
        con.execute(f"select count(*) from {schema}.{table} where token = ?", [token]).fetchall()[0][0])


VIEWS = "pub"


def published_views(con, catalog: str, candidate_month: date | None = None, *, schema: str = PUBLISHED) -> list[str]:
    """Create schema `pub` (in `con`'s own catalog) with a view per published table; return their names.

    Arguments:
        con: a connection with the warehouse attached (read-only) as `catalog`.
        catalog: the warehouse's name in `con`.
        candidate_month: None: the views show `published` as it is. A month: they show what
            `published` will be once that month's candidates are published (every other month
            from `published`, this month from the gated `audit` candidates, with the same
            excluded columns and controlled rows as `publish` writes), so the report, the serving
            snapshot and the run summary can be built, and audited, before anything is published.
        schema: the warehouse schema holding the published tables (`national` for the
            national release, pipelines/national/rollup.py; it has no candidates).
    """
    from pipelines.warehouse import quote

    # The attached warehouse is read-only here: its tables are listed once, not looked up one by one.
    present = {(r[0], r[1]) for r in con.execute("select table_schema, table_name from information_schema.tables "
                                                 "where table_catalog = ?", [catalog]).fetchall()}

    def exists(in_schema: str, table: str) -> bool:
        return (in_schema, table) in present

    con.execute(f"create schema if not exists {VIEWS}")
    names = []
    published = sorted(table for in_schema, table in present if in_schema == schema)
    registry = {t.name: t for t in PUBLISHED_TABLES}
    for name in sorted(set(published) | (set(registry) if candidate_month else set())):
        source = f"{catalog}.{schema}.{quote(name)}"
        table = registry.get(name)
        if candidate_month is None or table is None or not exists(AUDIT, name):
            if exists(schema, name):
                con.execute(f"create or replace view {VIEWS}.{quote(name)} as select * from {source}")
                names.append(name)
            continue
        frame = candidate_frame(con, table, candidate_month, catalog)
        con.register(f"_candidate_{name}", frame.to_arrow())
        con.execute(f"create or replace table {VIEWS}.{quote('_candidate_' + name)} as select * from {quote('_candidate_' + name)}")
        con.unregister(f"_candidate_{name}")
        candidate = f"{VIEWS}.{quote('_candidate_' + name)}"
        if exists(PUBLISHED, name):
            body = (f"select * from {source} where {quote(table.partition_column)} <> DATE '{candidate_month.isoformat()}' "
                    f"union all by name select * from {candidate}")
        else:
            body = f"select * from {candidate}"
        con.execute(f"create or replace view {VIEWS}.{quote(name)} as {body}")
        names.append(name)
    return names
