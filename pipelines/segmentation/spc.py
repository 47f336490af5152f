"""Statistical process control for monthly series: NHS "Making Data Count" XmR charts.

The chart follows NHS England's Making Data Count guidance as the NHS-R community's
NHSRplotthedots package implements it (ptd_spc_standard, ptd_special_cause_flag,
ptd_calculate_point_type, ptd_calculate_assurance_type), so Power BI can draw the same
variation and assurance icons an NHS analyst sees elsewhere:

- centre line: the mean of the points; moving range MR_i = |x_i - x_(i-1)|;
- outlier screening (on by default, as NHSRplotthedots' `screen_outliers`): moving ranges
  of 3.267 x the mean MR or more are dropped and the mean MR recomputed;
- natural process limits: mean +/- 2.66 x mean MR; "close to a limit" is beyond 2/3 of
  that distance (2 x 2.66 / 3 x mean MR) but not outside;
- special cause (any of): a point outside the limits; a shift, a run of `run_length`
  (default 7) or more consecutive points on one side of the mean (a point on the mean
  breaks it); a trend, `trend_length` (default 7) or more consecutive points each strictly
  higher (or lower) than the last; two of three consecutive points close to or beyond the
  same limit, all three on that side of the mean (the close points are flagged; can be
  switched off);
- point type: common_cause, or special_cause_improvement / special_cause_concern by the
  side of the mean and the indicator's direction (special_cause_neutral_high/low when
  there is no direction);
- variation icon: the type of the latest point; assurance icon (needs a target): target
  above the upper limit means consistently failing a higher-is-better target (passing a
  lower-is-better one), below the lower limit the reverse, otherwise inconsistent.

Conventions differ between tools (Making Data Count's 2019 guidance and NHSRplotthedots use
7 points for shifts and trends; some NHS tools and Western Electric-style rules use 6 for a
trend or 8 for a shift), so all four are settings (`SpcRules`, from `PipelineSettings`)
recorded on every row.

**No verdict on too few points.** Below `min_points` (default 12) the chart's limits are
trial limits: the points and limits are published (`is_short_series`), but no point type,
variation or assurance icon is given, and `verdict_status` says why; a one-point series has
no limits at all and is never "common cause". 12 is NHSRplotthedots' threshold for a short
series (ptd_add_short_group_warnings, warning_threshold 12; its article "How many points
are required for robust control limits?" calls limits on fewer points "trial" limits and
fixes them from 12). Making Data Count recommends 15-20 points for a baseline; an ICS can
raise the setting.

**What each indicator charts.** XmR limits assume the points are independent. Most of
these indicators count events in a rolling window (12 months, 24 months, 5 years), so
consecutive monthly points share most of their data: the moving ranges shrink, the limits
narrow and runs and trends appear without any change in care. Campaign measures count from
a fixed date (1 September) and reset each season, so months within a season are cumulative.
`series_plan` decides per indicator, from its definition's windows, and the SPC table
records the decision (`series_basis`, `window_months`, `series_note`). Under the default
policy `non_overlapping`, a rolling W-month indicator is charted at every W-th month back
from the reporting month (points whose windows do not overlap), a campaign measure at the
same month of each campaign, an "ever" measure (every point contains all earlier ones)
monthly with no verdict, and a measure without a multi-month window monthly. Under
`monthly_with_caveat` every indicator is charted monthly and the note states what the
overlap does to the chart.

`xmr_chart` is the scalar reference on one series; `xmr_table` the vectorised twin over
many series in a polars frame. Both add in the same order (running sums), so they agree
exactly (a property test checks it).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import polars as pl

from pipelines.segmentation.schemas import POINT_TYPES, SPC_SERIES_BASES

LIMIT = 2.66
SCREEN = 3.267
IMPROVEMENTS = ("increase", "decrease", "neutral")
ASSURANCE_TYPES = ("consistent_pass", "consistent_fail", "inconsistent")
ASSESSED = "assessed"


class SpcRules(NamedTuple):
    """The special-cause conventions of a chart, recorded with every point it produces.

    Attributes:
        run_length: points on one side of the mean that make a shift (MDC: 7).
        trend_length: points each higher (or lower) than the last that make a trend (MDC: 7).
        screen_outliers: drop moving ranges of 3.267 x the mean moving range or more.
        two_in_three: flag two of three points close to a limit on one side.
        min_points: points a series needs before it gets a point type, variation or
            assurance verdict (at least 2; default 12, see the module docstring).
    """

    run_length: int = 7
    trend_length: int = 7
    screen_outliers: bool = True
    two_in_three: bool = True
    min_points: int = 12

    def check(self) -> SpcRules:
        """Return the rules after checking them, or raise naming the setting."""
        for name, least in (("run_length", 2), ("trend_length", 2), ("min_points", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"SPC {name} must be a whole number of at least {least}; got {value!r}")
        for name in ("screen_outliers", "two_in_three"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SPC {name} must be true or false; got {getattr(self, name)!r}")
        return self


class XmrPoint(NamedTuple):
    """One point of an XmR chart with its special-cause flags (point_type None when not assessed)."""

    value: float
    is_outside_limits: bool
    is_shift: bool
    is_trend: bool
    is_two_in_three: bool
    point_type: str | None


class XmrChart(NamedTuple):
    """An XmR chart: centre line, natural process limits, points, and the two icons."""

    mean: float
    lower_limit: float | None
    upper_limit: float | None
    points: list[XmrPoint]
    variation: str | None
    assurance: str | None
    is_short_series: bool
    verdict_status: str


def _check_improvement(improvement: str) -> None:
    if improvement not in IMPROVEMENTS:
        raise ValueError(f"improvement must be one of {list(IMPROVEMENTS)}; got {improvement!r}")


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def not_assessed(n_points: int, min_points: int) -> str:
    """Return the verdict status of a series of `n_points`.

    Examples:
        >>> not_assessed(1, 12)
        'not assessed: 1 point, fewer than the 12 a verdict needs'
        >>> not_assessed(12, 12)
        'assessed'
    """
    if n_points >= min_points:
        return ASSESSED
    return f"not assessed: {n_points} point{'' if n_points == 1 else 's'}, fewer than the {min_points} a verdict needs"


def shift_flags(sides: Sequence[int], run_length: int) -> list[bool]:
    """Return which points belong to a run of `run_length` or more on one side of the mean.

    `sides` is each point's sign relative to the mean (+1 above, -1 below, 0 on it; a point
    on the mean breaks a run), as NHSRplotthedots' ptd_seven_point_one_side_mean and
    ptd_part_of_seven_trend mark every point of such a run.

    Examples:
        >>> shift_flags([1] * 8 + [-1], 7)
        [True, True, True, True, True, True, True, True, False]
    """
    n = len(sides)
    flags = [False] * n
    start = 0
    for i in range(1, n + 1):
        if i == n or sides[i] != sides[start]:
            if sides[start] != 0 and i - start >= run_length:
                flags[start:i] = [True] * (i - start)
            start = i
    return flags


def trend_flags(values: Sequence[float], trend_length: int) -> list[bool]:
    """Return which points belong to `trend_length` or more points each strictly above (below) the last.

    An equal neighbour breaks a trend (NHSRplotthedots' ptd_seven_point_trend takes the
    sign of each difference).

    Examples:
        >>> trend_flags([2, 1, 2, 3, 4, 5, 6, 7, 3], 7)
        [False, True, True, True, True, True, True, True, False]
    """
    n = len(values)
    steps = [0] + [_sign(values[i] - values[i - 1]) for i in range(1, n)]
    flags = [False] * n
    start = 1
    for i in range(2, n + 1):
        if i == n or steps[i] != steps[start]:
            if start < n and steps[start] != 0 and i - start >= trend_length - 1:
                flags[start - 1:i] = [True] * (i - start + 1)
            start = i
    return flags


def two_in_three_flags(close: Sequence[bool], sides: Sequence[int]) -> list[bool]:
    """Return the close-to-limit points in a window of three with two or more close, all on one side.

    As NHSRplotthedots' ptd_two_in_three and ptd_part_of_two_in_three: only the close
    points of such a window are flagged.

    Examples:
        >>> two_in_three_flags([False, False, True, False, True, False, False], [1] * 7)
        [False, False, True, False, True, False, False]
        >>> two_in_three_flags([True, True, False], [1, -1, 1])  # close on opposite sides
        [False, False, False]
    """
    n = len(close)
    window = [
        j + 2 < n and sum(close[j:j + 3]) >= 2 and abs(sum(sides[j:j + 3])) == 3 for j in range(n)
    ]
    return [close[i] and any(window[j] for j in (i - 2, i - 1, i) if j >= 0) for i in range(n)]


def xmr_chart(
    values: Sequence[float],
    *,
    improvement: str = "neutral",
    target: float | None = None,
    rules: SpcRules = SpcRules(),
) -> XmrChart:
    """Return the XmR chart of one series of values in time order.

    Arguments:
        values: the series, oldest first (no nulls).
        improvement: "increase" (higher is better), "decrease" or "neutral".
        target: the indicator's target on the same scale, for the assurance icon.
        rules: the special-cause conventions and the minimum points for a verdict.

    Examples:
        >>> chart = xmr_chart([0.5, 0.52, 0.49, 0.51, 0.5, 0.9], improvement="increase", target=0.6,
        ...                   rules=SpcRules(min_points=6))
        >>> round(chart.mean, 4), chart.points[-1].point_type, chart.variation, chart.assurance
        (0.57, 'special_cause_improvement', 'special_cause_improvement', 'inconsistent')
        >>> xmr_chart([0.5]).points[0].point_type is None, xmr_chart([0.5]).verdict_status
        (True, 'not assessed: 1 point, fewer than the 12 a verdict needs')
    """
    _check_improvement(improvement)
    rules = SpcRules(*rules).check()
    y = [float(v) for v in values]
    if not y:
        raise ValueError("values must hold at least one point")
    n = len(y)
    total = 0.0
    for v in y:
        total = total + v
    mean = total / n
    ranges = [None] + [abs(y[i] - y[i - 1]) for i in range(1, n)]
    amr = _mean_of(ranges)
    if rules.screen_outliers and amr is not None:
        ranges = [r if r is not None and r < SCREEN * amr else None for r in ranges]
        amr = _mean_of(ranges)
    lpl = None if amr is None else mean - LIMIT * amr
    upl = None if amr is None else mean + LIMIT * amr
    near = None if amr is None else 2.0 * (LIMIT / 3.0) * amr
    side = [_sign(v - mean) for v in y]
    outside = [upl is not None and (v > upl or v < lpl) for v in y]
    close = [
        near is not None and not outside[i] and (y[i] < mean - near or y[i] > mean + near) for i in range(n)
    ]
    shift = shift_flags(side, rules.run_length)
    trend = trend_flags(y, rules.trend_length)
    two_in_three = two_in_three_flags(close, side) if rules.two_in_three else [False] * n
    status = not_assessed(n, rules.min_points)
    assessed = status == ASSESSED
    points = []
    for i in range(n):
        special = outside[i] or shift[i] or trend[i] or two_in_three[i]
        points.append(XmrPoint(y[i], outside[i], shift[i], trend[i], two_in_three[i],
                               _point_type(special, side[i], improvement) if assessed else None))
    return XmrChart(mean, lpl, upl, points, points[-1].point_type,
                    _assurance(target, lpl, upl, improvement) if assessed else None, n < rules.min_points, status)


def _mean_of(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    if not kept:
        return None
    total = 0.0
    for v in values:
        total = total + (0.0 if v is None else v)
    return total / len(kept)


def _point_type(special: bool, side: int, improvement: str) -> str:
    if not special:
        return "common_cause"
    if improvement == "neutral":
        return "special_cause_neutral_high" if side > 0 else "special_cause_neutral_low"
    wanted = 1 if improvement == "increase" else -1
    return "special_cause_improvement" if side == wanted else "special_cause_concern"


def _assurance(target: float | None, lpl: float | None, upl: float | None, improvement: str) -> str | None:
    if target is None or improvement == "neutral" or lpl is None:
        return None
    increasing = improvement == "increase"
    if target > upl:
        return "consistent_fail" if increasing else "consistent_pass"
    if target < lpl:
        return "consistent_pass" if increasing else "consistent_fail"
    return "inconsistent"


def xmr_table(
    frame: pl.DataFrame,
    by: Sequence[str],
    order: str,
    value: str,
    *,
    improvement: str = "improvement",
    target: str = "target",
    rules: SpcRules = SpcRules(),
) -> pl.DataFrame:
    """Return `frame` with XmR columns for every series identified by `by`, ordered by `order`.

    The vectorised twin of `xmr_chart`; `improvement` and `target` name columns (constant
    within a series) so each indicator carries its own direction and target.

    Returns:
        The input rows sorted by `by` and `order`, plus n_points, mean, lower_limit,
        upper_limit, is_outside_limits, is_shift, is_trend, is_two_in_three, point_type,
        variation, assurance, is_short_series and verdict_status (series-level values
        repeated per row; point_type, variation and assurance null when not assessed).

    Examples:
        >>> import polars as pl
        >>> f = pl.DataFrame({"s": ["a"] * 6, "m": list(range(6)), "v": [0.5, 0.52, 0.49, 0.51, 0.5, 0.9],
        ...     "improvement": ["increase"] * 6, "target": [0.6] * 6})
        >>> xmr_table(f, ["s"], "m", "v", rules=SpcRules(min_points=6)).select("point_type", "variation", "assurance").row(-1)
        ('special_cause_improvement', 'special_cause_improvement', 'inconsistent')
    """
    rules = SpcRules(*rules).check()
    by = list(by)
    bad = frame.filter(~pl.col(improvement).is_in(list(IMPROVEMENTS)))
    if bad.height:
        raise ValueError(f"xmr_table: column {improvement!r} must hold one of {list(IMPROVEMENTS)}")
    if frame[value].null_count():
        raise ValueError(f"xmr_table: column {value!r} has nulls; drop suppressed points before charting")

    def w(expr: pl.Expr) -> pl.Expr:
        return expr.over(by)

    y = pl.col(value).cast(pl.Float64)
    n = w(pl.len())
    mean = w(y.cum_sum().last()) / n.cast(pl.Float64)
    mr = (y - w(y.shift(1))).abs()

    def mean_of(expr: pl.Expr) -> pl.Expr:
        count = w(expr.count())
        return pl.when(count > 0).then(w(expr.fill_null(0.0).cum_sum().last()) / count.cast(pl.Float64))

    out = frame.sort([*by, order]).with_columns(mean.alias("mean"), mr.alias("_mr"))
    out = out.with_columns(mean_of(pl.col("_mr")).alias("_amr"))
    if rules.screen_outliers:
        out = out.with_columns(pl.when(pl.col("_mr") < SCREEN * pl.col("_amr")).then(pl.col("_mr")).alias("_mr"))
        out = out.with_columns(mean_of(pl.col("_mr")).alias("_amr"))
    amr = pl.col("_amr")
    out = out.with_columns(
        w(pl.len()).alias("n_points"),
        (pl.col("mean") - LIMIT * amr).alias("lower_limit"),
        (pl.col("mean") + LIMIT * amr).alias("upper_limit"),
        (2.0 * (LIMIT / 3.0) * amr).alias("_near"),
        (y - pl.col("mean")).sign().cast(pl.Int32).alias("_side"),
        w((y - y.shift(1)).sign()).fill_null(0).cast(pl.Int32).alias("_step"),
    )
    outside = ((y > pl.col("upper_limit")) | (y < pl.col("lower_limit"))).fill_null(False)
    out = out.with_columns(outside.alias("is_outside_limits"))
    close = (
        ~pl.col("is_outside_limits")
        & ((y < pl.col("mean") - pl.col("_near")) | (y > pl.col("mean") + pl.col("_near"))).fill_null(False)
    ).cast(pl.Int32)
    side_run = w((pl.col("_side") != pl.col("_side").shift(1)).fill_null(True).cum_sum())
    step_run = w((pl.col("_step") != pl.col("_step").shift(1)).fill_null(True).cum_sum())
    out = out.with_columns(close.alias("_close"), side_run.alias("_side_run"), step_run.alias("_step_run"))
    side_len = pl.len().over([*by, "_side_run"])
    step_len = pl.len().over([*by, "_step_run"])
    in_trend_run = (pl.col("_step") != 0) & (step_len >= rules.trend_length - 1)
    out = out.with_columns(
        ((pl.col("_side") != 0) & (side_len >= rules.run_length)).alias("is_shift"),
        in_trend_run.alias("_trend_run"),
    )
    window = (
        (pl.col("_close") + w(pl.col("_close").shift(-1)) + w(pl.col("_close").shift(-2)) >= 2)
        & ((pl.col("_side") + w(pl.col("_side").shift(-1)) + w(pl.col("_side").shift(-2))).abs() == 3)
    ).fill_null(False)
    out = out.with_columns(
        (pl.col("_trend_run") | w(pl.col("_trend_run").shift(-1)).fill_null(False)).alias("is_trend"),
        window.alias("_window"),
    )
    two_in_three = (
        (pl.col("_close") == 1)
        & (pl.col("_window") | w(pl.col("_window").shift(1)).fill_null(False) | w(pl.col("_window").shift(2)).fill_null(False))
    ) if rules.two_in_three else pl.lit(False)
    out = out.with_columns(two_in_three.alias("is_two_in_three"))
    assessed = pl.col("n_points") >= rules.min_points
    special = pl.col("is_outside_limits") | pl.col("is_shift") | pl.col("is_trend") | pl.col("is_two_in_three")
    wanted = pl.when(pl.col(improvement) == "increase").then(1).otherwise(-1)
    point_type = (
        pl.when(~assessed).then(pl.lit(None, pl.String))
        .when(~special).then(pl.lit("common_cause"))
        .when(pl.col(improvement) == "neutral")
        .then(pl.when(pl.col("_side") > 0).then(pl.lit("special_cause_neutral_high")).otherwise(pl.lit("special_cause_neutral_low")))
        .when(pl.col("_side") == wanted).then(pl.lit("special_cause_improvement"))
        .otherwise(pl.lit("special_cause_concern"))
    )
    out = out.with_columns(point_type.alias("point_type"))
    t = pl.col(target).cast(pl.Float64)
    increasing = pl.col(improvement) == "increase"
    assurance = (
        pl.when(~assessed | t.is_null() | (pl.col(improvement) == "neutral") | pl.col("upper_limit").is_null())
        .then(pl.lit(None, pl.String))
        .when(t > pl.col("upper_limit")).then(pl.when(increasing).then(pl.lit("consistent_fail")).otherwise(pl.lit("consistent_pass")))
        .when(t < pl.col("lower_limit")).then(pl.when(increasing).then(pl.lit("consistent_pass")).otherwise(pl.lit("consistent_fail")))
        .otherwise(pl.lit("inconsistent"))
    )
    status = (
        pl.when(assessed).then(pl.lit(ASSESSED))
        .otherwise(pl.format("not assessed: {} point{}, fewer than the {} a verdict needs", "n_points",
                             pl.when(pl.col("n_points") == 1).then(pl.lit("")).otherwise(pl.lit("s")),
                             pl.lit(rules.min_points)))
    )
    return out.with_columns(
        w(pl.col("point_type").last()).alias("variation"),
        w(assurance.last()).alias("assurance"),
        (pl.col("n_points") < rules.min_points).alias("is_short_series"),
        status.alias("verdict_status"),
    ).drop("_mr", "_amr", "_near", "_side", "_step", "_close", "_side_run", "_step_run", "_trend_run", "_window")


# ---------------------------------------------------------------------------
# Which series each indicator charts.
# ---------------------------------------------------------------------------

SERIES_POLICIES = ("non_overlapping", "monthly_with_caveat")
SERIES_BASES = SPC_SERIES_BASES  # monthly, every_window, same_month_each_campaign, monthly_overlapping,
# monthly_campaign, monthly_cumulative, unplanned: see series_plan and the SPC_TABLE contract


class SeriesPlan(NamedTuple):
    """How one indicator's SPC series is made, and whether it can carry a verdict."""

    series_basis: str
    step_months: int
    window_months: int | None
    gives_verdict: bool
    series_note: str


