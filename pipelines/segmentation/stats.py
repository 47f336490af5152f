"""Confidence intervals for the rates a gap table carries (the OHID/PHE Fingertips methods).

Each method has a scalar function (the reference implementation, tested against published
worked values) and a vectorised twin returning polars expressions that the pipeline uses.
The twins perform the same floating-point operations in the same order, so they give the
same numbers as the scalar functions, not merely close ones (a property test checks it).

z is the exact normal quantile from `statistics.NormalDist().inv_cdf` (1.959964 at 95%,
3.090232 at 99.8%), as the Fingertips technical guidance requires, never 1.96.

Only the standard library and polars are imported here; scipy, which the exact Poisson
limits need, is imported inside `byar_interval` so importing the package stays light.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import polars as pl


class Interval(NamedTuple):
    """A point estimate with its lower and upper confidence limits."""

    value: float
    lower: float
    upper: float


def _z(confidence: float) -> float:
    """Return the two-sided standard normal quantile for `confidence`, after checking it."""
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number strictly between 0 and 1 (e.g. 0.95); got {confidence!r}")
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def _check_count(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a count (a non-negative number); got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative; got {value!r}")


def _check_proportion(numerator_name: str, numerator: float, denominator_name: str, denominator: float) -> None:
    _check_count(numerator_name, numerator)
    _check_count(denominator_name, denominator)
    if denominator == 0:
        raise ValueError(f"{denominator_name} must be greater than 0: a proportion of an empty group is undefined")
    if numerator > denominator:
        raise ValueError(
            f"{numerator_name} ({numerator}) must not exceed {denominator_name} ({denominator}): "
            "the numerator is a subset of the denominator"
        )


# ---------------------------------------------------------------------------
# Wilson score interval for a proportion.
# ---------------------------------------------------------------------------
#
# Wilson (1927), without continuity correction, as in PHEindicatormethods::phe_proportion
# and the Fingertips technical guidance ("Confidence intervals for proportions"):
#
#     limits = (2x + z^2 -/+ z * sqrt(z^2 + 4x(1 - x/n))) / (2(n + z^2))
#
# At x = 0 the lower limit is 0, and at x = n the upper limit is 1, exactly in real
# arithmetic; in floating point z * sqrt(z^2) can differ from z^2 in the last bit (giving
# -1e-17, or 0.9999999999999999 below a rate of 1.0), so those two limits are set exactly
# and the rest clamped to [0, 1].


def wilson_interval(numerator: float, denominator: float, confidence: float = 0.95, multiplier: float = 1) -> Interval:
    """Return a proportion with its Wilson score confidence interval.

    Arguments:
        numerator: count of the denominator who meet the numerator (0 is valid).
        denominator: size of the group (must be greater than 0; `numerator` may equal it).
        confidence: two-sided confidence level, strictly between 0 and 1.
        multiplier: scale for the result, e.g. 100 for a percentage.

    Returns:
        Interval(value, lower, upper), each multiplied by `multiplier`.

    Raises:
        ValueError: naming the argument, for negative counts, a numerator larger than the
            denominator, a zero denominator or a confidence level outside (0, 1).

    Examples:
        >>> [round(v, 4) for v in wilson_interval(81, 263)]  # Newcombe (1998a), Table I
        [0.308, 0.2553, 0.3662]
        >>> wilson_interval(0, 10).lower
        0.0
    """
    _check_proportion("numerator", numerator, "denominator", denominator)
    z = _z(confidence)
    z2 = z * z
    x, n = float(numerator), float(denominator)
    spread = z * math.sqrt(z2 + 4.0 * x * (1.0 - x / n))
    centre = 2.0 * x + z2
    scale = 2.0 * (n + z2)
    lower = 0.0 if x == 0 else min(max((centre - spread) / scale, 0.0), 1.0)
    upper = 1.0 if x == n else min(max((centre + spread) / scale, 0.0), 1.0)
    return Interval(x / n * multiplier, lower * multiplier, upper * multiplier)


def _wilson_exprs(x: pl.Expr, n: pl.Expr, z: float) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Return (value, lower, upper) expressions; null where the proportion is undefined.

    Rows with a null count, a zero denominator, a negative count or a numerator above the
    denominator are null rather than an error: a vectorised call cannot raise for one row,
    and the gap builder only ever passes valid counts (disclosure rounding is monotone, so
    it keeps numerator <= denominator).
    """
    z2 = z * z
    x = x.cast(pl.Float64)
    n = n.cast(pl.Float64)
    valid = (n > 0) & (x >= 0) & (x <= n)
    spread = pl.lit(z) * (pl.lit(z2) + pl.lit(4.0) * x * (pl.lit(1.0) - x / n)).sqrt()
    centre = pl.lit(2.0) * x + pl.lit(z2)
    scale = pl.lit(2.0) * (n + pl.lit(z2))
    value = pl.when(valid).then(x / n)
    lower = pl.when(valid).then(pl.when(x == 0).then(pl.lit(0.0)).otherwise(((centre - spread) / scale).clip(0.0, 1.0)))
    upper = pl.when(valid).then(pl.when(x == n).then(pl.lit(1.0)).otherwise(((centre + spread) / scale).clip(0.0, 1.0)))
    return value, lower, upper


