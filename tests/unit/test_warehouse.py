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