def series_plan(window_months: int | None, campaign_from: str | None, is_cumulative: bool,
                policy: str = "non_overlapping") -> SeriesPlan:
    """Return the series an indicator charts, from its longest window (see the module docstring).

    Arguments:
        window_months: the longest rolling window of the indicator's rules, in months (None
            when it has none).
        campaign_from: the campaign start ("MM-DD") when a rule counts from one.
        is_cumulative: a rule counts events at any date ("ever") and no rolling window does.
        policy: "non_overlapping" (default) or "monthly_with_caveat".

    Examples:
        >>> series_plan(12, None, False).step_months, series_plan(12, None, False).series_basis
        (12, 'every_window')
        >>> series_plan(None, "09-01", False).series_basis
        'same_month_each_campaign'
        >>> series_plan(12, None, False, "monthly_with_caveat").series_note[:60]
        'Each point counts events in the 12 months up to its month, s'
    """
    if policy not in SERIES_POLICIES:
        raise ValueError(f"SPC window policy must be one of {list(SERIES_POLICIES)}; got {policy!r}")
    caveat = policy == "monthly_with_caveat"
    if campaign_from is not None:
        season = (f"The measure counts from the start of each campaign ({campaign_from}) and resets then, so the "
                  "months of a season are cumulative and rise by construction")
        if caveat:
            return SeriesPlan("monthly_campaign", 1, 12, True, season + ": charted monthly at the ICS's choice "
                              "(spc_window_policy = monthly_with_caveat), runs and trends within a season and the drop "
                              "at each reset are the campaign's shape, not special causes.")
        return SeriesPlan("same_month_each_campaign", 12, 12, True, season + "; the chart compares the same month "
                          "of each campaign (every 12th month back from the reporting month).")
    if window_months is not None and window_months > 1:
        share = (f"Each point counts events in the {window_months} months up to its month, so consecutive monthly "
                 f"points share {window_months - 1} of their {window_months} months")
        if caveat:
            return SeriesPlan("monthly_overlapping", 1, window_months, True, share + ": charted monthly at the ICS's "
                              "choice (spc_window_policy = monthly_with_caveat), the XmR limits are narrower than "
                              "independent points would give and runs and trends come easily, so special-cause "
                              "signals overstate change.")
        return SeriesPlan("every_window", window_months, window_months, True, share + ", which would narrow the XmR "
                          f"limits; the chart takes one point every {window_months} months back from the reporting "
                          "month, so no two points' windows overlap.")
    if is_cumulative:
        cumulative = ("Each point counts events at any date up to its month: every point contains all earlier ones, "
                      "so no series of independent points exists")
        if caveat:
            return SeriesPlan("monthly_cumulative", 1, None, True, cumulative + "; charted monthly with a verdict at "
                              "the ICS's choice (spc_window_policy = monthly_with_caveat): read special causes with care.")
        return SeriesPlan("monthly_cumulative", 1, None, False, cumulative + "; the monthly chart is drawn without a "
                          "variation or assurance verdict.")
    return SeriesPlan("monthly", 1, window_months, True, "Each point uses only its own month's events, so consecutive "
                      "points share no window: charted monthly.")


