"""SII/RII against worked examples derived by hand from the documented PHE method.

Every expected number here is written out from the method in ../shared/DOMAIN.md section 5
(PHEindicatormethods 2.x `phe_sii`: rank, population-weighted fit, standard errors on the
analysis scale g, simulation on g, back-transformation around the transformed midpoint),
with the arithmetic in the comments. None is obtained by calling the function under test.
The published vignette checks are in test_stats_published.py; these cover every value type
x transform x multiplier sign, with data chosen so the fit and the limits have closed forms.

Five equal quintiles (population 100 each): every share a_i = 0.2, ranks b = 0.1, 0.3, 0.5,
0.7, 0.9, so the weighted fit is ordinary least squares on b with mean rank 0.5 and
sum (b - 0.5)^2 = 0.4:

    slope      = sum c_i y_i,  c = (b - 0.5) / 0.4          = (-1, -1/2, 0, 1/2, 1)
    intercept  = sum d_i y_i,  d = 1/5 - 0.5 c              = (0.7, 0.45, 0.2, -0.05, -0.3)
    fitted(1)  = sum e_i y_i,  e = d + c                    = (-0.3, -0.05, 0.2, 0.45, 0.7)

A simulated limit is an order statistic of R draws. For a limit h(q) of a normal quantile q
(SD sigma), the order statistic's SD is |h'(q)| x 2.671 sigma / sqrt(R) at the 2.5% and
97.5% points (sqrt(p(1 - p)) / phi(z_p)); limits are checked to 4 such SDs.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import polars as pl
import pytest

from pipelines.segmentation.stats import (
    inequality_indices,
    inequality_table,
    sii_polarity,
    standard_error_from_limits,
)

Z = NormalDist().inv_cdf(0.975)  # 1.959964
QUINTILES = [1, 2, 3, 4, 5]
EQUAL = [100] * 5
C = (-1.0, -0.5, 0.0, 0.5, 1.0)
D = (0.7, 0.45, 0.2, -0.05, -0.3)
E = (-0.3, -0.05, 0.2, 0.45, 0.7)
R = 200_000
ORDER_SD = math.sqrt(0.025 * 0.975) / NormalDist().pdf(Z)  # 2.671


def expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def within_simulation_error(ours: float, h, q: float, sigma: float) -> None:
    """Assert `ours` is h(q) to 4 SDs of the order statistic (h' by central difference)."""
    step = 1e-6 * max(1.0, abs(q))
    slope = abs(h(q + step) - h(q - step)) / (2 * step)
    tolerance = 4 * slope * ORDER_SD * sigma / math.sqrt(R)
    assert abs(ours - h(q)) <= tolerance, (ours, h(q), tolerance)


# ---------------------------------------------------------------------------
# normal: fit on the values, standard errors and draws on the value scale
# ---------------------------------------------------------------------------


def test_normal_point_estimates_with_unequal_populations_by_hand():
    # Populations 200, 100, 100, 100, 500: shares a = .2, .1, .1, .1, .5; ranks (midpoints
    # of the cumulative share) b = .1, .25, .35, .45, .75; weighted mean rank sum a b = .5.
    #   S_bb = sum a (b - .5)^2 = .2(.16) + .1(.0625) + .1(.0225) + .1(.0025) + .5(.0625) = .072
    #   y = 30, 40, 44, 50, 60:
    #   S_by = sum a (b - .5) y = -2.4 - 1 - .66 - .25 + 7.5 = 3.19
    #   slope = 3.19 / .072 = 1595/36;  weighted mean y = 6 + 4 + 4.4 + 5 + 30 = 49.4
    #   intercept = 49.4 - .5 x 1595/36 = 1961.8/72;  RII = (1961.8 + 3190) / 1961.8
    out = inequality_indices(QUINTILES, [200, 100, 100, 100, 500], [30, 40, 44, 50, 60], [1] * 5,
                             repetitions=1000, seed=1)
    assert out.sii == pytest.approx(1595 / 36, rel=1e-12)
    assert out.rii == pytest.approx(5151.8 / 1961.8, rel=1e-12)


@pytest.mark.parametrize("multiplier", [1, -1])
def test_normal_sii_and_rii_with_their_limits_by_hand(multiplier):
    # y = 60, 64, 70, 72, 84: slope = -60 - 32 + 0 + 36 + 84 = 28; intercept = 70 - 14 = 56;
    # fitted(1) = 84. SII = 28, RII = 84 / 56 = 1.5 (x -1: SII -28, RII 2/3).
    # se = 2 each on the identity scale: the simulated slope is sum c_i Y_i, normal with
    # SD 2 sqrt(1 + 1/4 + 0 + 1/4 + 1) = sqrt(10): limits 28 -/+ 1.959964 sqrt(10).
    # The simulated RII is F1 / F0 with F1 = sum e_i Y_i, F0 = sum d_i Y_i jointly normal:
    # Var F0 = 4 sum d^2 = 3.3, Var F1 = 4 sum e^2 = 3.3, Cov = 4 sum d e = -1.7 (F0 is
    # 56 / sqrt(3.3) = 31 SDs above 0). Its quantile r solves (Fieller)
    # (84 - 56 r)^2 = z^2 (3.3 - 2 r (-1.7) + 3.3 r^2), the root below 1.5 for the lower
    # limit and above for the upper.
    out = inequality_indices(QUINTILES, EQUAL, [60, 64, 70, 72, 84], [2] * 5, multiplier=multiplier,
                             repetitions=R, seed=101)
    sd = math.sqrt(10)
    a = 56**2 - Z**2 * 3.3
    b = -2 * 84 * 56 - Z**2 * 3.4
    c = 84**2 - Z**2 * 3.3
    root_low = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
    root_high = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    assert root_low < 1.5 < root_high
    if multiplier > 0:
        assert out.sii == pytest.approx(28, rel=1e-12) and out.rii == pytest.approx(1.5, rel=1e-12)
        within_simulation_error(out.sii_lower, lambda q: q, 28 - Z * sd, sd)
        within_simulation_error(out.sii_upper, lambda q: q, 28 + Z * sd, sd)
        expected_rii = (root_low, root_high)
    else:
        assert out.sii == pytest.approx(-28, rel=1e-12) and out.rii == pytest.approx(2 / 3, rel=1e-12)
        within_simulation_error(out.sii_lower, lambda q: q, -28 - Z * sd, sd)
        within_simulation_error(out.sii_upper, lambda q: q, -28 + Z * sd, sd)
        expected_rii = (1 / root_high, 1 / root_low)
    # The RII quantile's own simulation error: its SD is about the interval's half-width / z
    # times the order-statistic factor; 4 of those.
    rii_tolerance = 4 * ORDER_SD * (expected_rii[1] - expected_rii[0]) / (2 * Z) / math.sqrt(R)
    assert out.rii_lower == pytest.approx(expected_rii[0], abs=rii_tolerance)
    assert out.rii_upper == pytest.approx(expected_rii[1], abs=rii_tolerance)


def test_a_normal_value_cannot_be_transformed():
    with pytest.raises(ValueError, match="transform=True needs value_type 'rate' or 'proportion'"):
        inequality_indices(QUINTILES, EQUAL, [60, 64, 70, 72, 84], [2] * 5, "normal", True)


# ---------------------------------------------------------------------------
# rate: analysis scale log
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("multiplier", [1, -1])
def test_rate_untransformed_fit_with_log_scale_draws_by_hand(multiplier):
    # Rates 50, 60, 70, 80, 90: slope = -50 - 30 + 0 + 40 + 90 = 50, intercept = 70 - 25 = 45,
    # fitted(1) = 95: SII = 50, RII = 95/45 = 19/9.
    # Only quintile 5 is uncertain: se 0.1 on the LOG scale (the PHE analysis scale for a
    # rate, transform or not). Each draw's rate is 90 exp(eps), eps ~ N(0, 0.1), so with
    # delta = 90 (exp(eps) - 1) the draw's slope is 50 + c_5 delta = 50 + delta and its RII
    # (95 + e_5 delta) / (45 + d_5 delta) = (95 + .7 delta) / (45 - .3 delta), both
    # increasing in eps: the limits are those at eps = -/+ 1.959964 x 0.1:
    #   delta = 90 (exp(-/+ 0.1959964) - 1) = -16.018, +19.486 (not symmetric: the log-scale
    #   signature; a value-scale se would give a symmetric interval).
    out = inequality_indices(QUINTILES, EQUAL, [50, 60, 70, 80, 90], [0, 0, 0, 0, 0.1], "rate", False,
                             multiplier=multiplier, repetitions=R, seed=202)

    def sii_at(eps):
        return multiplier * (50 + 90 * (math.exp(eps) - 1))

    def rii_at(eps):
        delta = 90 * (math.exp(eps) - 1)
        ratio = (95 + 0.7 * delta) / (45 - 0.3 * delta)
        return ratio if multiplier > 0 else 1 / ratio

    assert out.sii == pytest.approx(50 * multiplier, rel=1e-12)
    assert out.rii == pytest.approx((19 / 9) ** multiplier, rel=1e-12)
    low_eps, high_eps = (-Z * 0.1, Z * 0.1) if multiplier > 0 else (Z * 0.1, -Z * 0.1)
    within_simulation_error(out.sii_lower, sii_at, low_eps, 0.1)
    within_simulation_error(out.sii_upper, sii_at, high_eps, 0.1)
    within_simulation_error(out.rii_lower, rii_at, low_eps, 0.1)
    within_simulation_error(out.rii_upper, rii_at, high_eps, 0.1)
    assert 50 + 90 * (math.exp(-Z * 0.1) - 1) == pytest.approx(33.98, abs=0.01)
    assert 50 + 90 * (math.exp(Z * 0.1) - 1) == pytest.approx(69.49, abs=0.01)


@pytest.mark.parametrize("multiplier", [1, -1])
def test_rate_transformed_fit_back_transformed_around_the_midpoint_by_hand(multiplier):
    # Rates 100 x 2^b at the ranks b: 107.18, 123.11, 141.42, 162.45, 186.61. On the log
    # scale they lie on a line: log y = ln 100 + b ln 2, so beta0 = ln 100, beta1 = ln 2,
    # y0 = 100, y1 = 200: SII = 100, RII = 2 (x -1: -100 and 1/2).
    # se 0.05 on the log scale for every quintile: the simulated log-scale slope is normal,
    # SD 0.05 sqrt(2.5) = 0.0790569, limits s = ln 2 -/+ z x 0.0790569. Mapped back around
    # the midpoint m = ln 100 + ln 2 / 2 = ln(100 sqrt 2):
    #   SII(s) = exp(m + s/2) - exp(m - s/2) = 200 sqrt(2) sinh(s/2)   (= 100 at s = ln 2)
    #   RII(s) = exp(m + s/2) / exp(m - s/2) = exp(s)                  (= 2 at s = ln 2)
    values = [100 * 2**b for b in (0.1, 0.3, 0.5, 0.7, 0.9)]
    out = inequality_indices(QUINTILES, EQUAL, values, [0.05] * 5, "rate", True, multiplier=multiplier,
                             repetitions=R, seed=303)
    sigma = 0.05 * math.sqrt(2.5)

    def sii_at(s):
        return multiplier * 200 * math.sqrt(2) * math.sinh(s / 2)

    def rii_at(s):
        return math.exp(s) if multiplier > 0 else math.exp(-s)

    assert out.sii == pytest.approx(100 * multiplier, rel=1e-12)
    assert out.rii == pytest.approx(2.0**multiplier, rel=1e-12)
    s_low, s_high = math.log(2) - Z * sigma, math.log(2) + Z * sigma
    if multiplier < 0:
        s_low, s_high = s_high, s_low  # a negative multiplier swaps which slope gives the lower limit
    within_simulation_error(out.sii_lower, sii_at, s_low, sigma)
    within_simulation_error(out.sii_upper, sii_at, s_high, sigma)
    within_simulation_error(out.rii_lower, rii_at, s_low, sigma)
    within_simulation_error(out.rii_upper, rii_at, s_high, sigma)


# ---------------------------------------------------------------------------
# proportion: analysis scale logit
# ---------------------------------------------------------------------------

ODDS_DOUBLING = [0.2, 1 / 3, 0.5, 2 / 3, 0.8]  # odds 1/4, 1/2, 1, 2, 4


@pytest.mark.parametrize("multiplier", [100, -100])
def test_proportion_untransformed_fit_with_logit_scale_draws_by_hand(multiplier):
    # p = .2, 1/3, .5, 2/3, .8: slope = -.2 - 1/6 + 0 + 1/3 + .8 = 23/30, mean .5, intercept
    # .5 - 23/60 = 7/60, fitted(1) = 53/60: SII = 23/30 (x 100 = 76.67 percentage points),
    # RII = 53/7 (x -100: SII -76.67, RII 7/53).
    # Only quintile 5 is uncertain: se 0.25 on the LOGIT scale. A draw's p5 is
    # expit(ln 4 + eps); with delta = expit(ln 4 + eps) - .8 the slope is 23/30 + delta and
    # the RII (53/60 + .7 delta) / (7/60 - .3 delta), both increasing in eps:
    #   eps = -/+ 1.959964 x .25 = -/+ .489991, p5 = expit(.896303) = .7102, expit(1.876285) = .8672,
    #   i.e. -.0898 / +.0672 around .8: lopsided toward the middle, as a proportion's
    #   interval is, and about six times narrower than the same se read on the proportion
    #   scale (.25 x 1.96 = +/-.49) would make it.
    out = inequality_indices(QUINTILES, EQUAL, ODDS_DOUBLING, [0, 0, 0, 0, 0.25], "proportion", False,
                             multiplier=multiplier, repetitions=R, seed=404)

    def sii_at(eps):
        return multiplier * (23 / 30 + expit(math.log(4) + eps) - 0.8)

    def rii_at(eps):
        delta = expit(math.log(4) + eps) - 0.8
        ratio = (53 / 60 + 0.7 * delta) / (7 / 60 - 0.3 * delta)
        return ratio if multiplier > 0 else 1 / ratio

    assert out.sii == pytest.approx(multiplier * 23 / 30, rel=1e-12)
    assert out.rii == pytest.approx(53 / 7 if multiplier > 0 else 7 / 53, rel=1e-12)
    low_eps, high_eps = (-Z * 0.25, Z * 0.25) if multiplier > 0 else (Z * 0.25, -Z * 0.25)
    within_simulation_error(out.sii_lower, sii_at, low_eps, 0.25)
    within_simulation_error(out.sii_upper, sii_at, high_eps, 0.25)
    within_simulation_error(out.rii_lower, rii_at, low_eps, 0.25)
    within_simulation_error(out.rii_upper, rii_at, high_eps, 0.25)
    assert expit(math.log(4) - Z * 0.25) == pytest.approx(0.7102, abs=1e-4)
    assert expit(math.log(4) + Z * 0.25) == pytest.approx(0.8672, abs=1e-4)


@pytest.mark.parametrize("multiplier", [1, -100])
def test_proportion_transformed_fit_back_transformed_around_the_midpoint_by_hand(multiplier):
    # Odds 1/4, 1/2, 1, 2, 4 double from quintile to quintile, so the logits lie on a line:
    # logit p = ln(1/4) + (i - 1) ln 2 with b = .1 + .2 (i - 1), i.e. beta1 = 5 ln 2 and
    # beta0 = ln(1/4) - .5 ln 2 = ln(0.25 / sqrt 2). The midpoint m = beta0 + beta1 / 2 = 0.
    #   y0 = expit(beta0) = 0.1768 / 1.1768 = 0.150221, y1 = expit(beta0 + beta1) = 0.849779
    #   SII = y1 - y0 = expit(s/2) - expit(-s/2) = tanh(s/4) at s = 5 ln 2: (4 sqrt2 - 1)/(4 sqrt2 + 1)
    #   RII = y1 / y0 = exp(s/2) = 2^2.5 = 4 sqrt 2 = 5.656854
    # se 0.1 on the logit scale for every quintile: the simulated logit slope has SD
    # 0.1 sqrt(2.5) = 0.158114 and limits s = 5 ln 2 -/+ z x 0.158114, mapped to tanh(s/4)
    # and exp(s/2). x -100: SII -69.96, limits swapped; RII inverted: exp(-s/2).
    out = inequality_indices(QUINTILES, EQUAL, ODDS_DOUBLING, [0.1] * 5, "proportion", True,
                             multiplier=multiplier, repetitions=R, seed=505)
    sigma = 0.1 * math.sqrt(2.5)
    slope = 5 * math.log(2)

    def sii_at(s):
        return multiplier * math.tanh(s / 4)

    def rii_at(s):
        return math.exp(s / 2) if multiplier > 0 else math.exp(-s / 2)

    assert expit(math.log(0.25 / math.sqrt(2))) == pytest.approx(0.150221, abs=1e-6)
    assert out.sii == pytest.approx(multiplier * (4 * math.sqrt(2) - 1) / (4 * math.sqrt(2) + 1), rel=1e-12)
    assert out.rii == pytest.approx((4 * math.sqrt(2)) ** (1 if multiplier > 0 else -1), rel=1e-12)
    s_low, s_high = slope - Z * sigma, slope + Z * sigma
    if multiplier < 0:
        s_low, s_high = s_high, s_low
    within_simulation_error(out.sii_lower, sii_at, s_low, sigma)
    within_simulation_error(out.sii_upper, sii_at, s_high, sigma)
    within_simulation_error(out.rii_lower, rii_at, s_low, sigma)
    within_simulation_error(out.rii_upper, rii_at, s_high, sigma)


def test_proportions_and_rates_need_a_value_their_analysis_scale_can_take():
    # logit(0) and log(0) do not exist: the PHE method cannot use a 0% quantile.
    with pytest.raises(ValueError, match=r"values\[0\] must be strictly between 0 and 1 .* logit scale"):
        inequality_indices(QUINTILES, EQUAL, [0.0, 0.2, 0.3, 0.4, 0.5], [0.1] * 5, "proportion")
    with pytest.raises(ValueError, match=r"values\[4\] must be greater than 0 .* log scale"):
        inequality_indices(QUINTILES, EQUAL, [5, 4, 3, 2, 0], [0.1] * 5, "rate")


# ---------------------------------------------------------------------------
# standard errors from limits: always on the analysis scale
# ---------------------------------------------------------------------------


def test_standard_errors_from_limits_are_taken_on_the_analysis_scale_by_hand():
    # identity: (79.1 - 72.7) / (2 x 1.959964) = 6.4 / 3.919928 = 1.632683
    assert standard_error_from_limits(72.7, 79.1) == pytest.approx(6.4 / 3.919928, rel=1e-6)
    # log: (ln 12 - ln 8) / 3.919928 = 0.405465 / 3.919928 = 0.103437
    assert standard_error_from_limits(8, 12, "rate") == pytest.approx(0.103437, abs=1e-6)
    # logit: (logit .3 - logit .1) / 3.919928 = (ln(3/7) - ln(1/9)) / 3.919928
    #      = (-0.847298 + 2.197225) / 3.919928 = 1.349927 / 3.919928 = 0.344375
    assert standard_error_from_limits(0.1, 0.3, "proportion") == pytest.approx(0.344375, abs=1e-6)
    with pytest.raises(ValueError, match="upper must be strictly between 0 and 1"):
        standard_error_from_limits(0.5, 1.0, "proportion")


# ---------------------------------------------------------------------------
# the frame-level twin: per-group value type, transform and multiplier
# ---------------------------------------------------------------------------


def test_inequality_table_takes_each_groups_own_settings_and_matches_the_scalar_calls():
    cases = {
        "normal": ([60, 64, 70, 72, 84], [58, 61, 67, 69, 80], [62, 67, 73, 75, 88], "normal", False, 1.0),
        "rate_log": ([100 * 2**b for b in (0.1, 0.3, 0.5, 0.7, 0.9)], [90, 110, 128, 150, 170],
                     [125, 140, 158, 178, 205], "rate", True, -1.0),
        "proportion": (ODDS_DOUBLING, [0.15, 0.28, 0.44, 0.6, 0.74], [0.26, 0.39, 0.56, 0.72, 0.85],
                       "proportion", False, 100.0),
    }
    rows = []
    for g, (values, lows, highs, kind, transform, multiplier) in cases.items():
        for q, v, lo, hi in zip(QUINTILES, values, lows, highs):
            rows.append((g, q, 100, v, lo, hi, 7, kind, transform, multiplier))
    frame = pl.DataFrame(rows, orient="row", schema=["g", "quantile", "population", "value", "lo", "hi", "seed",
                                                     "value_type", "transform", "multiplier"])
    got = inequality_table(frame.reverse(), ["g"], standard_error=None, lower="lo", upper="hi",
                           value_type=pl.col("value_type"), transform=pl.col("transform"),
                           multiplier=pl.col("multiplier"), repetitions=2000)
    for g, (values, lows, highs, kind, transform, multiplier) in cases.items():
        errors = [standard_error_from_limits(lo, hi, kind) for lo, hi in zip(lows, highs)]
        expected = inequality_indices(QUINTILES, EQUAL, values, errors, kind, transform, multiplier,
                                      repetitions=2000, seed=7)
        assert got.filter(pl.col("g") == g).drop("g").row(0) == tuple(expected)


# ---------------------------------------------------------------------------
# what the sign means
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "multiplier", "positive_means"),
    [
        # SII = (least deprived end - most deprived end) x multiplier.
        ("higher_is_better", 1, "higher in the least deprived than in the most deprived; higher is better for "
                                "this indicator, so a positive SII means the most deprived fare worse"),
        ("lower_is_better", 1, "higher in the least deprived than in the most deprived; lower is better for "
                               "this indicator, so a positive SII means the most deprived fare better"),
        ("higher_is_better", -100, "higher in the most deprived than in the least deprived"),
        ("lower_is_better", -100, "lower is better for this indicator, so a positive SII means the most deprived "
                                  "fare worse"),
        (None, 1, "no direction is set for this indicator, so the SII shows a gradient, not better or worse"),
    ],
)
def test_polarity_sentence_says_which_way_is_worse(direction, multiplier, positive_means):
    sentence = sii_polarity(direction, multiplier)
    assert sentence.startswith("A positive SII (RII above 1) means the indicator is ")
    assert positive_means in sentence
    if direction == "higher_is_better" and multiplier < 0:
        assert "the most deprived fare better" in sentence
