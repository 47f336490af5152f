"""Warehouse writes: one month replaced at a time, atomically."""

import datetime as dt

import polars as pl
import pytest

from pipelines.warehouse import connect, read_table, write_frame

OCT, NOV = dt.date(2026, 10, 1), dt.date(2026, 11, 1)


def month_rows(month, values):
    return pl.DataFrame({"reporting_month": [month] * len(values), "v": values})


def test_partition_write_replaces_only_its_month(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        write_frame(con, "s", "t", month_rows(OCT, [1, 2]), partition_column="reporting_month", partition_value=OCT)
        write_frame(con, "s", "t", month_rows(NOV, [3]), partition_column="reporting_month", partition_value=NOV)
        write_frame(con, "s", "t", month_rows(OCT, [9]), partition_column="reporting_month", partition_value=OCT)
        table = read_table(con, "s", "t").sort("reporting_month")
    assert table.rows() == [(OCT, 9), (NOV, 3)]


class FailingInsert:
    """A connection that fails at the insert, after the month's rows were deleted."""

    def __init__(self, con):
        self._con = con

    def __getattr__(self, name):
        return getattr(self._con, name)

    def execute(self, sql, *args):
        if sql.startswith("insert into"):
            raise RuntimeError("disk full")
        return self._con.execute(sql, *args)


def test_failed_write_leaves_table_unchanged(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        write_frame(con, "s", "t", month_rows(OCT, [1]), partition_column="reporting_month", partition_value=OCT)
        with pytest.raises(RuntimeError, match="disk full"):
            write_frame(FailingInsert(con), "s", "t", month_rows(OCT, [5]), partition_column="reporting_month", partition_value=OCT)
        assert read_table(con, "s", "t").rows() == [(OCT, 1)]


def test_new_contract_column_keeps_other_months(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        write_frame(con, "s", "t", month_rows(OCT, [1]), partition_column="reporting_month", partition_value=OCT)
        wider = month_rows(NOV, [2]).with_columns(pl.lit("x").alias("extra"))
        write_frame(con, "s", "t", wider, partition_column="reporting_month", partition_value=NOV)
        table = read_table(con, "s", "t").sort("reporting_month")
    assert table.rows() == [(OCT, 1, None), (NOV, 2, "x")]


def test_partition_read_returns_one_month(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        write_frame(con, "s", "t", month_rows(OCT, [1]), partition_column="reporting_month", partition_value=OCT)
        write_frame(con, "s", "t", month_rows(NOV, [2]), partition_column="reporting_month", partition_value=NOV)
        assert read_table(con, "s", "t", partition_column="reporting_month", partition_value=NOV)["v"].to_list() == [2]


def test_a_held_warehouse_is_one_open_database_until_let_go(tmp_path):
    """During a run (`hold` .. `let_go`) every connect is a cursor on one open database: writes
    commit for the next connect, read-only connects work, an attach of the same file gets it,
    and after `let_go` another process can open the file."""
    import subprocess
    import sys

    import duckdb

    from pipelines import warehouse

    path = tmp_path / "w.duckdb"
    with connect(path) as con:
        write_frame(con, "s", "t", month_rows(OCT, [1]), partition_column="reporting_month", partition_value=OCT)
    warehouse.hold(path)
    try:
        with connect(path) as con:
            write_frame(con, "s", "t", month_rows(NOV, [2, 3]), partition_column="reporting_month", partition_value=NOV)
            con.execute("create temp table scratch as select 1")  # private to this connection
        anchor = warehouse._HELD[path.resolve()]
        assert anchor is not None
        with connect(path, read_only=True) as con:
            assert con.execute("select count(*) from s.t").fetchall() == [(3,)]
            assert con.execute("select count(*) from duckdb_tables() where temporary").fetchall() == [(0,)]
        assert warehouse._HELD[path.resolve()] is anchor  # still the same open database
        reader = duckdb.connect()
        warehouse.attach(reader, path, "wh")  # the held database lets go of the file for the attach
        assert reader.execute("select count(*) from wh.s.t").fetchall() == [(3,)]
        reader.close()
        with connect(path) as con:  # opened again for the rest of the run
            assert read_table(con, "s", "t", partition_column="reporting_month", partition_value=NOV)["v"].to_list() == [2, 3]
    finally:
        warehouse.let_go(path)
    assert path.resolve() not in warehouse._HELD
    opened = subprocess.run([sys.executable, "-c", f"import duckdb; print(duckdb.connect({str(path)!r}).execute("
                             "'select count(*) from s.t').fetchall()[0][0])"], capture_output=True, text=True, timeout=120)
    assert opened.stdout.strip() == "3", opened.stderr


def _cached_mb(con) -> float:
    return con.execute("select coalesce(sum(memory_usage_bytes), 0) / 2 ** 20 from duckdb_memory() "
                       "where tag = 'BASE_TABLE'").fetchone()[0]


def test_a_held_warehouse_gives_back_its_cached_blocks_when_the_last_cursor_closes(tmp_path):
    from pipelines.warehouse import hold, let_go

    path = tmp_path / "w.duckdb"
    with connect(path) as con:  # not held: closing the file frees everything anyway
        con.execute("create table big as select random() as x from range(20000000)")
    hold(path)
    try:
        with connect(path, memory_limit="1GB") as outer:
            outer.execute("select sum(x) from big").fetchall()
            with connect(path, memory_limit="1GB") as inner:  # a second cursor of the same step
                inner.execute("select count(*) from big").fetchall()
            cached_while_outer_open = _cached_mb(outer)
        with connect(path, memory_limit="1GB") as after:
            cached_after, limit = _cached_mb(after), after.execute("select current_setting('memory_limit')").fetchone()[0]
    finally:
        let_go(path)
    assert cached_while_outer_open > 100  # the inner cursor's close left the outer's blocks alone
    assert cached_after <= 64  # evicted down to the low limit the step's close sets
    assert limit == "953.6 MiB"  # 1GB, set back after the eviction
