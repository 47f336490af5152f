"""The one door to the DuckDB warehouse: connections, locking, transactional writes, publish.

Every part of the pipeline that touches the warehouse file goes through this module (STYLE
habit 11): assets (through the `Warehouse` resource and the IO manager below, which only
delegates to it), the data-quality gates' history, lineage, publishing and the analysts'
commands. So the rules live here once:

- **Locking.** DuckDB lets one process write a file and blocks every other process while
  it holds it, even a read-only one. `connect` waits for the lock (polling up to
  `CORE20_WAREHOUSE_LOCK_SECONDS`, else the run wait of pipelines/runlock.py) instead of failing
  at once, saying so, and then fails with a message naming the file and what to do. Within a run, steps run one after
  another in one process (the in-process executor), one connection at a time.
- **Transactions.** A write replaces a table, or exactly one month (one key) of it, inside
  ONE transaction — frames (`write_frame`) and SQL results computed where the data is
  (`write_query`) alike — and evolves the table's layout when a contract gains a column.
  Publishing copies every candidate of a month in one transaction (`copy_partitions`).
- **Recovery.** A failed write rolls back, so the table is as it was; a process killed
  mid-write leaves DuckDB's write-ahead log, which DuckDB replays on the next open, and a
  half-made `_rebuild_` table of an interrupted layout change is inside the rolled-back
  transaction. Re-running the month then replaces it whole.
- **Memory.** Each connection gets `memory_limit` (`CORE20_DUCKDB_MEMORY`, default 1.25GB)
  so a month's big aggregations spill to disk instead of growing the process, and the big
  staging and patient-model writes drop insertion order (`unordered`), which lets DuckDB
  stream them. Published tables keep their order: their bytes must repeat on a re-run.

The asset key doubles as the table name: `["staging", "patients"]` is `staging.patients`.
A monthly-partitioned asset carries `partition_expr` metadata naming its month column.
Written here rather than taken from dagster-duckdb-polars because that package (0.29)
fails to load inputs with duckdb 2.0, and because the write must be one transaction that
also evolves the table when a contract gains a column.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Optional

import dagster as dg
import duckdb
import polars as pl

from pipelines import settings_file

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


LOCK_ENV = "CORE20_WAREHOUSE_LOCK_SECONDS"
MEMORY_ENV = "CORE20_DUCKDB_MEMORY"
DEFAULT_MEMORY = "1.25GB"


def _is_lock_conflict(error: Exception) -> bool:
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set lock" in text)


def default_wait() -> float:
    """Return how long `connect` waits for another process's hold: $CORE20_WAREHOUSE_LOCK_SECONDS, else the run wait.

    The run wait is runlock's ($CORE20_RUN_WAIT_SECONDS, default one hour): an analyst's
    read-only session on the warehouse delays a run instead of failing it.
    """
    from pipelines import runlock

    return runlock.wait_seconds(os.environ.get(LOCK_ENV) or None)


def _open(path: Path, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    """Open the file, polling (with one message) while another process holds it; raise WarehouseBusy past the wait."""
    return _waiting(path, wait_seconds, lambda: duckdb.connect(str(path), read_only=read_only))


def _waiting(path: Path, wait_seconds: float, opening):
    """Return `opening()` (a connect or an attach of the file), retried while another process holds the file."""
    from pipelines import runlock

    deadline = time.monotonic() + wait_seconds
    delay, told = 0.05, False
    while True:
        try:
            return opening()
        except duckdb.IOException as error:
            if not _is_lock_conflict(error):
                raise
            holder = runlock._pid_in(error)
            if time.monotonic() >= deadline:
                raise runlock.WarehouseBusy(
                    f"the warehouse {path} is held open by {holder} (a DuckDB session, a BI tool, the Dagster UI or a "
                    f"`core20` command) and stayed held for {wait_seconds:.0f} s; DuckDB lets no process write a file "
                    "another holds, even read-only. Close that session - people and Power BI should open the serving "
                    f"snapshot (serving/current/core20plus5.duckdb), never the warehouse - and run again (or raise {LOCK_ENV})."
                ) from None
            if not told:
                runlock._stderr(
                    f"waiting for {holder} to close the warehouse {path} (DuckDB lets no process write a file "
                    f"another holds open, even read-only); waiting up to {wait_seconds:.0f} s. Analysts should open "
                    "serving/current/core20plus5.duckdb instead.")
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def connect(path: str | Path, *, read_only: bool = False, memory_limit: str | None = None,
            wait_seconds: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a DuckDB connection to the warehouse file, closed on exit.

    Arguments:
        path: the warehouse file.
        read_only: open without writing (still exclusive of a writer in another process).
        memory_limit: DuckDB's memory limit for this connection (default $CORE20_DUCKDB_MEMORY or 1.25GB).
        wait_seconds: how long to wait for another process's hold (default $CORE20_WAREHOUSE_LOCK_SECONDS, else the run wait).
    """
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist: run `core20 run` first (or pass --warehouse).")
    wait = default_wait() if wait_seconds is None else wait_seconds
    anchor = _held_database(path, wait)
    con = anchor.cursor() if anchor is not None else _open(path, read_only, wait)
    limit = memory_limit or os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY
    held = path.resolve() if anchor is not None else None
    if held:
        _OPEN_CURSORS[held] = _OPEN_CURSORS.get(held, 0) + 1
    try:
        con.execute(f"set memory_limit = '{limit}'")
        yield con
    finally:
        if held:
            _OPEN_CURSORS[held] -= 1
            if not _OPEN_CURSORS[held]:
                _drop_cached_blocks(con, limit)  # the last cursor of the step: no other query or temp table of ours is open
        con.close()


