"""XmR charts (pipelines/segmentation/spc.py) against worked values published by others.

Every expected number is copied from a public repository file, never computed here; the
comment beside it says where. Sources (repository, path, commit as stored by the public
code index):

[NHSPY-LIMITS]  NHS Python Community, nhs-pycom/nhspy-plotthedots,
                tests/unittests/test_limits_calculations.py, commit
                6aa6c7d743da075d6247d6c08a6f8f57adc81858: limits_calculations(values) ->
                (mean, lpl, upl, nlpl, nupl) for eight series (that port does not screen
                moving ranges; none of these series has one to screen).
[NHSPY-MDC]     nhs-pycom/nhspy-plotthedots, tests/unittests/test_pandas_spc_x_calc.py, commit
                0a57a1fd5dbd595bb31a807ce47e8077f3666a77: the NHS England SPC tool's
                demonstration series (england.nhs.uk/statistical-process-control-tool),
                mean 76.67, limits 57 and 96 (to the places its test checks), one point
                outside, no point close to a limit, one special cause.
[NHSR-SNAP-1]   NHS-R community, nhs-r-community/NHSRplotthedots,
                tests/testthat/_snaps/ptd_spc_standard.md, commit
                3aefce797c5fae105a9fb53e1f290b5e464999af: the test series
                (`set.seed(123); rnorm(20)`) printed to three significant figures.
[NHSR-SNAP-2]   The same snapshot file at commit ea2177d4ccfed7dc14d8f57d20f1114d9b235295:
                mean and limits of that series to 7 significant figures (r1), and of the
                same series with point 15 set to 10, with outlier screening (r2) and without
                (r3) -- the test in tests/testthat/test-ptd_spc_standard.R, same repository.
[NHSR-RULES]    nhs-r-community/NHSRplotthedots, tests/testthat/test-ptd_calculate_point_type.R,
                commit 0b49a46faa87622267a3792ae3a90156090c8add: expected flags of the shift,
                trend and two-in-three helpers; R/ptd_spc_standard helpers as indexed
                (ptd_two_in_three takes `relative_to_mean` and requires all three points of a
                window on one side); tests/testthat/test-ptd_spc_standard.R: two points close
                to the limits on opposite sides are common cause;
                tests/testthat/test-ptd_add_short_group_warnings.R, commit
                02e5aed1c7589cb4825c354b8c301f223ea52571: 11 points warn, 12 do not.
"""

from __future__ import annotations

import pytest

from pipelines.segmentation.spc import (
    SpcRules,
    shift_flags,
    trend_flags,
    two_in_three_flags,
    xmr_chart,
)


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _half_unit(text: str) -> float:
    return 0.5 * 10.0 ** -_decimals(text)


# ---------------------------------------------------------------------------
# limits
# ---------------------------------------------------------------------------

NHSPY_LIMITS = [
    # [NHSPY-LIMITS] values -> (mean, lpl, upl, nlpl, nupl), as the test asserts them
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], (5.5, 2.84, 8.16, 3.7266666666666666, 7.273333333333333)),
    ([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], (5.5, 2.84, 8.16, 3.7266666666666666, 7.273333333333333)),
    ([1, 2, 3, 4, 5, 4, 3, 2, 1, 2], (2.7, 0.040000000000000036, 5.36, 0.9266666666666667, 4.473333333333334)),
    ([1, 2, 3], (2.0, -0.6600000000000001, 4.66, 0.22666666666666657, 3.7733333333333334)),
    (list(range(20)), (9.5, 6.84, 12.16, 7.726666666666667, 11.273333333333333)),
    ([3, 1, 4, 1, 5, 9, 2], (3.5714285714285716, -6.625238095238096, 13.768095238095238, -3.2263492063492065,
                             10.36920634920635)),
    ([1, 2, 3, 2, 1, 2, 3, 4, 5, 6, 7, 4, 3, 2, 1, 2],
     (3.0, -0.014666666666666828, 6.014666666666667, 0.9902222222222221, 5.009777777777778)),
    ([-1, -2, -3, -2, -1, -2, -3, -4, -5, -6, -7, -4, -3, -2, -1, -2],
     (-3.0, -6.014666666666667, 0.014666666666666828, -5.009777777777778, -0.9902222222222221)),
]