_WINDOW_KEYS = ("within_months", "within_years", "ever", "campaign_from")


def _windows(node: Any, found: list[dict]) -> list[dict]:
    if isinstance(node, dict):
        if any(node.get(k) is not None for k in _WINDOW_KEYS):
            found.append(node)
        for child in node.values():
            _windows(child, found)
    elif isinstance(node, (list, tuple)):
        for child in node:
            _windows(child, found)
    return found


def indicator_series_plans(defs, policy: str = "non_overlapping") -> pl.DataFrame:
    """Return each computable indicator's SPC series plan, from the windows of its own rules.

    Reads the definition format's window keys (`within_months`, `within_years`, `ever`,
    `campaign_from`) anywhere in the indicator's denominator and numerator, so it does not
    depend on the criterion classes: the longest rolling window of either decides (a
    denominator of "booked in the last 12 months" overlaps month to month as much as such a
    numerator), a campaign window wins over it (the series resets each season), and an
    `ever` window in the numerator alone makes a cumulative series (an `ever` status in the
    denominator, such as "latest smoking code ever", is a state, not an accumulation).
    Indicators without a numerator (not available) get no plan.

    Returns:
        indicator_id, indicator_version, series_basis, step_months, window_months,
        gives_verdict, series_note.
    """
    rows = []
    for ind in defs.indicators.values():
        if ind.numerator is None:
            continue
        numerator = _windows(ind.numerator.model_dump(by_alias=True), [])
        found = numerator + (_windows(ind.denominator.model_dump(by_alias=True), []) if ind.denominator else [])
        months = [w["within_months"] or 12 * w["within_years"] for w in found
                  if w.get("within_months") is not None or w.get("within_years") is not None]
        campaigns = sorted({w["campaign_from"] for w in found if w.get("campaign_from") is not None})
        plan = series_plan(max(months) if months else None, campaigns[0] if campaigns else None,
                           any(w.get("ever") for w in numerator), policy)
        rows.append((ind.id, ind.version, *plan))
    schema = {"indicator_id": pl.String, "indicator_version": pl.Int32, "series_basis": pl.String,
              "step_months": pl.Int32, "window_months": pl.Int32, "gives_verdict": pl.Boolean, "series_note": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


SPC_BREAKDOWNS = ("overall", "core20")
UNPLANNED = SeriesPlan("unplanned", 1, None, False, "No series plan is recorded for this indicator version (its "
                       "window is not known here): charted monthly without a verdict.")


def _month_index(column: str | pl.Expr) -> pl.Expr:
    date = pl.col(column) if isinstance(column, str) else column
    return date.dt.year().cast(pl.Int32) * 12 + date.dt.month().cast(pl.Int32)


def build_spc_table(
    history: pl.DataFrame,
    catalogue: pl.DataFrame,
    reporting_month,
    *,
    plans: pl.DataFrame | None = None,
    breakdowns: Sequence[str] = SPC_BREAKDOWNS,
    rules: SpcRules = SpcRules(),
) -> pl.DataFrame:
    """Return the XmR chart points (the `SPC_TABLE` contract) of published rates up to a month.

    Arguments:
        history: published gap-table rows of any months (those after `reporting_month` are
            ignored); suppressed points (null rate) are left out of the series.
        catalogue: indicator_id, indicator_version, direction and target.
        reporting_month: the run's month.
        plans: each indicator version's series plan (`indicator_series_plans`); a version
            without one is charted monthly with no verdict.
        breakdowns: gap-table breakdowns to chart (every group and vintage of each).
        rules: special-cause conventions and the minimum points for a verdict.

    Examples:
        >>> import datetime as dt
        >>> months = [dt.date(2026, m, 1) for m in range(1, 4)]
        >>> h = pl.DataFrame({"reporting_month": months, "indicator_id": ["x"] * 3, "indicator_version": [1] * 3,
        ...     "imd_vintage": ["IMD2025"] * 3, "breakdown": ["overall"] * 3, "group": ["all"] * 3,
        ...     "rate": [0.5, 0.6, 0.55]}, schema_overrides={"indicator_version": pl.Int32})
        >>> c = pl.DataFrame({"indicator_id": ["x"], "indicator_version": [1], "direction": ["higher_is_better"],
        ...     "target": [0.6]}, schema_overrides={"indicator_version": pl.Int32})
        >>> p = pl.DataFrame([("x", 1, *series_plan(None, None, False))], orient="row", schema=["indicator_id",
        ...     "indicator_version", "series_basis", "step_months", "window_months", "gives_verdict", "series_note"],
        ...     schema_overrides={"indicator_version": pl.Int32, "step_months": pl.Int32, "window_months": pl.Int32})
        >>> build_spc_table(h, c, months[-1], plans=p).select("point_month", "mean", "point_type", "verdict_status").rows()[-1]
        (datetime.date(2026, 3, 1), 0.55, None, 'not assessed: 3 points, fewer than the 12 a verdict needs')
    """
    from pipelines.segmentation.schemas import SPC_TABLE

    rules = SpcRules(*rules).check()
    series = ["indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"]
    points = history.filter(
        (pl.col("reporting_month") <= reporting_month)
        & pl.col("breakdown").is_in(list(breakdowns))
        & pl.col("rate").is_not_null()
    ).select(pl.col("reporting_month").alias("point_month"), *series, "rate")
    directions = catalogue.select(
        pl.col("indicator_id").cast(pl.String),
        pl.col("indicator_version").cast(pl.Int32),
        pl.col("direction").replace_strict(
            {"higher_is_better": "increase", "lower_is_better": "decrease"}, default="neutral"
        ).alias("improvement"),
        pl.col("target").cast(pl.Float64),
    ).unique(["indicator_id", "indicator_version"], keep="first")
    plan_columns = {"series_basis": pl.String, "step_months": pl.Int32, "window_months": pl.Int32,
                    "gives_verdict": pl.Boolean, "series_note": pl.String}
    if plans is None:
        plans = pl.DataFrame(schema={"indicator_id": pl.String, "indicator_version": pl.Int32, **plan_columns})
    plans = plans.select(pl.col("indicator_id").cast(pl.String), pl.col("indicator_version").cast(pl.Int32),
                         *[pl.col(c).cast(t) for c, t in plan_columns.items()])
    unplanned = dict(zip(SeriesPlan._fields, UNPLANNED))
    points = (
        points.with_columns(pl.col("indicator_version").cast(pl.Int32))
        .join(directions, on=["indicator_id", "indicator_version"], how="left")
        .with_columns(pl.col("improvement").fill_null("neutral"))
        .join(plans, on=["indicator_id", "indicator_version"], how="left")
        .with_columns(*[pl.col(c).fill_null(pl.lit(unplanned[c], t)) for c, t in plan_columns.items()
                        if c != "window_months"])
    )
    # A series of step S keeps the months S, 2S, ... before the reporting month (and it).
    points = points.filter(
        ((_month_index(pl.lit(reporting_month, pl.Date)) - _month_index("point_month")) % pl.col("step_months")) == 0
    )
    if points.is_empty():
        return SPC_TABLE.empty()
    charted = xmr_table(points, series, "point_month", "rate", rules=rules)
    withheld = ~pl.col("gives_verdict") & (pl.col("verdict_status") == ASSESSED)
    charted = charted.with_columns(
        *[pl.when(pl.col("gives_verdict")).then(pl.col(c)).alias(c) for c in ("point_type", "variation", "assurance")],
        pl.when(withheld).then(pl.lit("not assessed: the series basis gives no verdict (see series_note)"))
        .otherwise(pl.col("verdict_status")).alias("verdict_status"),
    )
    return charted.with_columns(
        pl.lit(reporting_month, pl.Date).alias("reporting_month"),
        *[pl.lit(v, pl.Int32).alias(k) for k, v in (("run_length", rules.run_length),
                                                   ("trend_length", rules.trend_length),
                                                   ("min_points", rules.min_points))],
        pl.lit(rules.screen_outliers).alias("screen_outliers"),
        pl.lit(rules.two_in_three).alias("two_in_three"),
    ).select([pl.col(c.name).cast(c.dtype) for c in SPC_TABLE.columns])
