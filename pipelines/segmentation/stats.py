"""Confidence intervals for the rates a gap table carries (the OHID/PHE Fingertips methods).

Each method has a scalar function (the reference implementation, tested against published
worked values) and a vectorised twin returning polars expressions that the pipeline uses.
The twins perform the same floating-point operations in the same order, so they give the
same numbers as the scalar functions, not merely close ones (a property test checks it).

z is the exact normal quantile from `statistics.NormalDist().inv_cdf` (1.959964 at 95%,
3.090232 at 99.8%), as the Fingertips technical guidance requires, never 1.96.

Only the standard library and polars are imported here; scipy's special functions, which
the exact Poisson limits need, are imported inside `exact_poisson_limits` so importing the
package stays light.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import polars as pl


class Interval(NamedTuple):
    """A point estimate with its lower and upper confidence limits (None where undefined)."""

    value: float | None
    lower: float | None
    upper: float | None


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
    # Squares are written as products: Python's `x ** 2` goes through pow() and can differ
    # from x * x in the last bit, while polars' pow(2) multiplies; the vectorised twin must
    # give the same float, not one a unit in the last place away.
    lower = difference - math.sqrt((p1 - l1) * (p1 - l1) + (u2 - p2) * (u2 - p2))
    upper = difference + math.sqrt((u1 - p1) * (u1 - p1) + (p2 - l2) * (p2 - l2))
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
# Counts and crude rates: Byar's method, exact Poisson limits under 10.
# ---------------------------------------------------------------------------
#
# Fingertips technical guidance, "Rates" (Public Health Technical Guidance, Basic
# statistics), and PHEindicatormethods::phe_rate / byars_lower / byars_upper
# (Breslow & Day 1987 for Byar's approximation):
#
#     O_lower = O (1 - 1/(9 O) - z / (3 sqrt(O)))^3
#     O_upper = (O + 1) (1 - 1/(9 (O + 1)) + z / (3 sqrt(O + 1)))^3
#
# PHEindicatormethods sets a negative Byar lower limit to NA; `byar_interval` returns None
# there (and at O = 0, where the formula is undefined and tends to minus infinity). Crude
# rates use the chi-squared exact limits when O < 10 (chi2(alpha/2, 2O)/2 and
# chi2(1 - alpha/2, 2O + 2)/2; Armitage & Berry 2002) because Byar's approximation is poor
# there. Cubes are written t*t*t in both the scalar and vectorised forms so that the two
# perform identical floating-point operations.

EXACT_POISSON_BELOW = 10


def _byar_lower(o: float, z: float) -> float | None:
    if o <= 0:
        return None
    t = 1.0 - 1.0 / (9.0 * o) - z / (3.0 * math.sqrt(o))
    lower = o * (t * t * t)
    return None if lower < 0 else lower


def _byar_upper(o: float, z: float) -> float:
    u = o + 1.0
    t = 1.0 - 1.0 / (9.0 * u) + z / (3.0 * math.sqrt(u))
    return u * (t * t * t)


def byar_interval(count: float, confidence: float = 0.95) -> Interval:
    """Return a count with its confidence interval by Byar's method.

    Arguments:
        count: the observed number of events (non-negative).
        confidence: two-sided confidence level, strictly between 0 and 1.

    Returns:
        Interval(count, lower, upper); lower is None where Byar's formula goes negative
        (small counts at high confidence) or is undefined (a count of 0), as
        PHEindicatormethods::byars_lower returns NA there.

    Raises:
        ValueError: naming the argument, for a negative count or a confidence outside (0, 1).

    Examples:
        >>> [round(v, 2) for v in byar_interval(100)]
        [100.0, 81.36, 121.63]
        >>> byar_interval(0).lower is None
        True
    """
    _check_count("count", count)
    z = _z(confidence)
    o = float(count)
    return Interval(o, _byar_lower(o, z), _byar_upper(o, z))


def exact_poisson_limits(count: float, confidence: float = 0.95) -> tuple[float, float]:
    """Return the chi-squared exact (Garwood) limits for a Poisson count.

    Examples:
        >>> [round(v, 4) for v in exact_poisson_limits(0)]
        [0.0, 3.6889]
    """
    _check_count("count", count)
    _z(confidence)
    # The chi-squared quantile with 2o degrees of freedom, halved, is the gamma quantile of
    # shape o: chi2.ppf(p, 2o) / 2 = gammaincinv(o, p), which is how scipy.stats computes it
    # (chi2._ppf is 2 * gammaincinv(df / 2, p)), so the limits are the same numbers to the
    # last bit. Lazy, and scipy.special rather than scipy.stats: importing scipy.stats cost a
    # monthly run 1-2.5 s, scipy.special a third of that.
    from scipy.special import gammaincinv

    alpha = 1.0 - confidence
    o = float(count)
    lower = 0.0 if o == 0 else float(gammaincinv(o, alpha / 2.0))
    upper = float(gammaincinv(o + 1.0, 1.0 - alpha / 2.0))
    return lower, upper


def rate_interval(count: float, denominator: float, multiplier: float = 100000, confidence: float = 0.95) -> Interval:
    """Return a crude rate with its confidence interval (Fingertips method).

    Byar's method for counts of 10 or more, chi-squared exact limits below 10, each limit
    divided by the denominator and multiplied, as PHEindicatormethods::phe_rate does.

    Arguments:
        count: observed events (non-negative).
        denominator: population or person-years at risk (greater than 0).
        multiplier: the rate's scale, e.g. 100000 for "per 100,000".
        confidence: two-sided confidence level, strictly between 0 and 1.

    Returns:
        Interval(rate, lower, upper); lower is None only where Byar's lower limit is
        negative (possible only at extreme confidence levels).

    Raises:
        ValueError: naming the argument, for a negative count, a denominator that is not
            positive, or a confidence outside (0, 1).

    Examples:
        >>> [round(v, 2) for v in rate_interval(100, 50000)]
        [200.0, 162.72, 243.26]
        >>> [round(v, 2) for v in rate_interval(5, 50000)]
        [10.0, 3.25, 23.34]
    """
    _check_count("count", count)
    _check_count("denominator", denominator)
    if denominator == 0:
        raise ValueError("denominator must be greater than 0: a rate over no population is undefined")
    z = _z(confidence)
    o, n = float(count), float(denominator)
    if o < EXACT_POISSON_BELOW:
        lower, upper = exact_poisson_limits(o, confidence)
    else:
        lower, upper = _byar_lower(o, z), _byar_upper(o, z)
    return Interval(
        o / n * multiplier,
        None if lower is None else lower / n * multiplier,
        upper / n * multiplier,
    )


def _byar_exprs(o: pl.Expr, z: float) -> tuple[pl.Expr, pl.Expr]:
    t = pl.lit(1.0) - pl.lit(1.0) / (pl.lit(9.0) * o) - pl.lit(z) / (pl.lit(3.0) * o.sqrt())
    raw_lower = o * (t * t * t)
    lower = pl.when((o > 0) & (raw_lower >= 0)).then(raw_lower)
    u = o + pl.lit(1.0)
    tu = pl.lit(1.0) - pl.lit(1.0) / (pl.lit(9.0) * u) + pl.lit(z) / (pl.lit(3.0) * u.sqrt())
    return lower, u * (tu * tu * tu)


def rate_columns(
    count: str | pl.Expr, denominator: str | pl.Expr, multiplier: float = 100000, confidence: float = 0.95
) -> list[pl.Expr]:
    """Return expressions for a crude rate and its interval, one value per row.

    The vectorised twin of `rate_interval`. Counts under 10 take their exact limits from a
    table of the ten possible whole counts computed by `exact_poisson_limits` itself, so the
    two forms agree exactly; a non-integer count under 10 (not a count) gives null limits.

    Returns:
        Expressions aliased `rate`, `rate_lower`, `rate_upper`; null where the count is
        null or negative or the denominator is not positive.

    Examples:
        >>> import polars as pl
        >>> frame = pl.DataFrame({"o": [100, 5, None], "n": [50000, 50000, 10]})
        >>> frame.select(rate_columns("o", "n")).with_columns(pl.all().round(2)).rows()
        [(200.0, 162.72, 243.26), (10.0, 3.25, 23.34), (None, None, None)]
    """
    z = _z(confidence)
    o = _as_expr(count).cast(pl.Float64)
    n = _as_expr(denominator).cast(pl.Float64)
    exact = {k: exact_poisson_limits(k, confidence) for k in range(EXACT_POISSON_BELOW)}
    byar_lower, byar_upper = _byar_exprs(o, z)
    lower, upper = pl.when(o >= EXACT_POISSON_BELOW).then(byar_lower), pl.when(o >= EXACT_POISSON_BELOW).then(byar_upper)
    for k, (low, up) in exact.items():
        lower = lower.when(o == k).then(pl.lit(low))
        upper = upper.when(o == k).then(pl.lit(up))
    valid = (o >= 0) & (n > 0)
    scale = pl.lit(float(multiplier))
    return [
        pl.when(valid).then(o / n * scale).alias("rate"),
        pl.when(valid).then(lower / n * scale).alias("rate_lower"),
        pl.when(valid).then(upper / n * scale).alias("rate_upper"),
    ]


# ---------------------------------------------------------------------------
# Directly standardised rates: Dobson limits, European Standard Population 2013.
# ---------------------------------------------------------------------------
#
# The 2013 European Standard Population in 19 five-year bands, 0-4 ... 85-89 and 90+, as
# published by Eurostat ("Revision of the European Standard Population: report of
# Eurostat's task force", 2013 edition, KS-RA-13-028-EN) with age 0 and 1-4 combined and
# 90-94 and 95+ combined, exactly as PHEindicatormethods' `esp2013` data set. Sums to
# 100,000.
#
# Dobson et al. (1991) "Confidence intervals for weighted sums of Poisson parameters",
# Stat Med 10:457-62, as PHEindicatormethods::phe_dsr computes it (Byar's limits for the
# total count O, not shown when O < 10):
#
#     DSR      = sum(w_i x_i / n_i) / sum(w_i) * multiplier
#     var(DSR) = sum(x_i (w_i / n_i)^2) / sum(w_i)^2
#     limit    = DSR + sqrt(var(DSR) / O) * (O_limit - O) * multiplier

ESP2013_BANDS: tuple[str, ...] = (
    "0-4", "5-9", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49",
    "50-54", "55-59", "60-64", "65-69", "70-74", "75-79", "80-84", "85-89", "90+",
)
ESP2013: tuple[int, ...] = (
    5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
    7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000,
)
DSR_MINIMUM_COUNT = 10


def dsr_interval(
    counts,
    populations,
    standard_populations,
    multiplier: float = 100000,
    confidence: float = 0.95,
) -> Interval:
    """Return a directly standardised rate with Dobson confidence limits.

    Arguments:
        counts: events per standardisation band; None means no events in that band (0).
        populations: the local population of each band (each greater than 0).
        standard_populations: the standard population of each band, e.g. `ESP2013`.
        multiplier: the rate's scale, e.g. 100000.
        confidence: two-sided confidence level, strictly between 0 and 1.

    Returns:
        Interval(dsr, lower, upper); all three None when the total count is under 10 (the
        Fingertips rule: a DSR on fewer than 10 events is not shown).

    Raises:
        ValueError: naming the argument, for sequences of different lengths, a negative
            count, a population that is not positive or a confidence outside (0, 1).

    Examples:
        >>> [round(v, 3) for v in dsr_interval([10, 20], [1000, 2000], [1, 1], multiplier=1000)]
        [10.0, 6.548, 14.536]
        >>> dsr_interval([3, 4], [1000, 2000], [1, 1])
        Interval(value=None, lower=None, upper=None)
    """
    counts, populations, standard = list(counts), list(populations), list(standard_populations)
    if not (len(counts) == len(populations) == len(standard)) or not counts:
        raise ValueError(
            "counts, populations and standard_populations must be non-empty and of equal length; "
            f"got {len(counts)}, {len(populations)} and {len(standard)}"
        )
    z = _z(confidence)
    x = [0.0 if c is None else c for c in counts]
    for i, c in enumerate(x):
        _check_count(f"counts[{i}]", c)
    for i, (n, w) in enumerate(zip(populations, standard)):
        _check_count(f"populations[{i}]", n)
        _check_count(f"standard_populations[{i}]", w)
        if n == 0:
            raise ValueError(f"populations[{i}] must be greater than 0: a band with no population has no rate")
    weighted = 0.0
    squared = 0.0
    total_standard = 0.0
    total = 0.0
    for xi, ni, wi in zip(x, populations, standard):
        ratio = float(wi) / float(ni)
        weighted = weighted + float(xi) * ratio
        squared = squared + float(xi) * (ratio * ratio)
        total_standard = total_standard + float(wi)
        total = total + float(xi)
    if total < DSR_MINIMUM_COUNT:
        return Interval(None, None, None)
    value = weighted / total_standard * multiplier
    spread = math.sqrt(squared / (total_standard * total_standard) / total)
    lower = _byar_lower(total, z)
    return Interval(
        value,
        None if lower is None else value + spread * (lower - total) * multiplier,
        value + spread * (_byar_upper(total, z) - total) * multiplier,
    )


def dsr_columns(
    count: str,
    population: str,
    standard_population: str,
    multiplier: float = 100000,
    confidence: float = 0.95,
) -> list[pl.Expr]:
    """Return aggregation expressions for a DSR with Dobson limits, one value per group.

    The vectorised twin of `dsr_interval`, for `group_by(...).agg(...)` over one row per
    group and band, rows in band order. Sums are running sums taken in row order
    (`cum_sum().last()`), the order `dsr_interval` adds in, so the two agree exactly.

    Returns:
        Expressions aliased `total_count`, `dsr`, `dsr_lower`, `dsr_upper` (null when the
        total count is under 10).

    Examples:
        >>> import polars as pl
        >>> frame = pl.DataFrame({"area": ["a", "a"], "x": [10, 20], "n": [1000, 2000], "w": [1, 1]})
        >>> frame.group_by("area").agg(dsr_columns("x", "n", "w", multiplier=1000)).select(
        ...     pl.col("dsr", "dsr_lower", "dsr_upper").round(3)).rows()
        [(10.0, 6.548, 14.536)]
    """
    z = _z(confidence)
    x = pl.col(count).cast(pl.Float64).fill_null(0.0)
    ratio = pl.col(standard_population).cast(pl.Float64) / pl.col(population).cast(pl.Float64)
    weighted = (x * ratio).cum_sum().last()
    squared = (x * (ratio * ratio)).cum_sum().last()
    total_standard = pl.col(standard_population).cast(pl.Float64).cum_sum().last()
    total = x.cum_sum().last()
    shown = total >= DSR_MINIMUM_COUNT
    value = weighted / total_standard * pl.lit(float(multiplier))
    spread = (squared / (total_standard * total_standard) / total).sqrt()
    lower, upper = _byar_exprs(total, z)
    scale = pl.lit(float(multiplier))
    return [
        total.alias("total_count"),
        pl.when(shown).then(value).alias("dsr"),
        pl.when(shown).then(value + spread * (lower - total) * scale).alias("dsr_lower"),
        pl.when(shown).then(value + spread * (upper - total) * scale).alias("dsr_upper"),
    ]


# ---------------------------------------------------------------------------
# Slope and relative index of inequality (PHEindicatormethods::phe_sii).
# ---------------------------------------------------------------------------
#
# Low & Low (2004) "Measuring the gap: quantifying and comparing local health
# inequalities", J Public Health 26:388-395, as PHEindicatormethods 2.x implements it
# (R/SII_function.R phe_sii and R/utils.R SimulationFunc, read at the 2.0.2.9001 sources,
# the code the 2.1.0 release carries):
#
# - Rank: quantiles are ordered 1 (most deprived) upwards; a_i is quantile i's share of
#   the population and its relative rank b_i the midpoint of its band of the cumulative
#   share (12% then 10% of the population give ranks 0.06 and 0.17).
# - Fit: Y_i sqrt(a_i) = beta0 sqrt(a_i) + beta1 b_i sqrt(a_i) by least squares (the
#   no-constant fit on sqrt(a)-scaled terms is population-weighted regression).
# - Analysis scale g, fixed by the value type and never by `transform`: identity for
#   "normal", log for "rate", logit for "proportion". A standard error lives on g: from 95%
#   limits, se = (g(upper) - g(lower)) / (2 x 1.959964). f is g's inverse.
# - transform = False: the fit is on the values; SII = beta1 x multiplier (the fitted value
#   at rank 1 minus rank 0) and RII = (beta0 + beta1) / beta0. Limits by simulation: each
#   draw takes every quantile's g-value from Normal(g(value), se), maps it back with f,
#   refits, and keeps multiplier x slope and the RII; limits are the sorted draws at
#   positions round(R (1 - c)) and round(R c), c = confidence + (1 - confidence) / 2.
# - transform = True (rates and proportions only): the fit is on g(value); y0 = f(beta0),
#   y1 = f(beta0 + beta1), SII = (y1 - y0) x multiplier and RII = y1 / y0. The draws stay on
#   g, each is refitted and its slope kept; the slope's limits s are mapped back around the
#   transformed midpoint m = beta0 + beta1 / 2: x0 = m - s/2, x1 = m + s/2, SII limit =
#   (f(x1) - f(x0)) x multiplier, RII limit = f(x1) / f(x0). Both are monotone in s, so
#   each pair is put in order (PHE swaps them for a negative multiplier; its rate branch
#   tests `multiplier < 1`, which would also swap them for a multiplier between 0 and 1 --
#   a slip we do not copy).
# - A negative multiplier reverses the SII and inverts the RII (1 / RII) and their limits.
#
# Draws use numpy's PCG64 generator from `seed`, so results are reproducible from the
# recorded seed but are not R's draws: limits agree with the R package to within
# simulation error, not digit for digit.

VALUE_TYPES = ("normal", "rate", "proportion")
ANALYSIS_SCALES = {"normal": "identity", "rate": "log", "proportion": "logit"}


class InequalityIndices(NamedTuple):
    """The slope and relative index of inequality with their simulated confidence limits."""

    sii: float
    sii_lower: float
    sii_upper: float
    rii: float
    rii_lower: float
    rii_upper: float


def relative_ranks(populations) -> list[float]:
    """Return each quantile's rank: the midpoint of its band of cumulative population share.

    Populations are in quantile order (quantile 1, the most deprived, first).

    Examples:
        >>> [round(r, 2) for r in relative_ranks([12, 10, 78])]  # the phe_sii documentation's example
        [0.06, 0.17, 0.61]
    """
    total = float(sum(populations))
    ranks, cumulative = [], 0.0
    for p in populations:
        share = float(p) / total
        ranks.append(cumulative + share / 2.0)
        cumulative = cumulative + share
    return ranks


def _check_value_type(value_type: str) -> None:
    if value_type not in VALUE_TYPES:
        raise ValueError(f"value_type must be one of {list(VALUE_TYPES)}; got {value_type!r}")


def _on_analysis_scale(value_type: str, name: str, value: float) -> float:
    """Return g(value) for the value type, or raise naming the value the scale cannot take."""
    if value_type == "rate":
        if not value > 0:
            raise ValueError(
                f"{name} must be greater than 0 for value_type 'rate': the PHE method takes a rate's standard "
                f"error and draws on the log scale; got {value!r}"
            )
        return math.log(value)
    if value_type == "proportion":
        if not 0 < value < 1:
            raise ValueError(
                f"{name} must be strictly between 0 and 1 for value_type 'proportion': the PHE method takes a "
                f"proportion's standard error and draws on the logit scale; got {value!r}"
            )
        return math.log(value / (1.0 - value))
    return float(value)


def _from_analysis_scale(value_type: str, x):
    """Return f(x), the inverse of the analysis scale, elementwise on numpy arrays or floats."""
    import numpy as np

    if value_type == "rate":
        return np.exp(x)
    if value_type == "proportion":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-x))
    return x


def _draws(seed, loc, scale, repetitions: int):
    """Return `repetitions` x k draws from Normal(loc, scale): numpy's `Generator.normal`, made faster.

    `default_rng(seed).normal(loc, scale, size)` draws each standard normal z of the stream in
    order and returns loc + scale * z; one fill of standard normals scaled and shifted in place
    is the same numbers to the bit (tests/unit/test_stats.py holds the two equal), at about
    half the time and without the temporaries.
    """
    import numpy as np

    draws = np.random.default_rng(seed).standard_normal(size=(repetitions, len(loc)))
    draws *= scale
    draws += loc
    return draws


def _from_analysis_scale_in_place(value_type: str, x) -> None:
    """Overwrite the numpy array x with f(x), the same numbers `_from_analysis_scale` returns."""
    import numpy as np

    if value_type == "rate":
        np.exp(x, out=x)
    elif value_type == "proportion":
        with np.errstate(over="ignore"):
            np.negative(x, out=x)
            np.exp(x, out=x)
        x += 1.0
        np.divide(1.0, x, out=x)


def _check_inequality_inputs(quantiles, populations, values, standard_errors, value_type, transform, multiplier,
                             repetitions):
    k = len(quantiles)
    if not (k == len(populations) == len(values) == len(standard_errors)):
        raise ValueError(
            "quantiles, populations, values and standard_errors must have equal lengths; got "
            f"{k}, {len(populations)}, {len(values)} and {len(standard_errors)}"
        )
    if not 5 <= k <= 100:
        raise ValueError(f"quantiles must number between 5 and 100 (the PHE method's range); got {k}")
    if len(set(quantiles)) != k:
        raise ValueError("quantiles must be distinct (one row per quantile)")
    _check_value_type(value_type)
    if not isinstance(transform, bool):
        raise ValueError(f"transform must be True or False; got {transform!r}")
    if transform and value_type == "normal":
        raise ValueError("transform=True needs value_type 'rate' or 'proportion' (PHE: a 'normal' value has no scale to fit on)")
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not math.isfinite(multiplier) or multiplier == 0:
        raise ValueError(f"multiplier must be a non-zero number (negative reverses the SII); got {multiplier!r}")
    if isinstance(repetitions, bool) or not isinstance(repetitions, int) or repetitions < 1000:
        raise ValueError(f"repetitions must be a whole number of at least 1000 (the PHE minimum); got {repetitions!r}")
    for name, seq in (("populations", populations), ("values", values), ("standard_errors", standard_errors)):
        for i, v in enumerate(seq):
            if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                raise ValueError(f"{name}[{i}] must be a number; got {v!r}")
    for i, p in enumerate(populations):
        if p <= 0:
            raise ValueError(f"populations[{i}] must be greater than 0: every quantile needs a population")
    for i, se in enumerate(standard_errors):
        if se < 0 or math.isinf(se):
            raise ValueError(f"standard_errors[{i}] must be a finite number of at least 0")
    for i, v in enumerate(values):
        if value_type == "proportion" and not 0 <= v <= 1:
            raise ValueError(f"values[{i}] must be a proportion between 0 and 1 for value_type 'proportion'")
        _on_analysis_scale(value_type, f"values[{i}]", v)


def inequality_indices(
    quantiles,
    populations,
    values,
    standard_errors,
    value_type: str = "normal",
    transform: bool = False,
    multiplier: float = 1,
    confidence: float = 0.95,
    repetitions: int = 100000,
    seed: int | None = None,
) -> InequalityIndices:
    """Return the SII and RII with simulated confidence limits (the PHE method, phe_sii 2.x).

    Arguments:
        quantiles: quantile labels, 1 = most deprived (any order; rows are sorted by it).
        populations: each quantile's population (greater than 0).
        values: each quantile's indicator value: a rate (> 0) for "rate", a proportion
            strictly between 0 and 1 for "proportion" (their analysis scales, log and logit,
            have no value at 0 or 1).
        standard_errors: each value's standard error ON THE ANALYSIS SCALE of `value_type`
            (identity, log, logit), whatever `transform` says: use
            `standard_error_from_limits(lower, upper, value_type)` for 95% limits.
        value_type: "normal", "rate" or "proportion".
        transform: fit on the analysis scale and back-transform (rates and proportions only).
        multiplier: scale of the SII, e.g. 100 for percentage points; negative reverses the
            direction of the SII and inverts the RII.
        confidence: two-sided confidence level of the SII/RII limits, strictly between 0 and 1.
        repetitions: number of simulated draws (at least 1000; PHE default 100,000).
        seed: seed of the random generator; record it to reproduce the limits.

    Returns:
        InequalityIndices(sii, sii_lower, sii_upper, rii, rii_lower, rii_upper).

    Raises:
        ValueError: naming the argument, for inputs the method cannot use.

    Examples:
        >>> # values exactly linear in rank: 0.5 at rank 0 rising to 0.8 at rank 1
        >>> pops = [100, 100, 100, 100, 100]
        >>> vals = [0.5 + 0.3 * r for r in relative_ranks(pops)]
        >>> out = inequality_indices([1, 2, 3, 4, 5], pops, vals, [0.01] * 5, seed=1, repetitions=1000)
        >>> round(out.sii, 10), round(out.rii, 10), out.sii_lower < out.sii < out.sii_upper
        (0.3, 1.6, True)
        >>> # odds doubling from quintile to quintile: linear on the logit scale, so with
        >>> # transform the fitted ends are odds 0.25 / sqrt(2) and 4 sqrt(2): RII = 4 sqrt(2)
        >>> props = [0.2, 1 / 3, 0.5, 2 / 3, 0.8]
        >>> out = inequality_indices([1, 2, 3, 4, 5], pops, props, [0.1] * 5, "proportion", True, seed=1, repetitions=1000)
        >>> round(out.rii, 6), round(4 * 2 ** 0.5, 6)
        (5.656854, 5.656854)
    """
    quantiles, populations = list(quantiles), list(populations)
    values, standard_errors = list(values), list(standard_errors)
    _check_inequality_inputs(quantiles, populations, values, standard_errors, value_type, transform, multiplier,
                             repetitions)
    _z(confidence)  # validates confidence
    import numpy as np  # lazy, like scipy: keeps `import pipelines` light

    order = sorted(range(len(quantiles)), key=lambda i: quantiles[i])
    pops = np.array([float(populations[i]) for i in order])
    y = np.array([float(values[i]) for i in order])
    y_g = np.array([_on_analysis_scale(value_type, "value", float(values[i])) for i in order])
    se = np.array([float(standard_errors[i]) for i in order])
    sqrt_a = np.sqrt(pops / pops.sum())
    b = np.array(relative_ranks(pops.tolist()))
    design = np.vstack([sqrt_a, b * sqrt_a])  # 2 x k, the transpose of X
    solver = np.linalg.solve(design @ design.T, design)  # (X'X)^-1 X'
    inverted = multiplier < 0

    draws = _draws(seed, y_g, se, repetitions)
    critical = confidence + (1.0 - confidence) / 2.0
    low = max(int(round(repetitions * (1.0 - critical))), 1) - 1  # R's 1-based positions
    high = min(int(round(repetitions * critical)), repetitions) - 1
    # Only the two order statistics are read: a partition puts exactly the values a full sort
    # would at `low` and `high` (NaN last, as np.sort), in linear time.
    positions = sorted({low, high})

    if transform:
        beta0, beta1 = solver @ (y_g * sqrt_a)
        midpoint = beta0 + beta1 / 2.0
        draws *= sqrt_a
        slopes = np.partition((draws @ solver.T)[:, 1], positions)

        def back_transformed(slope: float) -> tuple[float, float]:
            lower_end = float(_from_analysis_scale(value_type, midpoint - slope / 2.0))
            upper_end = float(_from_analysis_scale(value_type, midpoint + slope / 2.0))
            ratio = upper_end / lower_end
            return (upper_end - lower_end) * multiplier, 1.0 / ratio if inverted else ratio

        sii, rii = back_transformed(beta1)
        (sii_a, rii_a), (sii_b, rii_b) = back_transformed(slopes[low]), back_transformed(slopes[high])
        sii_lower, sii_upper = sorted((sii_a, sii_b))
        rii_lower, rii_upper = sorted((rii_a, rii_b))
        return InequalityIndices(float(sii), sii_lower, sii_upper, float(rii), rii_lower, rii_upper)

    beta0, beta1 = solver @ (y * sqrt_a)
    sii = multiplier * beta1
    rii = (beta0 + beta1) / beta0
    _from_analysis_scale_in_place(value_type, draws)
    draws *= sqrt_a
    params = draws @ solver.T  # repetitions x 2
    sii_draws = np.partition(multiplier * params[:, 1], positions)
    rii_draws = (params[:, 0] + params[:, 1]) / params[:, 0]
    if inverted:
        rii, rii_draws = 1.0 / rii, 1.0 / rii_draws
    rii_draws = np.partition(rii_draws, positions)
    return InequalityIndices(
        float(sii), float(sii_draws[low]), float(sii_draws[high]),
        float(rii), float(rii_draws[low]), float(rii_draws[high]),
    )


def standard_error_from_limits(lower: float, upper: float, value_type: str = "normal", confidence: float = 0.95) -> float:
    """Return the standard error on the analysis scale implied by confidence limits, as phe_sii derives it.

    (g(upper) - g(lower)) / (2 z), with g the identity ("normal"), log ("rate") or logit
    ("proportion"). PHE takes rates' and proportions' standard errors on those scales
    whether or not the SII itself is transformed; `confidence` is that of the limits
    given (phe_sii fixes it at 95%).

    Examples:
        >>> round(standard_error_from_limits(72.7, 79.1), 4)
        1.6327
        >>> round(standard_error_from_limits(0.2, 0.5, "proportion"), 4)  # (logit 0.5 - logit 0.2) / 3.919928
        0.3537
    """
    z = _z(confidence)
    _check_value_type(value_type)
    if value_type != "normal" and not lower <= upper:
        raise ValueError(f"lower ({lower!r}) must not exceed upper ({upper!r})")
    return (_on_analysis_scale(value_type, "upper", upper) - _on_analysis_scale(value_type, "lower", lower)) / z / 2.0


def sii_polarity(direction: str | None, multiplier: float = 1) -> str:
    """Return what the sign of an indicator's SII means, in one sentence an analyst can quote.

    The SII is (fitted value at the least deprived end - at the most deprived end) x
    multiplier and the RII is their ratio (inverted for a negative multiplier), so a
    positive SII and an RII above 1 point the same way; whether that way is worse for the
    most deprived depends on the indicator's direction.

    Arguments:
        direction: "higher_is_better", "lower_is_better", or None / anything else for an
            indicator without a direction.
        multiplier: the multiplier the SII was computed with (its sign matters).

    Examples:
        >>> sii_polarity("higher_is_better")
        'A positive SII (RII above 1) means the indicator is higher in the least deprived than in the most deprived; higher is better for this indicator, so a positive SII means the most deprived fare worse and a negative SII that they fare better.'
        >>> sii_polarity("lower_is_better", -100).split("; ")[1]
        'lower is better for this indicator, so a positive SII means the most deprived fare worse and a negative SII that they fare better.'
    """
    if multiplier < 0:
        gradient = ("higher in the most deprived than in the least deprived (the SII is multiplied by a negative "
                    "number, which reverses its sign and inverts the RII)")
        positive_is_higher_in_least = False
    else:
        gradient = "higher in the least deprived than in the most deprived"
        positive_is_higher_in_least = True
    opening = f"A positive SII (RII above 1) means the indicator is {gradient}; "
    if direction not in ("higher_is_better", "lower_is_better"):
        return opening + "no direction is set for this indicator, so the SII shows a gradient, not better or worse."
    higher_is_better = direction == "higher_is_better"
    worse = positive_is_higher_in_least == higher_is_better
    verdict = ("the most deprived fare worse and a negative SII that they fare better" if worse
               else "the most deprived fare better and a negative SII that they fare worse")
    better_word = "higher" if higher_is_better else "lower"
    return opening + f"{better_word} is better for this indicator, so a positive SII means {verdict}."


def _group_constant(group: pl.DataFrame, setting, name: str):
    """Return a per-call setting, or the single value an expression takes within one group."""
    if not isinstance(setting, pl.Expr):
        return setting
    found = group.select(setting.alias("_setting"))["_setting"].unique().to_list()
    if len(found) != 1:
        raise ValueError(f"inequality_table: {name} must take one value per group; got {found}")
    return found[0]


def inequality_table(
    frame: pl.DataFrame,
    by: list[str],
    *,
    quantile: str = "quantile",
    population: str = "population",
    value: str = "value",
    standard_error: str | None = "standard_error",
    lower: str | None = None,
    upper: str | None = None,
    seed: str = "seed",
    value_type: str | pl.Expr = "normal",
    transform: bool | pl.Expr = False,
    multiplier: float | pl.Expr = 1,
    confidence: float = 0.95,
    limits_confidence: float = 0.95,
    repetitions: int = 100000,
) -> pl.DataFrame:
    """Return one row of SII/RII per group of `by`: the frame-level twin of `inequality_indices`.

    Each group's rows (one per quantile) and its own seed column go through
    `inequality_indices`, so a group's figures are exactly those of the scalar call with
    the same inputs and seed, whatever the order of the frame's rows. The simulation itself
    is vectorised over draws; groups are few (indicator x month x vintage x quantile type).

    Arguments:
        standard_error: column of standard errors on the analysis scale; or None and give
            `lower` / `upper`, columns of the values' confidence limits (at
            `limits_confidence`), from which each standard error is taken on the analysis
            scale by `standard_error_from_limits`.
        value_type, transform, multiplier: one setting for every group, or an expression
            (e.g. `pl.col("value_type")`) that is constant within each group, so each
            indicator can carry its own.

    Returns:
        `by` columns, then sii, sii_lower, sii_upper, rii, rii_lower, rii_upper, sorted by `by`.

    Examples:
        >>> import polars as pl
        >>> f = pl.DataFrame({"g": ["a"] * 5, "quantile": [5, 4, 3, 2, 1], "population": [100] * 5,
        ...     "value": [0.8, 0.8, 0.8, 0.8, 0.8], "standard_error": [0.0] * 5, "seed": [1] * 5})
        >>> inequality_table(f, ["g"], repetitions=1000).select("g", pl.col("sii", "rii").round(12)).rows()
        [('a', -0.0, 1.0)]
    """
    if standard_error is None and (lower is None or upper is None):
        raise ValueError("inequality_table: give a standard_error column, or both lower and upper limit columns")
    out_schema = {c: frame.schema[c] for c in by} | {
        name: pl.Float64 for name in InequalityIndices._fields
    }
    rows = []
    for key, group in frame.sort(quantile).group_by(by, maintain_order=True):
        seeds = group[seed].unique().to_list()
        if len(seeds) != 1:
            raise ValueError(f"inequality_table: column {seed!r} must hold one seed per group")
        kind = _group_constant(group, value_type, "value_type")
        if standard_error is not None:
            errors = group[standard_error].to_list()
        else:
            errors = [standard_error_from_limits(lo, up, kind, limits_confidence)
                      for lo, up in zip(group[lower].to_list(), group[upper].to_list())]
        result = inequality_indices(
            group[quantile].to_list(), group[population].to_list(), group[value].to_list(), errors,
            value_type=kind, transform=bool(_group_constant(group, transform, "transform")),
            multiplier=float(_group_constant(group, multiplier, "multiplier")), confidence=confidence,
            repetitions=repetitions, seed=seeds[0],
        )
        rows.append((*key, *result))
    return pl.DataFrame(rows, schema=out_schema, orient="row").sort(by)