def _as_expr(column: str | pl.Expr) -> pl.Expr:
    return pl.col(column) if isinstance(column, str) else column


def wilson_columns(numerator: str | pl.Expr, denominator: str | pl.Expr, confidence: float = 0.95) -> list[pl.Expr]:
    """Return expressions for a proportion and its Wilson interval, one value per row.

    The vectorised twin of `wilson_interval` (same operations, same numbers).

    Arguments:
        numerator: name (or expression) of the numerator count column.
        denominator: name (or expression) of the denominator count column.
        confidence: two-sided confidence level, strictly between 0 and 1.

    Returns:
        Three expressions aliased `rate`, `rate_lower`, `rate_upper`; null where either
        count is null or the denominator is 0 (or the counts are not a valid proportion).

    Examples:
        >>> import polars as pl
        >>> frame = pl.DataFrame({"n_num": [81, 0, None], "n_den": [263, 10, 5]})
        >>> frame.select(wilson_columns("n_num", "n_den")).with_columns(pl.all().round(4))
        shape: (3, 3)
        ┌───────┬────────────┬────────────┐
        │ rate  ┆ rate_lower ┆ rate_upper │
        │ ---   ┆ ---        ┆ ---        │
        │ f64   ┆ f64        ┆ f64        │
        ╞═══════╪════════════╪════════════╡
        │ 0.308 ┆ 0.2553     ┆ 0.3662     │
        │ 0.0   ┆ 0.0        ┆ 0.2775     │
        │ null  ┆ null       ┆ null       │
        └───────┴────────────┴────────────┘
    """
    value, lower, upper = _wilson_exprs(_as_expr(numerator), _as_expr(denominator), _z(confidence))
    return [value.alias("rate"), lower.alias("rate_lower"), upper.alias("rate_upper")]


# ---------------------------------------------------------------------------
# Newcombe hybrid score interval for a difference of two independent proportions.
# ---------------------------------------------------------------------------
#
# Newcombe RG (1998) "Interval estimation for the difference between independent
# proportions: comparison of eleven methods", Stat Med 17:873-890, method 10. With
# (l1, u1) and (l2, u2) the Wilson limits of p1 and p2 and d = p1 - p2:
#
#     lower = d - sqrt((p1 - l1)^2 + (u2 - p2)^2)
#     upper = d + sqrt((u1 - p1)^2 + (p2 - l2)^2)
#
# It keeps within [-1, 1], is defined at 0/n and n/n, and has coverage close to nominal,
# which is why it (not the Wald interval) is used for gaps between groups.


def newcombe_difference(
    n1: float, d1: float, n2: float, d2: float, confidence: float = 0.95
) -> Interval:
    """Return the difference p1 - p2 with Newcombe's hybrid score interval (method 10).

    Arguments:
        n1: numerator of the first (compared) group.
        d1: denominator of the first group.
        n2: numerator of the second (reference) group.
        d2: denominator of the second group.
        confidence: two-sided confidence level, strictly between 0 and 1.

    Returns:
        Interval(value, lower, upper) for n1/d1 - n2/d2.

    Raises:
        ValueError: naming the argument, under the same rules as `wilson_interval`.

    Examples:
        >>> [round(v, 4) for v in newcombe_difference(56, 70, 48, 80)]  # Newcombe (1998b), Table II
        [0.2, 0.0524, 0.3339]
    """
    _check_proportion("n1", n1, "d1", d1)
    _check_proportion("n2", n2, "d2", d2)
    p1, l1, u1 = wilson_interval(n1, d1, confidence)
    p2, l2, u2 = wilson_interval(n2, d2, confidence)
    difference = p1 - p2
    lower = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Interval(difference, lower, upper)


