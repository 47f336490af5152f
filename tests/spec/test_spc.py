"""Which points each indicator's SPC chart uses, and when it gives a verdict, as literal tables.

Twenty-five published months, November 2024 to November 2026, of four indicators, each with
the series plan its definition's windows give (spc.series_plan):

    indicator   window in its rules         plan (policy non_overlapping)
    rolling12   within_months: 12           every_window: every 12th month back from the run
    campaign    campaign_from: 09-01        same_month_each_campaign: every 12th month
    ever        ever: true (numerator)      monthly_cumulative: every month, no verdict
    monthly     none                        monthly: every month, verdict from 12 points

The rates are 0.50 and 0.52 alternately (ending on 0.50 in November 2026) for every indicator,
so whatever points a chart takes its mean and limits can be checked by hand.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from pipelines.segmentation.spc import SpcRules, build_spc_table, indicator_series_plans, series_plan
from tests.spec.literal import table

RUN = dt.date(2026, 11, 1)
MONTHS = [dt.date(2024 + (10 + k) // 12, (10 + k) % 12 + 1, 1) for k in range(25)]  # 2024-11 ... 2026-11
INDICATORS = ("rolling12", "campaign", "ever", "monthly")

CATALOGUE = table("""
indicator_id | indicator_version | direction        | target
rolling12    | 1                 | higher_is_better | 0.9
campaign     | 1                 | higher_is_better |
ever         | 1                 | higher_is_better | 0.9
monthly      | 1                 | higher_is_better | 0.9
""", {"indicator_id": pl.String, "indicator_version": pl.Int32, "direction": pl.String, "target": pl.Float64})


def plans(policy: str = "non_overlapping") -> pl.DataFrame:
    rows = [
        ("rolling12", 1, *series_plan(12, None, False, policy)),
        ("campaign", 1, *series_plan(None, "09-01", False, policy)),
        ("ever", 1, *series_plan(None, None, True, policy)),
        ("monthly", 1, *series_plan(None, None, False, policy)),
    ]
    return pl.DataFrame(rows, orient="row", schema={
        "indicator_id": pl.String, "indicator_version": pl.Int32, "series_basis": pl.String, "step_months": pl.Int32,
        "window_months": pl.Int32, "gives_verdict": pl.Boolean, "series_note": pl.String})


def history() -> pl.DataFrame:
    rows = [(m, ind, 1, "IMD2025", "overall", "all", 0.50 if k % 2 == 0 else 0.52)
            for ind in INDICATORS for k, m in enumerate(MONTHS)]
    return pl.DataFrame(rows, orient="row", schema={
        "reporting_month": pl.Date, "indicator_id": pl.String, "indicator_version": pl.Int32, "imd_vintage": pl.String,
        "breakdown": pl.String, "group": pl.String, "rate": pl.Float64})


def chart(indicator: str, out: pl.DataFrame) -> pl.DataFrame:
    return out.filter(pl.col("indicator_id") == indicator).sort("point_month")


def test_each_indicator_charts_the_points_its_window_allows():
    out = build_spc_table(history(), CATALOGUE, RUN, plans=plans())
    expected = table("""
    indicator_id | series_basis             | window_months | n_points | verdict_status
    rolling12    | every_window             | 12            | 3        | not assessed: 3 points, fewer than the 12 a verdict needs
    campaign     | same_month_each_campaign | 12            | 3        | not assessed: 3 points, fewer than the 12 a verdict needs
    ever         | monthly_cumulative       |               | 25       | not assessed: the series basis gives no verdict (see series_note)
    monthly      | monthly                  |               | 25       | assessed
    """, {"indicator_id": pl.String, "series_basis": pl.String, "window_months": pl.Int32, "n_points": pl.Int64,
          "verdict_status": pl.String})
    got = out.group_by("indicator_id").agg(pl.col("series_basis", "window_months", "n_points", "verdict_status").first())
    assert got.sort("indicator_id").equals(expected.sort("indicator_id"))
    # every_window and same_month_each_campaign: November 2024, 2025 and 2026 only (rates .50, .52, .50).
    for indicator in ("rolling12", "campaign"):
        points = chart(indicator, out)
        assert points["point_month"].to_list() == [dt.date(2024, 11, 1), dt.date(2025, 11, 1), RUN]
        assert points["rate"].to_list() == [0.50, 0.50, 0.50]
        assert points["point_type"].is_null().all() and points["variation"].is_null().all()
    # Monthly: 25 points, mean (13 x .50 + 12 x .52) / 25 = 0.5096, mean moving range 0.02, limits
    # 0.5096 -/+ 2.66 x 0.02 = 0.4564 and 0.5628; all common cause; target 0.9 above the upper
    # limit: consistently failing.
    monthly = chart("monthly", out)
    assert monthly["mean"][0] == pytest.approx(0.5096)
    assert (monthly["lower_limit"][0], monthly["upper_limit"][0]) == pytest.approx((0.4564, 0.5628))
    assert set(monthly["point_type"]) == {"common_cause"}
    assert (monthly["variation"][0], monthly["assurance"][0]) == ("common_cause", "consistent_fail")
    # Cumulative: the same points and limits are drawn, without any verdict.
    ever = chart("ever", out)
    assert ever["lower_limit"][0] == pytest.approx(0.4564)
    assert ever["point_type"].is_null().all() and ever["assurance"].is_null().all()


def test_every_row_records_the_rules_and_says_how_its_series_is_made():
    rules = SpcRules(run_length=6, trend_length=6, screen_outliers=False, two_in_three=False, min_points=15)
    out = build_spc_table(history(), CATALOGUE, RUN, plans=plans(), rules=rules)
    assert out.select("run_length", "trend_length", "screen_outliers", "two_in_three", "min_points").unique().rows() == [
        (6, 6, False, False, 15)]
    note = chart("rolling12", out)["series_note"][0]
    assert "share 11 of their 12 months" in note and "one point every 12 months" in note
    assert "resets" in chart("campaign", out)["series_note"][0]


def test_monthly_with_caveat_charts_every_month_and_says_what_the_overlap_does():
    out = build_spc_table(history(), CATALOGUE, RUN, plans=plans("monthly_with_caveat"))
    rolling = chart("rolling12", out)
    assert rolling["n_points"][0] == 25 and rolling["series_basis"][0] == "monthly_overlapping"
    assert rolling["verdict_status"][0] == "assessed" and rolling["variation"][0] == "common_cause"
    assert "special-cause signals overstate change" in rolling["series_note"][0]
    assert chart("campaign", out)["series_basis"][0] == "monthly_campaign"


def test_a_one_point_series_is_never_common_cause_and_an_unplanned_indicator_gets_no_verdict():
    first = history().filter(pl.col("reporting_month") == MONTHS[0])
    out = build_spc_table(first, CATALOGUE, MONTHS[0], plans=plans())
    assert out.height == 4 and out["point_type"].is_null().all() and out["variation"].is_null().all()
    assert out["lower_limit"].is_null().all()  # no moving range, no limits
    unplanned = build_spc_table(history(), CATALOGUE, RUN, plans=plans().filter(pl.col("indicator_id") != "monthly"))
    monthly = chart("monthly", unplanned)
    assert monthly["series_basis"][0] == "unplanned" and monthly["n_points"][0] == 25
    assert monthly["variation"].is_null().all()


def test_the_shipped_indicators_plans_follow_their_windows():
    from pipelines.segmentation.definitions import load_definitions

    got = {r["indicator_id"]: (r["series_basis"], r["step_months"])
           for r in indicator_series_plans(load_definitions(None)).iter_rows(named=True)}
    assert got["smi_health_check"] == ("every_window", 12)  # every component within 12 months
    assert got["bp_case_finding"] == ("every_window", 60)  # BP within 5 years
    assert got["smoking_status_recorded"] == ("every_window", 24)
    assert got["copd_flu_vaccination"] == ("same_month_each_campaign", 12)
    assert got["copd_pneumococcal_vaccination"] == ("monthly_cumulative", 1)  # ever recorded
    assert "smoking_cessation_support" not in got  # not available: nothing to chart