def _drop_cached_blocks(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """Let the held database give back the file's blocks it keeps cached, up to its memory limit, once a step is done with it.

    DuckDB keeps the blocks it has read or written cached up to `memory_limit`, and a held
    database (`hold`) outlives the step that read them: the next step's Python work (the
    patients' deprivation in polars, the feeds, a gate's frame) then sat on top of 0.8-1.2 GB
    the warehouse no longer needed, and that sum was the month's peak (in staging at 1M, in
    the deprivation step at 5M). Lowering the limit makes DuckDB evict them (64 ms for 0.8 GB);
    the limit is then set back. A block needed again is read again from the file. Nothing is
    evicted that a query holds: if DuckDB cannot get under the low limit it says so, and the
    cache stays.
    """
    try:
        try:
            con.execute("set memory_limit = '64MB'")
        finally:
            con.execute(f"set memory_limit = '{limit}'")
    except duckdb.Error:
        pass  # the cache stays; the connection closes next either way


# --- a run's hold on its warehouse ------------------------------------------------------------
# Opening the file costs DuckDB a new database instance (about 15-20 ms of CPU: its catalog of
# built-in functions is made again) and closing the last connection checkpoints the
# write-ahead log (a write and an fsync). A month opens the warehouse about 60 times (every
# step, gate record and IO-manager write); holding one connection for the run turns each of
# those into a cursor on the open database (under 1 ms). The run holds the writer lock
# (pipelines/runlock.py) for its whole length anyway, so no other writer could have used the
# gaps; a reader that opens the file during the run waits for its end (`connect` says whom it
# waits for) instead of slipping in between two steps and delaying the run. Within the run a
# read-only `connect` is a cursor on the same read-write database.
_HELD: dict[Path, duckdb.DuckDBPyConnection | None] = {}
# Cursors open on each held database (a `connect` inside another's block makes two).
_OPEN_CURSORS: dict[Path, int] = {}


def hold(path: str | Path) -> None:
    """Keep `path` open in this process between connections until `let_go` (a run, from its start to its end).

    The database is opened lazily by the next `connect` and closed again while an `attach` of
    the same file needs it (DuckDB lets one process open a file either way, not both at once).
    """
    _HELD.setdefault(Path(path).resolve(), None)


def let_go(path: str | Path) -> None:
    """End `hold`: close the held database (which checkpoints its write-ahead log)."""
    _close_held(Path(path).resolve(), forget=True)


def _close_held(key: Path, *, forget: bool = False) -> None:
    """Close the held database of `key` (it opens again on the next `connect`), or, with `forget`, end the hold."""
    anchor = _HELD.pop(key, None) if forget else _HELD.get(key)
    if anchor is not None:
        anchor.close()  # closes every cursor made from it too
        if not forget:
            _HELD[key] = None


def _held_database(path: Path, wait_seconds: float) -> duckdb.DuckDBPyConnection | None:
    """Return the held database's anchor connection for `path` (opening it if need be), or None when not held."""
    if not _HELD:
        return None
    key = path.resolve()
    if key not in _HELD:
        return None
    if _HELD[key] is None:
        _HELD[key] = _open(path, False, wait_seconds)
    return _HELD[key]


def attach(con: duckdb.DuckDBPyConnection, path: str | Path, alias: str, *, memory_limit: str | None = None,
           wait_seconds: float | None = None) -> None:
    """Attach the warehouse file read-only to another connection as `alias`.

    The readers that join the warehouse with a database of their own (the serving snapshot
    they write, the report's and the disclosure audit's views of the published tables) come
    in here, so they wait for another process's hold and get the memory limit as `connect`
    gives them.

    Arguments:
        con: the reader's connection (usually in-memory).
        path: the warehouse file; it must exist.
        alias: the catalog name the warehouse gets in `con`.
        memory_limit, wait_seconds: as for `connect`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist: run `core20 run` first (or pass --warehouse).")
    if _HELD:
        _close_held(path.resolve())  # a held database would refuse the attach; the next connect opens it again
    con.execute(f"set memory_limit = '{memory_limit or os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY}'")
    wait = default_wait() if wait_seconds is None else wait_seconds
    target = "'" + str(path).replace("'", "''") + "'"
    _waiting(path, wait, lambda: con.execute(f"attach {target} as {quote(alias)} (read_only)"))


@contextmanager
def unordered(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Let DuckDB write a big private table without keeping row order (streamed, less memory)."""
    con.execute("set preserve_insertion_order = false")
    try:
        yield con
    finally:
        con.execute("set preserve_insertion_order = true")


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
) -> int:
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
    con.register("_incoming", frame.to_arrow())
    try:
        return write_query(con, schema, table, "select * from _incoming", partition_column=partition_column,
                           partition_value=partition_value, replace_where=replace_where)
    finally:
        con.unregister("_incoming")