def newcombe_columns(
    n1: str | pl.Expr,
    d1: str | pl.Expr,
    n2: str | pl.Expr,
    d2: str | pl.Expr,
    confidence: float = 0.95,
) -> list[pl.Expr]:
    """Return expressions for p1 - p2 and its Newcombe hybrid score interval, per row.

    The vectorised twin of `newcombe_difference` (same operations, same numbers).

    Arguments:
        n1: numerator column of the compared group.
        d1: denominator column of the compared group.
        n2: numerator column of the reference group.
        d2: denominator column of the reference group.
        confidence: two-sided confidence level, strictly between 0 and 1.

    Returns:
        Three expressions aliased `gap`, `gap_lower`, `gap_upper`; null where either
        proportion is undefined (a null count or a zero denominator).

    Examples:
        >>> import polars as pl
        >>> frame = pl.DataFrame({"a": [56, 9, 1], "b": [70, 10, 0], "c": [48, 3, 0], "d": [80, 10, 9]})
        >>> frame.select(newcombe_columns("a", "b", "c", "d")).with_columns(pl.all().round(4))
        shape: (3, 3)
        ┌──────┬───────────┬───────────┐
        │ gap  ┆ gap_lower ┆ gap_upper │
        │ ---  ┆ ---       ┆ ---       │
        │ f64  ┆ f64       ┆ f64       │
        ╞══════╪═══════════╪═══════════╡
        │ 0.2  ┆ 0.0524    ┆ 0.3339    │
        │ 0.6  ┆ 0.1705    ┆ 0.809     │
        │ null ┆ null      ┆ null      │
        └──────┴───────────┴───────────┘
    """
    z = _z(confidence)
    p1, l1, u1 = _wilson_exprs(_as_expr(n1), _as_expr(d1), z)
    p2, l2, u2 = _wilson_exprs(_as_expr(n2), _as_expr(d2), z)
    difference = p1 - p2
    lower = difference - ((p1 - l1).pow(2) + (u2 - p2).pow(2)).sqrt()
    upper = difference + ((u1 - p1).pow(2) + (p2 - l2).pow(2)).sqrt()
    return [difference.alias("gap"), lower.alias("gap_lower"), upper.alias("gap_upper")]


# ---------------------------------------------------------------------------
# Byar's method for a count (with exact Poisson limits for small counts).
# ---------------------------------------------------------------------------


def byar_interval(count: float, confidence: float = 0.95) -> Interval:
    """Return a count with its confidence interval: exact Poisson under 10, Byar's otherwise.

    Fingertips technical guidance ("Confidence intervals for counts and rates"; Breslow &
    Day 1987 for Byar's approximation) uses exact Poisson limits, from the chi-squared
    distribution, when the count is under 10 because Byar's approximation is poor there.
    Divide the result by a population (and multiply) for a crude rate's interval.

    Arguments:
        count: the observed number of events (non-negative).
        confidence: two-sided confidence level, strictly between 0 and 1.

    Returns:
        Interval(count, lower, upper).

    Examples:
        >>> [round(v, 3) for v in byar_interval(0)]
        [0.0, 0.0, 3.689]
        >>> [round(v, 2) for v in byar_interval(100)]
        [100.0, 81.36, 121.63]
    """
    _check_count("count", count)
    z = _z(confidence)
    o = float(count)
    if o < 10:
        from scipy.stats import chi2  # lazy: scipy is heavy and only needed here

        alpha = 1 - confidence
        lower = 0.0 if o == 0 else chi2.ppf(alpha / 2, 2 * o) / 2
        upper = chi2.ppf(1 - alpha / 2, 2 * (o + 1)) / 2
        return Interval(o, float(lower), float(upper))
    lower = o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3
    upper = (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * math.sqrt(o + 1))) ** 3
    return Interval(o, lower, upper)
