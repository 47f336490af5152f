"""Statistical process control for monthly series: NHS "Making Data Count" XmR charts.

The rules follow NHS England's Making Data Count guidance as implemented by the NHS-R
community's NHSRplotthedots package (ptd_spc_standard, ptd_calculate_point_type,
ptd_calculate_assurance_type), so Power BI can draw the same variation and assurance icons
an NHS analyst sees elsewhere:

- centre line: the mean of the points; moving range MR_i = |x_i - x_(i-1)|;
- outlier screening (on by default): moving ranges of 3.267 x the mean MR or more are
  dropped and the mean MR recomputed;
- natural process limits: mean +/- 2.66 x mean MR; "close to the limits" is beyond
  2/3 of that distance (2 x 2.66 / 3 x mean MR) but not outside;
- special cause (any of): a point outside the limits; a shift, i.e. a run of
  `run_length` (default 7) or more consecutive points on one side of the mean (a point
  on the mean breaks it); a trend, i.e. `run_length` or more consecutive points each
  strictly higher (or lower) than the last; two of three consecutive points close to
  or beyond the same limit, all three on that side of the mean (the close points are
  flagged);
- point type: common_cause, or special_cause_improvement / special_cause_concern by
  the side of the mean and the indicator's direction (special_cause_neutral_high/low
  when there is no direction);
- variation icon: the type of the latest point; assurance icon (needs a target): target
  above the upper limit means consistently failing a higher-is-better target (passing
  a lower-is-better one), below the lower limit the reverse, otherwise inconsistent;
- fewer than 12 points is a short series (NHSRplotthedots warns below 12): figures are
  given, flagged `is_short_series`, because a chart needs more points to be read.

`xmr_chart` is the scalar reference on one series; `xmr_table` the vectorised twin over
many series in a polars frame. Both add in the same order (running sums), so they agree
exactly (a property test checks it).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import polars as pl

LIMIT = 2.66
SCREEN = 3.267
SHORT_SERIES = 12
IMPROVEMENTS = ("increase", "decrease", "neutral")
POINT_TYPES = (
    "common_cause",
    "special_cause_improvement",
    "special_cause_concern",
    "special_cause_neutral_high",
    "special_cause_neutral_low",
)
ASSURANCE_TYPES = ("consistent_pass", "consistent_fail", "inconsistent")


class XmrPoint(NamedTuple):
    """One point of an XmR chart with its special-cause flags."""

    value: float
    is_outside_limits: bool
    is_shift: bool
    is_trend: bool
    is_two_in_three: bool
    point_type: str


class XmrChart(NamedTuple):
    """An XmR chart: centre line, natural process limits, points, and the two icons."""

    mean: float
    lower_limit: float | None
    upper_limit: float | None
    points: list[XmrPoint]
    variation: str
    assurance: str | None
    is_short_series: bool


def _check(improvement: str, run_length: int) -> None:
    if improvement not in IMPROVEMENTS:
        raise ValueError(f"improvement must be one of {list(IMPROVEMENTS)}; got {improvement!r}")
    if isinstance(run_length, bool) or not isinstance(run_length, int) or run_length < 2:
        raise ValueError(f"run_length must be a whole number of at least 2; got {run_length!r}")


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def xmr_chart(
    values: Sequence[float],
    *,
    improvement: str = "neutral",
    target: float | None = None,
    run_length: int = 7,
    screen_outliers: bool = True,
) -> XmrChart:
    """Return the XmR chart of one series of values in time order.

    Arguments:
        values: the series, oldest first (no nulls).
        improvement: "increase" (higher is better), "decrease" or "neutral".
        target: the indicator's target on the same scale, for the assurance icon.
        run_length: points in a shift or trend (Making Data Count: 7 by default).
        screen_outliers: drop moving ranges of 3.267 x the mean MR or more.

    Examples:
        >>> chart = xmr_chart([0.5, 0.52, 0.49, 0.51, 0.5, 0.9], improvement="increase", target=0.6)
        >>> round(chart.mean, 4), chart.points[-1].point_type, chart.variation, chart.assurance
        (0.57, 'special_cause_improvement', 'special_cause_improvement', 'inconsistent')
    """
    _check(improvement, run_length)
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
    if screen_outliers and amr is not None:
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
    shift = [False] * n
    start = 0
    for i in range(1, n + 1):
        if i == n or side[i] != side[start]:
            if side[start] != 0 and i - start >= run_length:
                shift[start:i] = [True] * (i - start)
            start = i
    steps = [0] + [_sign(y[i] - y[i - 1]) for i in range(1, n)]
    trend = [False] * n
    start = 1
    for i in range(2, n + 1):
        if i == n or steps[i] != steps[start]:
            if start < n and steps[start] != 0 and i - start >= run_length - 1:
                trend[start - 1:i] = [True] * (i - start + 1)
            start = i
    window = [
        j + 2 < n and sum(close[j:j + 3]) >= 2 and abs(sum(side[j:j + 3])) == 3 for j in range(n)
    ]
    two_in_three = [close[i] and any(window[j] for j in (i - 2, i - 1, i) if j >= 0) for i in range(n)]
    points = []
    for i in range(n):
        special = outside[i] or shift[i] or trend[i] or two_in_three[i]
        points.append(XmrPoint(y[i], outside[i], shift[i], trend[i], two_in_three[i],
                               _point_type(special, side[i], improvement)))
    return XmrChart(mean, lpl, upl, points, points[-1].point_type,
                    _assurance(target, lpl, upl, improvement), n < SHORT_SERIES)


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
    run_length: int = 7,
    screen_outliers: bool = True,
) -> pl.DataFrame:
    """Return `frame` with XmR columns for every series identified by `by`, ordered by `order`.

    The vectorised twin of `xmr_chart`; `improvement` and `target` name columns (constant
    within a series) so each indicator carries its own direction and target.

    Returns:
        The input rows sorted by `by` and `order`, plus n_points, mean, lower_limit,
        upper_limit, is_outside_limits, is_shift, is_trend, is_two_in_three, point_type,
        variation, assurance and is_short_series (series-level values repeated per row).

    Examples:
        >>> import polars as pl
        >>> f = pl.DataFrame({"s": ["a"] * 6, "m": list(range(6)), "v": [0.5, 0.52, 0.49, 0.51, 0.5, 0.9],
        ...     "improvement": ["increase"] * 6, "target": [0.6] * 6})
        >>> xmr_table(f, ["s"], "m", "v").select("point_type", "variation", "assurance").row(-1)
        ('special_cause_improvement', 'special_cause_improvement', 'inconsistent')
    """
    _check("neutral", run_length)
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
    if screen_outliers:
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
    in_trend_run = (pl.col("_step") != 0) & (step_len >= run_length - 1)
    out = out.with_columns(
        ((pl.col("_side") != 0) & (side_len >= run_length)).alias("is_shift"),
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
    out = out.with_columns(
        (
            (pl.col("_close") == 1)
            & (pl.col("_window") | w(pl.col("_window").shift(1)).fill_null(False) | w(pl.col("_window").shift(2)).fill_null(False))
        ).alias("is_two_in_three")
    )
    special = pl.col("is_outside_limits") | pl.col("is_shift") | pl.col("is_trend") | pl.col("is_two_in_three")
    wanted = pl.when(pl.col(improvement) == "increase").then(1).otherwise(-1)
    point_type = (
        pl.when(~special).then(pl.lit("common_cause"))
        .when(pl.col(improvement) == "neutral")
        .then(pl.when(pl.col("_side") > 0).then(pl.lit("special_cause_neutral_high")).otherwise(pl.lit("special_cause_neutral_low")))
        .when(pl.col("_side") == wanted).then(pl.lit("special_cause_improvement"))
        .otherwise(pl.lit("special_cause_concern"))
    )
    out = out.with_columns(point_type.alias("point_type"))
    t = pl.col(target).cast(pl.Float64)
    increasing = pl.col(improvement) == "increase"
    assurance = (
        pl.when(t.is_null() | (pl.col(improvement) == "neutral") | pl.col("upper_limit").is_null()).then(pl.lit(None, pl.String))
        .when(t > pl.col("upper_limit")).then(pl.when(increasing).then(pl.lit("consistent_fail")).otherwise(pl.lit("consistent_pass")))
        .when(t < pl.col("lower_limit")).then(pl.when(increasing).then(pl.lit("consistent_pass")).otherwise(pl.lit("consistent_fail")))
        .otherwise(pl.lit("inconsistent"))
    )
    return out.with_columns(
        w(pl.col("point_type").last()).alias("variation"),
        w(assurance.last()).alias("assurance"),
        (pl.col("n_points") < SHORT_SERIES).alias("is_short_series"),
    ).drop("_mr", "_amr", "_near", "_side", "_step", "_close", "_side_run", "_step_run", "_trend_run", "_window")


SPC_BREAKDOWNS = ("overall", "core20")


def build_spc_table(
    history: pl.DataFrame,
    catalogue: pl.DataFrame,
    reporting_month,
    *,
    breakdowns: Sequence[str] = SPC_BREAKDOWNS,
    run_length: int = 7,
) -> pl.DataFrame:
    """Return the XmR chart points (the `SPC_TABLE` contract) of published rates up to a month.

    Arguments:
        history: published gap-table rows of any months (those after `reporting_month` are
            ignored); suppressed points (null rate) are left out of the series.
        catalogue: indicator_id, indicator_version, direction and target.
        reporting_month: the run's month.
        breakdowns: gap-table breakdowns to chart (every group and vintage of each).
        run_length: points in a shift or trend.

    Examples:
        >>> import datetime as dt
        >>> months = [dt.date(2026, m, 1) for m in range(1, 4)]
        >>> h = pl.DataFrame({"reporting_month": months, "indicator_id": ["x"] * 3, "indicator_version": [1] * 3,
        ...     "imd_vintage": ["IMD2025"] * 3, "breakdown": ["overall"] * 3, "group": ["all"] * 3,
        ...     "rate": [0.5, 0.6, 0.55]}, schema_overrides={"indicator_version": pl.Int32})
        >>> c = pl.DataFrame({"indicator_id": ["x"], "indicator_version": [1], "direction": ["higher_is_better"],
        ...     "target": [0.6]}, schema_overrides={"indicator_version": pl.Int32})
        >>> build_spc_table(h, c, months[-1]).select("point_month", "mean", "point_type").rows()[-1]
        (datetime.date(2026, 3, 1), 0.55, 'common_cause')
    """
    from pipelines.segmentation.schemas import SPC_TABLE

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
    points = points.with_columns(pl.col("indicator_version").cast(pl.Int32)).join(
        directions, on=["indicator_id", "indicator_version"], how="left"
    ).with_columns(pl.col("improvement").fill_null("neutral"))
    if points.is_empty():
        return SPC_TABLE.empty()
    charted = xmr_table(points, series, "point_month", "rate", run_length=run_length)
    return charted.with_columns(
        pl.lit(reporting_month, pl.Date).alias("reporting_month"),
        pl.lit(run_length, pl.Int32).alias("run_length"),
    ).select([pl.col(c.name).cast(c.dtype) for c in SPC_TABLE.columns])
