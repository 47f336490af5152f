"""DuckDB warehouse: partition-scoped, transactional writes of polars frames.

The asset key doubles as the table name: `["staging", "patients"]` is `staging.patients`.
A monthly-partitioned asset carries `partition_expr` metadata naming its month column, and
a write replaces exactly that month's rows inside one transaction, so re-running a month
is idempotent and a failure leaves the table as it was.

Written here rather than taken from dagster-duckdb-polars because that package (0.29)
fails to load inputs with duckdb 2.0, and because the write must be one transaction that
also evolves the table when a contract gains a column.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Optional

import dagster as dg
import duckdb
import polars as pl

PARTITION_EXPR = "partition_expr"
# Definition metadata naming the pinned reference files an asset was built from; the IO
# manager records it in `reference._build_log` so a later run can tell a stale table.
REFERENCE_PIN = "reference_pin"
BUILD_LOG = ("reference", "_build_log")


def quote(identifier: str) -> str:
    """Return `identifier` quoted for DuckDB SQL."""
    return '"' + identifier.replace('"', '""') + '"'


def table_name(asset_key: dg.AssetKey) -> tuple[str, str]:
    """Return (schema, table) for an asset key: the prefix is the schema."""
    path = asset_key.path
    return (path[0], path[-1]) if len(path) > 1 else ("main", path[0])


@contextmanager
def connect(path: str | Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a DuckDB connection to the warehouse file, closed on exit."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    # Waits (saying so) while another process holds the file, e.g. an analyst's read-only session.
    from pipelines.runlock import open_duckdb

    con = open_duckdb(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Return whether schema.table exists."""
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
    )


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()


def _align_layout(con: duckdb.DuckDBPyConnection, schema: str, table: str, incoming: str) -> None:
    """Rebuild schema.table in the layout of the relation `incoming` when the two differ.

    The contract changed: the other months' rows keep the columns both layouts share (new
    columns are null for them). Runs inside the caller's transaction.
    """
    target = f"{quote(schema)}.{quote(table)}"
    new = [(row[0], row[1]) for row in con.execute(f"describe select * from {incoming}").fetchall()]
    existing = _columns(con, schema, table)
    if new == existing:
        return
    rebuild = f"{quote(schema)}.{quote('_rebuild_' + table)}"
    common = ", ".join(quote(name) for name, _ in new if name in dict(existing))
    con.execute(f"create table {rebuild} as select * from {incoming} limit 0")
    con.execute(f"insert into {rebuild} ({common}) select {common} from {target}")
    con.execute(f"drop table {target}")
    con.execute(f"alter table {rebuild} rename to {quote(table)}")


def _where(match: dict[str, Any]) -> tuple[str, list[Any]]:
    return " and ".join(f"{quote(column)} = ?" for column in match), list(match.values())


def write_frame(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    frame: pl.DataFrame,
    *,
    partition_column: str | None = None,
    partition_value: date | None = None,
    replace_where: dict[str, Any] | None = None,
) -> None:
    """Replace a table, or the rows matching a key (one month's partition), with `frame` in one transaction.

    Arguments:
        con: an open read-write connection.
        schema: target schema (created if absent).
        table: target table.
        frame: rows to write; for a partition write every row must carry the key's values.
        partition_column: the month column; None (and no `replace_where`) replaces the whole table.
        partition_value: the month being replaced.
        replace_where: column -> value of the rows being replaced, when the key is wider than a month.
    """
    target = f"{quote(schema)}.{quote(table)}"
    match = dict(replace_where or {})
    if partition_column is not None:
        match[partition_column] = partition_value
    arrow = frame.to_arrow()
    con.register("_incoming", arrow)
    try:
        con.execute("begin transaction")
        con.execute(f"create schema if not exists {quote(schema)}")
        exists = table_exists(con, schema, table)
        if exists and match:
            _align_layout(con, schema, table, "_incoming")
            condition, values = _where(match)
            con.execute(f"delete from {target} where {condition}", values)
            con.execute(f"insert into {target} by name select * from _incoming")
        else:
            con.execute(f"create or replace table {target} as select * from _incoming")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("_incoming")


def copy_partitions(
    con: duckdb.DuckDBPyConnection,
    copies: list[tuple[tuple[str, str], tuple[str, str], str | None]],
    partition_value: date,
    *,
    exclude: dict[str, tuple[str, ...]] | None = None,
    then=None,
) -> dict[str, int]:
    """Copy one month of several tables into others, all in ONE transaction; return rows copied per target.

    Each copy is ((source schema, table), (target schema, table), month column or None).
    A month column replaces that month's rows in the target; None replaces the whole
    target table. `exclude` names, per target 'schema.table', source columns not copied.
    `then(con)`, when given, runs last inside the same transaction (e.g. a private record
    that must change with the copies). Either every target changes or (on any error) none does.
    """
    copied: dict[str, int] = {}
    month = f"DATE '{partition_value.isoformat()}'"  # a date's ISO form is safe to inline in SQL
    con.execute("begin transaction")
    try:
        for (source_schema, source_table), (schema, table), partition_column in copies:
            target = f"{quote(schema)}.{quote(table)}"
            where = f" where {quote(partition_column)} = {month}" if partition_column else ""
            dropped = (exclude or {}).get(f"{schema}.{table}", ())
            columns = f"* exclude ({', '.join(quote(c) for c in dropped)})" if dropped else "*"
            con.execute(f"create or replace temp view _publishing as "
                        f"select {columns} from {quote(source_schema)}.{quote(source_table)}{where}")
            con.execute(f"create schema if not exists {quote(schema)}")
            if partition_column and table_exists(con, schema, table):
                _align_layout(con, schema, table, "_publishing")
                con.execute(f"delete from {target}{where}")
                con.execute(f"insert into {target} by name select * from _publishing")
            else:
                con.execute(f"create or replace table {target} as select * from _publishing")
            copied[f"{schema}.{table}"] = int(con.execute("select count(*) from _publishing").fetchall()[0][0])
            con.execute("drop view _publishing")
        if then is not None:
            then(con)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return copied