def write_query(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    query: str | Sequence[str],
    *,
    partition_column: str | None = None,
    partition_value: date | None = None,
    replace_where: dict[str, Any] | None = None,
) -> int:
    """Replace a table, or one month (one key) of it, with a query's rows in one transaction; return the rows written.

    The query runs where the data is (nothing passes through Python), e.g. the patient model
    over the staged events. Arguments as for `write_frame`; `query` is a SELECT whose rows
    all carry the key's values, or several with the same columns whose rows are written one
    after the other (e.g. the patient model a slice of patients at a time), all in the same
    transaction.
    """
    queries = [query] if isinstance(query, str) else list(query)
    if not queries:
        raise ValueError(f"no query to write into {schema}.{table}")
    target = f"{quote(schema)}.{quote(table)}"
    match = dict(replace_where or {})
    if partition_column is not None:
        match[partition_column] = partition_value
    con.execute("begin transaction")
    try:
        con.execute(f"create schema if not exists {quote(schema)}")
        rest = queries[1:]
        if table_exists(con, schema, table) and match:
            condition, values = _where(match)
            n = 0
            for index, each in enumerate(queries):
                con.execute(f"create or replace temp view _incoming_query as {each}")
                if index == 0:
                    _align_layout(con, schema, table, "_incoming_query")
                    con.execute(f"delete from {target} where {condition}", values)
                n += con.execute(f"insert into {target} by name select * from _incoming_query").fetchall()[0][0]
            con.execute("drop view _incoming_query")
        else:
            n = con.execute(f"create or replace table {target} as {queries[0]}").fetchall()[0][0]
            for each in rest:
                n += con.execute(f"insert into {target} by name {each}").fetchall()[0][0]
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return int(n)


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


