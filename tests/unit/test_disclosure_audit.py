"""The disclosure audit holds each month's rows to that month's profile, never to another month's.

A history can hold months published under different profiles (an ICS that changed its rule).
Before, the audit took the profile from whichever distinct value the whole gap table returned
first, so a month could be audited under an earlier month's rule: a midpoint-6 month's 3 (the
band 1-6) blocked as a small count, or an NHS month's small count let through by midpoint 6.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from pipelines.disclosure_audit import audit_table, runner_profile
from pipelines.segmentation.disclosure import MIDPOINT6, NHS_SUPPRESS_ROUND5

OCT, NOV = dt.date(2026, 10, 1), dt.date(2026, 11, 1)


def _gap(rows):
    return pl.DataFrame(rows, schema={"reporting_month": pl.Date, "disclosure_profile": pl.String,
                                      "numerator": pl.Int64, "denominator": pl.Int64}, orient="row")


def test_each_row_is_audited_under_its_own_months_profile():
    frame = _gap([(OCT, MIDPOINT6.name, 3, 9), (NOV, NHS_SUPPRESS_ROUND5.name, 10, 20)])
    assert audit_table("t", frame, NHS_SUPPRESS_ROUND5) == []  # 3 is midpoint 6's band 1-6: allowed there
    leaky = _gap([(OCT, MIDPOINT6.name, 3, 9), (NOV, NHS_SUPPRESS_ROUND5.name, 3, 20)])
    found = audit_table("t", leaky, MIDPOINT6)
    assert [(v.rule, v.n) for v in found] == [("small_count", 1)]  # November's 3 is a count of 3 people
    # A row naming no usable profile ('none': private checks only) is held to the audited month's.
    private = _gap([(NOV, "none", 4, 20)])
    assert [v.rule for v in audit_table("t", private, NHS_SUPPRESS_ROUND5)] == ["small_count"]


def test_the_text_surfaces_profile_is_the_audited_months_not_the_historys():
    con = duckdb.connect()
    con.execute("create schema pub")
    frame = _gap([(OCT, MIDPOINT6.name, 3, 9), (NOV, NHS_SUPPRESS_ROUND5.name, 10, 20)])
    con.register("f", frame.to_arrow())
    con.execute("create table pub.gap_table as select * from f")
    assert runner_profile(con, [OCT]) == MIDPOINT6.name
    assert runner_profile(con, [NOV]) == NHS_SUPPRESS_ROUND5.name
    # Several months under different rules: the NHS rule, the stricter, for the shared texts.
    assert runner_profile(con, [OCT, NOV]) == NHS_SUPPRESS_ROUND5.name
    assert runner_profile(con, []) == NHS_SUPPRESS_ROUND5.name