@pytest.mark.parametrize(("values", "expected"), NHSPY_LIMITS, ids=lambda v: str(v)[:24])
@pytest.mark.parametrize("screen", [True, False])
def test_mean_and_limits_match_nhspy_plotthedots(values, expected, screen):
    mean, lpl, upl, _, _ = expected  # the near limits (2/3 of the way) are not exposed by xmr_chart
    chart = xmr_chart(values, rules=SpcRules(screen_outliers=screen))
    assert chart.mean == pytest.approx(mean, rel=1e-12, abs=1e-12)
    assert chart.lower_limit == pytest.approx(lpl, rel=1e-12, abs=1e-12)
    assert chart.upper_limit == pytest.approx(upl, rel=1e-12, abs=1e-12)
    # 12 points or more (NHSRplotthedots' threshold) before a verdict.
    assert chart.is_short_series == (len(values) < 12)
    assert (chart.variation is None) == (len(values) < 12)


def test_the_nhs_england_spc_tool_demonstration_series():
    # [NHSPY-MDC]: mean 76.67 (2 places), limits 57 and 96 (0 places), point 12 (54) the only
    # one outside the limits, none close to them, point 12 the only special cause.
    values = [89, 86, 75, 77, 81, 74, 72, 78, 76, 82, 77, 54, 66, 77, 86]
    chart = xmr_chart(values, improvement="increase")
    assert round(chart.mean, 2) == 76.67
    assert round(chart.lower_limit) == 57 and round(chart.upper_limit) == 96
    assert [p.is_outside_limits for p in chart.points] == [False] * 11 + [True] + [False] * 3
    special = [p.point_type != "common_cause" for p in chart.points]
    assert special == [False] * 11 + [True] + [False] * 3
    assert chart.points[11].point_type == "special_cause_concern"  # low, where higher is better
    assert chart.verdict_status == "assessed" and chart.variation == "common_cause"


# [NHSR-SNAP-1] set.seed(123); rnorm(20), as printed (three significant figures).
RNORM_PRINTED = ["-0.560", "-0.230", "1.56", "0.0705", "0.129", "1.72", "0.461", "-1.27", "-0.687", "-0.446",
                 "1.22", "0.360", "0.401", "0.111", "-0.556", "1.79", "0.498", "-1.97", "0.701", "-0.473"]


@pytest.mark.parametrize(
    ("point_15", "screen", "printed"),
    [
        # [NHSR-SNAP-2] r1: mean_col, lpl, upl
        (None, True, ("0.1416238", "-3.01138", "3.294627")),
        # r2: y[15] <- 10, screen_outliers = TRUE: the two moving ranges into and out of 10
        # are 3.267 x the mean moving range or more and are dropped.
        ("10", True, ("0.6694159", "-2.383666", "3.722497")),
        # r3: the same, screen_outliers = FALSE: wider limits.
        ("10", False, ("0.6694159", "-4.596625", "5.935457")),
    ],
    ids=["r1", "r2-screened", "r3-unscreened"],
)
def test_limits_and_outlier_screening_match_nhsrplotthedots(point_15, screen, printed):
    # The series is known to three significant figures, so the comparison allows exactly the
    # error that rounding can carry into the figures (each value within half a unit of its
    # last printed digit), plus half a unit of the snapshot's own last digit.
    texts = list(RNORM_PRINTED)
    if point_15 is not None:
        texts[14] = point_15  # R's y[15]; the test sets it exactly, so it carries no rounding
    values = [float(t) for t in texts]
    errors = [0.0 if (i == 14 and point_15) else _half_unit(t) for i, t in enumerate(texts)]
    chart = xmr_chart(values, rules=SpcRules(screen_outliers=screen))
    mean_error = sum(errors) / len(errors)
    kept = [i for i in range(1, 20) if not (screen and point_15 and i in (14, 15))]
    range_error = sum(errors[i] + errors[i - 1] for i in kept) / len(kept)
    mean, lpl, upl = printed
    assert abs(chart.mean - float(mean)) <= mean_error + _half_unit(mean)
    assert abs(chart.lower_limit - float(lpl)) <= mean_error + 2.66 * range_error + _half_unit(lpl)
    assert abs(chart.upper_limit - float(upl)) <= mean_error + 2.66 * range_error + _half_unit(upl)
    # The tolerance is far below the difference screening makes (about 2.2 on each limit).
    assert mean_error + 2.66 * range_error < 0.05