def table_fingerprint(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> str:
    """Return a sha256 of a table's column names, types and rows (order-independent).

    Two tables with the same fingerprint hold the same rows byte for byte, whatever order
    DuckDB stores them in: used to prove a blocked run left the published tables as they were.
    """
    import hashlib

    frame = read_table(con, schema, table)
    # CSV cannot hold nested values (e.g. a list of unavailable components): write those as JSON.
    frame = frame.with_columns(
        pl.struct(name).struct.json_encode().alias(name) for name, dtype in frame.schema.items() if dtype.is_nested()
    )
    digest = hashlib.sha256(repr(_columns(con, schema, table)).encode())
    if frame.height:
        digest.update(frame.sort(frame.columns, nulls_last=True).write_csv().encode())
    return digest.hexdigest()


def schema_fingerprint(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, str]:
    """Return table -> fingerprint for every table in a schema (empty when the schema does not exist)."""
    tables = [row[0] for row in con.execute(
        "select table_name from information_schema.tables where table_schema = ? order by table_name", [schema]
    ).fetchall()]
    return {table: table_fingerprint(con, schema, table) for table in tables}


def read_table(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    *,
    partition_column: str | None = None,
    partition_value: date | None = None,
) -> pl.DataFrame:
    """Return a table, or one partition of it, as a polars frame."""
    target = f"{quote(schema)}.{quote(table)}"
    if partition_column is None:
        relation = con.sql(f"select * from {target}")
    else:
        relation = con.sql(f"select * from {target} where {quote(partition_column)} = $1", params=[partition_value])
    # duckdb 2.0 results have no .pl(); a relation's Arrow table is the copy-free route into polars.
    return pl.from_arrow(relation.to_arrow_table())


def record_build(con: duckdb.DuckDBPyConnection, table: str, pin: str) -> None:
    """Record that `table` was built from the reference files whose pins hash to `pin`."""
    log = f"{quote(BUILD_LOG[0])}.{quote(BUILD_LOG[1])}"
    con.execute(f"create schema if not exists {quote(BUILD_LOG[0])}")
    con.execute(f"create table if not exists {log} (table_name varchar primary key, pin varchar, built_at timestamp)")
    con.execute(f"insert or replace into {log} values (?, ?, now())", [table, pin])


def built_pins(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Return table -> pin for every reference table recorded in the build log."""
    if not table_exists(con, *BUILD_LOG):
        return {}
    return dict(con.execute(f"select table_name, pin from {quote(BUILD_LOG[0])}.{quote(BUILD_LOG[1])}").fetchall())


def partition_month(context: dg.OutputContext | dg.InputContext) -> date | None:
    """Return the month of the partition being written or read, if the asset is partitioned."""
    if not context.has_asset_partitions:
        return None
    return date.fromisoformat(context.asset_partition_key[:10])


class DuckDBPolarsIOManager(dg.ConfigurableIOManager):
    """Store polars frames as DuckDB tables, replacing exactly one month per partitioned write."""

    database: Optional[str] = None

    def path(self) -> Path:
        """Return the warehouse file (resolved when a run starts, never at import time)."""
        from pipelines.resources import resolve_warehouse_path

        return resolve_warehouse_path(self.database)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # One writer per warehouse, and a lock that outlives this process only as long as it lives
        # (pipelines/runlock.py): a second run queues, a killed run is recognised as orphaned.
        from pipelines import runlock

        runlock.start_run(context, self.path())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        from pipelines import runlock

        runlock.end_run(context, self.path())

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        schema, table = table_name(context.asset_key)
        month = partition_month(context)
        partition_column = (context.definition_metadata or {}).get(PARTITION_EXPR) if month else None
        if month is not None and partition_column is None:
            raise dg.DagsterInvariantViolationError(
                f"partitioned asset {context.asset_key.to_user_string()} needs '{PARTITION_EXPR}' metadata"
            )
        pin = (context.definition_metadata or {}).get(REFERENCE_PIN)
        with connect(self.path()) as con:
            write_frame(con, schema, table, obj, partition_column=partition_column, partition_value=month)
            if pin:
                record_build(con, f"{schema}.{table}", str(pin))
        context.add_output_metadata({"table": f"{schema}.{table}", "n_rows": obj.height})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        upstream = context.upstream_output
        schema, table = table_name(context.asset_key)
        month = partition_month(context)
        partition_column = (upstream.definition_metadata or {}).get(PARTITION_EXPR) if month else None
        with connect(self.path()) as con:
            if not table_exists(con, schema, table):
                raise dg.DagsterInvariantViolationError(
                    f"table {schema}.{table} is not in the warehouse {self.path()}; materialise "
                    f"{context.asset_key.to_user_string()} first"
                )
            return read_table(con, schema, table, partition_column=partition_column, partition_value=month)