REPO_ROOT = settings_file.REPO_ROOT
DEFAULT_WAREHOUSE = settings_file.DEFAULT_WAREHOUSE
WAREHOUSE_ENV = "CORE20_WAREHOUSE"


def resolve_warehouse_path(path: str | None = None) -> Path:
    """Return the warehouse file: the argument, else $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/."""
    return settings_file.warehouse_path(path)


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file: the one door assets, checks, lineage and publish write through.

    Attributes:
        path: the file (default $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/core20plus5.duckdb).
        memory_limit: DuckDB's memory limit per connection (default $CORE20_DUCKDB_MEMORY or 1.25GB).
    """

    path: Optional[str] = None
    memory_limit: Optional[str] = None

    def file(self) -> Path:
        """Return the resolved warehouse path."""
        return resolve_warehouse_path(self.path)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield a connection (waiting for another process's lock; see `connect`)."""
        with connect(self.file(), read_only=read_only, memory_limit=self.memory_limit) as con:
            yield con

    def attach(self, con: duckdb.DuckDBPyConnection, alias: str) -> None:
        """Attach the warehouse read-only to another connection as `alias` (see `attach`)."""
        attach(con, self.file(), alias, memory_limit=self.memory_limit)

    def read(self, schema: str, table: str, month: date | None = None) -> pl.DataFrame:
        """Return a (small) table, or its month, as a polars frame."""
        with self.connect() as con:
            return read_table(con, schema, table, partition_column="reporting_month" if month else None,
                              partition_value=month)

    def write(self, schema: str, table: str, frame: pl.DataFrame, month: date | None = None,
              replace_where: dict[str, Any] | None = None) -> int:
        """Replace a table, its month or the rows of a key with `frame`, in one transaction."""
        with self.connect() as con:
            return write_frame(con, schema, table, frame, partition_column="reporting_month" if month else None,
                               partition_value=month, replace_where=replace_where)

    def execute(self, sql: str, params: list | None = None) -> list[tuple]:
        """Run one statement (e.g. create a view) and return its rows."""
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()


def as_warehouse(warehouse: Warehouse | str | Path) -> Warehouse:
    """Return a `Warehouse` for a resource or a path (callers outside Dagster pass a path)."""
    return warehouse if isinstance(warehouse, Warehouse) else Warehouse(path=str(warehouse))


class DuckDBPolarsIOManager(dg.ConfigurableIOManager):
    """Store polars frames as DuckDB tables through the `Warehouse`, one month per partitioned write.

    An asset that writes its table itself, with SQL where the data is (staging, the patient
    model), returns None and the manager stores nothing; downstream assets still load the
    table through it.
    """

    warehouse: Warehouse

    def path(self) -> Path:
        """Return the warehouse file (resolved when a run starts, never at import time)."""
        return self.warehouse.file()

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
        with self.warehouse.connect() as con:
            write_frame(con, schema, table, obj, partition_column=partition_column, partition_value=month)
            if pin:
                record_build(con, f"{schema}.{table}", str(pin))
        context.add_output_metadata({"table": f"{schema}.{table}", "n_rows": obj.height})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        upstream = context.upstream_output
        schema, table = table_name(context.asset_key)
        month = partition_month(context)
        partition_column = (upstream.definition_metadata or {}).get(PARTITION_EXPR) if month else None
        with self.warehouse.connect() as con:
            if not table_exists(con, schema, table):
                raise dg.DagsterInvariantViolationError(
                    f"table {schema}.{table} is not in the warehouse {self.path()}; materialise "
                    f"{context.asset_key.to_user_string()} first"
                )
            return read_table(con, schema, table, partition_column=partition_column, partition_value=month)