# ---------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sides", "expected"),
    [
        # [NHSR-RULES] ptd_seven_point_one_side_mean, then ptd_part_of_seven_trend marks the run.
        ([1] * 6, [0] * 6),
        ([1] * 6 + [-1], [0] * 7),
        ([1] * 8 + [-1], [1] * 8 + [0]),
        ([-1] * 8 + [1], [1] * 8 + [0]),
        ([-1] + [1] * 8 + [-1], [0] + [1] * 8 + [0]),
        ([1] + [-1] * 8 + [1], [0] + [1] * 8 + [0]),
    ],
)
def test_shift_rule_matches_nhsrplotthedots(sides, expected):
    assert shift_flags(sides, 7) == [bool(e) for e in expected]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # [NHSR-RULES] ptd_seven_point_trend detects the 7th point; the whole run is marked.
        (list(range(1, 7)), [0] * 6),
        ([1, 2, 3, 3, 4, 5, 6], [0] * 7),  # c(1:3, 3:6): an equal neighbour breaks it
        (list(range(1, 8)), [1] * 7),
        ([2, *range(1, 8), 3], [0] + [1] * 7 + [0]),
        (list(range(7, 0, -1)), [1] * 7),
        ([2, *range(7, 0, -1), 3], [0] + [1] * 7 + [0]),
    ],
)
def test_trend_rule_matches_nhsrplotthedots(values, expected):
    assert trend_flags(values, 7) == [bool(e) for e in expected]


@pytest.mark.parametrize(
    ("close", "expected"),
    [
        # [NHSR-RULES] ptd_two_in_three then ptd_part_of_two_in_three (all points on one side).
        ([0, 0, 0], [0, 0, 0]),
        ([1, 0, 1], [1, 0, 1]),
        ([0, 1, 1], [0, 1, 1]),
        ([1, 1, 0], [1, 1, 0]),
        ([0, 0, 1, 0, 1, 0, 0], [0, 0, 1, 0, 1, 0, 0]),
        ([0, 0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0]),
        ([1, 0, 0, 1], [0, 0, 0, 0]),
        ([1, 0, 0, 1, 1], [0, 0, 0, 1, 1]),
    ],
)
def test_two_in_three_rule_matches_nhsrplotthedots(close, expected):
    assert two_in_three_flags([bool(c) for c in close], [1] * len(close)) == [bool(e) for e in expected]


def test_two_points_close_to_opposite_limits_are_common_cause():
    # [NHSR-RULES] test-ptd_spc_standard.R: 1, -1 alternating for 16 points, then points 15
    # and 16 set to 5.5 and -5.5: both close to a limit but on opposite sides.
    values = [1, -1] * 8
    values[14], values[15] = 5.5, -5.5
    chart = xmr_chart(values)
    assert [p.point_type for p in chart.points[-2:]] == ["common_cause", "common_cause"]


def test_a_short_series_gets_no_verdict_and_twelve_points_do():
    # [NHSR-RULES] short-group threshold 12: 11 points are short, 12 are not.
    eleven = xmr_chart([0.5, 0.6] * 5 + [0.5], improvement="increase", target=0.9)
    twelve = xmr_chart([0.5, 0.6] * 6, improvement="increase", target=0.9)
    assert eleven.is_short_series and eleven.variation is None and eleven.assurance is None
    assert all(p.point_type is None for p in eleven.points)
    assert eleven.verdict_status == "not assessed: 11 points, fewer than the 12 a verdict needs"
    assert not twelve.is_short_series and twelve.variation == "common_cause" and twelve.assurance == "consistent_fail"
    one = xmr_chart([0.4], rules=SpcRules(min_points=2))
    assert one.lower_limit is None and one.points[0].point_type is None and one.variation is None


def test_rule_conventions_are_settings():
    # Six rising points: a trend at trend_length 6 (some NHS tools), not at 7 (MDC default).
    rising = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.35, 0.35, 0.35, 0.35, 0.35, 0.35]
    assert not any(p.is_trend for p in xmr_chart(rising).points)
    assert [p.is_trend for p in xmr_chart(rising, rules=SpcRules(trend_length=6)).points] == [True] * 6 + [False] * 6
    # Two of three close to a limit can be switched off.
    values = [1, -1] * 8
    values[13], values[14] = 5.5, 5.0
    assert any(p.is_two_in_three for p in xmr_chart(values).points)
    assert not any(p.is_two_in_three for p in xmr_chart(values, rules=SpcRules(two_in_three=False)).points)
    with pytest.raises(ValueError, match="SPC min_points must be a whole number of at least 2"):
        xmr_chart([1.0, 2.0], rules=SpcRules(min_points=1))
