"""Scalar interval functions against published worked values, and their error messages.

Sources of the expected numbers:

- Newcombe RG (1998a) "Two-sided confidence intervals for the single proportion:
  comparison of seven methods", Stat Med 17:857-872, Table I (Wilson score, method 3).
- Newcombe RG (1998b) "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Stat Med 17:873-890, Table II, method 10
  (hybrid score, no continuity correction), examples (a)-(h).
- Byar's method and the chi-squared exact limits as the Fingertips technical guidance
  ("Rates", Public Health Technical Guidance) and PHEindicatormethods byars_lower /
  byars_upper / phe_rate state them; exact Poisson 95% limits for 0 (0, 3.689) and for 5
  (1.6235, 11.6683) as tabulated in Garwood (1936) / Breslow & Day (1987), Appendix II.
- Directly standardised rates: Dobson et al. (1991) as PHEindicatormethods::phe_dsr
  computes it; the 2013 European Standard Population as published by Eurostat (2013),
  KS-RA-13-028-EN, in PHEindicatormethods' esp2013 form (19 bands, 0-4 ... 90+).
- SII/RII: PHEindicatormethods::phe_sii documentation (relative ranks 0.06 and 0.17 for
  quantiles holding 12% and 10% of the population; SII = fitted value at rank 1 minus at
  rank 0; RII = (intercept + SII) / intercept; negative multiplier inverts the RII).
"""

from __future__ import annotations

import sys
from statistics import NormalDist

import pytest

from pipelines.segmentation import disclosure, gaps, stats
from pipelines.segmentation.stats import (
    ESP2013,
    Interval,
    byar_interval,
    dsr_interval,
    exact_poisson_limits,
    inequality_indices,
    newcombe_difference,
    rate_interval,
    relative_ranks,
    wilson_interval,
)


def _rounded(interval: Interval, places: int = 4) -> tuple[float, float, float]:
    return tuple(round(v, places) for v in interval)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (81, 263, (0.3080, 0.2553, 0.3662)),
        (15, 148, (0.1014, 0.0624, 0.1605)),
        (0, 20, (0.0, 0.0, 0.1611)),
        (1, 29, (0.0345, 0.0061, 0.1718)),
    ],
)
def test_wilson_matches_newcombe_1998a_table_1(numerator, denominator, expected):
    assert _rounded(wilson_interval(numerator, denominator)) == expected


def test_wilson_all_and_none_are_valid_and_mirror_each_other():
    none = wilson_interval(0, 10)
    all_ = wilson_interval(10, 10)
    assert none.value == 0.0 and none.lower == 0.0
    assert all_.value == 1.0 and all_.upper == 1.0
    assert round(none.upper, 4) == 0.2775  # Newcombe 1998b example (f): 0/10 upper limit
    assert all_.lower == pytest.approx(1 - none.upper, abs=1e-12)


def test_wilson_multiplier_scales_every_part():
    plain = wilson_interval(81, 263)
    percent = wilson_interval(81, 263, multiplier=100)
    assert percent == pytest.approx(tuple(100 * v for v in plain))


def test_wilson_uses_exact_quantile_not_1_96():
    z = NormalDist().inv_cdf(0.975)
    assert round(z, 6) == 1.959964
    # With 1.96 the 81/263 upper limit would be larger in the 6th decimal; pin the exact one.
    x, n = 81, 263
    exact_upper = (2 * x + z * z + z * (z * z + 4 * x * (1 - x / n)) ** 0.5) / (2 * (n + z * z))
    assert wilson_interval(x, n).upper == pytest.approx(exact_upper, abs=1e-15)
    wider = wilson_interval(x, n, confidence=0.998)
    assert wider.lower < wilson_interval(x, n).lower and wider.upper > wilson_interval(x, n).upper


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((56, 70, 48, 80), (0.2000, 0.0524, 0.3339)),  # (a)
        ((9, 10, 3, 10), (0.6000, 0.1705, 0.8090)),  # (b)
        ((6, 7, 2, 7), (0.5714, 0.0582, 0.8062)),  # (c)
        ((5, 56, 0, 29), (0.0893, -0.0381, 0.1926)),  # (d)
        ((0, 10, 0, 20), (0.0, -0.1611, 0.2775)),  # (e)
        ((0, 10, 0, 10), (0.0, -0.2775, 0.2775)),  # (f)
        ((10, 10, 0, 20), (1.0, 0.6791, 1.0)),  # (g)
        ((10, 10, 0, 10), (1.0, 0.6075, 1.0)),  # (h)
    ],
)
def test_newcombe_matches_newcombe_1998b_table_2_method_10(counts, expected):
    assert _rounded(newcombe_difference(*counts)) == pytest.approx(expected, abs=1e-12)


def test_newcombe_is_antisymmetric():
    forward = newcombe_difference(56, 70, 48, 80)
    backward = newcombe_difference(48, 80, 56, 70)
    assert backward.value == pytest.approx(-forward.value)
    assert backward.lower == pytest.approx(-forward.upper)
    assert backward.upper == pytest.approx(-forward.lower)


def test_byar_formula_and_its_negative_lower_limit():
    z = NormalDist().inv_cdf(0.975)
    o = 100
    lower = o * (1 - 1 / (9 * o) - z / (3 * o**0.5)) ** 3
    upper = (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * (o + 1) ** 0.5)) ** 3
    assert byar_interval(o) == pytest.approx((100.0, lower, upper), rel=1e-14)
    assert _rounded(byar_interval(o), 2) == (100.0, 81.36, 121.63)
    # PHEindicatormethods::byars_lower gives NA where the formula goes negative (a count of
    # 1 at 99.8%: 1 - 1/9 - 3.0902/3 < 0) and at 0, where it is undefined.
    assert byar_interval(1, confidence=0.998).lower is None
    assert byar_interval(0).lower is None
    assert byar_interval(1).lower == pytest.approx(1 * (1 - 1 / 9 - z / 3) ** 3)


def test_exact_poisson_limits_match_published_tables():
    assert tuple(round(v, 3) for v in exact_poisson_limits(0)) == (0.0, 3.689)
    assert tuple(round(v, 4) for v in exact_poisson_limits(5)) == (1.6235, 11.6683)


def test_crude_rate_switches_from_exact_to_byar_at_10():
    assert rate_interval(9, 1000, multiplier=1000) == pytest.approx(
        (9.0, *exact_poisson_limits(9)), rel=1e-14)
    ten = rate_interval(10, 1000, multiplier=1000)
    assert ten == pytest.approx(tuple(byar_interval(10)), rel=1e-14)
    assert rate_interval(0, 500).value == 0.0 and rate_interval(0, 500).lower == 0.0


def test_esp2013_is_the_published_19_band_standard():
    assert ESP2013 == (5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
                       7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000)
    assert sum(ESP2013) == 100000


def test_dsr_dobson_by_hand_and_the_under_10_rule():
    # Two bands, weights 1:1, 10 of 1,000 and 20 of 2,000 (both 1%): DSR = 1% = 10 per 1,000.
    # var = (10 (1/1000)^2 + 20 (1/2000)^2) / 2^2 = 3.75e-6; O = 30; Byar limits of 30.
    z = NormalDist().inv_cdf(0.975)
    o_low = 30 * (1 - 1 / 270 - z / (3 * 30**0.5)) ** 3
    o_up = 31 * (1 - 1 / 279 + z / (3 * 31**0.5)) ** 3
    spread = (3.75e-6 / 30) ** 0.5 * 1000
    assert dsr_interval([10, 20], [1000, 2000], [1, 1], multiplier=1000) == pytest.approx(
        (10.0, 10 + spread * (o_low - 30), 10 + spread * (o_up - 30)), rel=1e-12)
    # Equal age-specific rates standardise to that rate whatever the standard population.
    assert dsr_interval([50] * 19, [10000] * 19, ESP2013).value == pytest.approx(500.0)
    # A missing count means no events in that band; fewer than 10 events in total: not shown.
    assert dsr_interval([None, 12], [100, 100], [1, 1]) == dsr_interval([0, 12], [100, 100], [1, 1])
    assert dsr_interval([4, 5], [100, 100], [1, 1]) == Interval(None, None, None)


def test_sii_ranks_follow_the_phe_documentation_example():
    assert [round(r, 2) for r in relative_ranks([12, 10, 78])] == [0.06, 0.17, 0.61]


def test_sii_and_rii_of_an_exactly_linear_gradient():
    pops = [120, 100, 80, 150, 50]
    ranks = relative_ranks(pops)
    values = [0.4 + 0.3 * r for r in ranks]  # 0.4 at the most deprived end, 0.7 at the least
    out = inequality_indices([1, 2, 3, 4, 5], pops, values, [0.02] * 5, seed=3, repetitions=20000)
    assert out.sii == pytest.approx(0.3) and out.rii == pytest.approx(0.7 / 0.4)
    assert out.sii_lower < out.sii < out.sii_upper and out.rii_lower < out.rii < out.rii_upper
    # Quantile order in the input does not matter: rows are sorted by quantile.
    shuffled = inequality_indices([5, 3, 1, 4, 2], [pops[i] for i in (4, 2, 0, 3, 1)],
                                  [values[i] for i in (4, 2, 0, 3, 1)], [0.02] * 5, seed=3, repetitions=20000)
    assert shuffled == out


def test_sii_limits_match_the_analytic_spread_of_the_weighted_regression():
    # Untransformed, the simulated SII is linear in the draws, so its limits approach
    # SII +/- z * sqrt(sum((c_i se_i)^2)) with c the slope row of (X'WX)^-1 X'W.
    import numpy as np

    pops = [300, 250, 200, 150, 100]
    values = [0.5, 0.55, 0.62, 0.6, 0.7]
    se = [0.03, 0.03, 0.035, 0.04, 0.05]
    out = inequality_indices([1, 2, 3, 4, 5], pops, values, se, seed=11, repetitions=200000)
    a = np.array(pops) / sum(pops)
    b = np.array(relative_ranks(pops))
    x = np.vstack([np.sqrt(a), b * np.sqrt(a)])
    slope_row = (np.linalg.solve(x @ x.T, x) * np.sqrt(a))[1]
    sd = float(np.sqrt(((slope_row * np.array(se)) ** 2).sum()))
    z = NormalDist().inv_cdf(0.975)
    assert out.sii_lower == pytest.approx(out.sii - z * sd, abs=0.01 * sd + 2e-3)
    assert out.sii_upper == pytest.approx(out.sii + z * sd, abs=0.01 * sd + 2e-3)


def test_negative_multiplier_reverses_sii_and_inverts_rii():
    args = ([1, 2, 3, 4, 5], [100] * 5, [0.5, 0.55, 0.6, 0.65, 0.7], [0.02] * 5)
    plus = inequality_indices(*args, seed=5, repetitions=5000)
    minus = inequality_indices(*args, multiplier=-100, seed=5, repetitions=5000)
    assert minus.sii == pytest.approx(-100 * plus.sii)
    # Same draws; the limits are order statistics at positions round(R x 0.025) and
    # round(R x 0.975), so after reversal each is the neighbour of the mirrored draw.
    assert (minus.sii_lower, minus.sii_upper) == pytest.approx((-100 * plus.sii_upper, -100 * plus.sii_lower), rel=1e-3)
    assert minus.rii == pytest.approx(1 / plus.rii)
    assert (minus.rii_lower, minus.rii_upper) == pytest.approx((1 / plus.rii_upper, 1 / plus.rii_lower), rel=1e-3)


def test_sii_is_reproducible_from_its_seed_and_transform_keeps_draws_in_range():
    args = ([1, 2, 3, 4, 5], [100] * 5, [0.02, 0.05, 0.1, 0.2, 0.4], [0.5] * 5)
    assert inequality_indices(*args, "proportion", True, seed=9, repetitions=2000) == inequality_indices(
        *args, "proportion", True, seed=9, repetitions=2000)
    transformed = inequality_indices(*args, "proportion", True, seed=9, repetitions=2000)
    assert -1 <= transformed.sii_lower <= transformed.sii_upper <= 1


@pytest.mark.parametrize("seed", [0, 9, 20260, 2**40 + 7])
@pytest.mark.parametrize("k", [5, 10])
def test_sii_draws_are_numpys_normal_draws_to_the_bit(seed, k):
    """The SII's draws (one standard-normal fill, scaled and shifted in place) are the numbers
    numpy's `Generator.normal(loc, scale, size)` returns for the same seed, bit for bit, and the
    in-place back-transform is `_from_analysis_scale`: the published limits cannot move with them."""
    import numpy as np

    loc = np.linspace(-3.0, 2.5, k) * (1 + seed % 7)
    scale = np.abs(np.sin(np.arange(1, k + 1) * (seed % 11 + 1))) / 3
    scale[k // 2] = 0.0  # a quantile with no spread keeps its value in every draw
    expected = np.random.default_rng(seed).normal(loc=loc, scale=scale, size=(100_000, k))
    draws = stats._draws(seed, loc, scale, 100_000)
    assert draws.tobytes() == expected.tobytes()
    for value_type in ("normal", "rate", "proportion"):
        in_place = draws.copy()
        stats._from_analysis_scale_in_place(value_type, in_place)
        assert in_place.tobytes() == np.asarray(stats._from_analysis_scale(value_type, draws)).tobytes()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: wilson_interval(-1, 10), "numerator must not be negative"),
        (lambda: wilson_interval(1, -10), "denominator must not be negative"),
        (lambda: wilson_interval(11, 10), "numerator (11) must not exceed denominator (10)"),
        (lambda: wilson_interval(0, 0), "denominator must be greater than 0"),
        (lambda: wilson_interval(1, 10, confidence=1.0), "confidence must be a number strictly between 0 and 1"),
        (lambda: wilson_interval(1, 10, confidence=0), "confidence must be a number strictly between 0 and 1"),
        (lambda: wilson_interval(1, 10, confidence=95), "confidence must be a number strictly between 0 and 1"),
        (lambda: wilson_interval(None, 10), "numerator must be a count"),
        (lambda: newcombe_difference(5, 4, 1, 2), "n1 (5) must not exceed d1 (4)"),
        (lambda: newcombe_difference(1, 4, 1, 0), "d2 must be greater than 0"),
        (lambda: byar_interval(-2), "count must not be negative"),
        (lambda: rate_interval(3, 0), "denominator must be greater than 0"),
        (lambda: dsr_interval([1, 2], [10], [1, 1]), "must be non-empty and of equal length"),
        (lambda: dsr_interval([1, -2], [10, 10], [1, 1]), "counts[1] must not be negative"),
        (lambda: dsr_interval([1, 2], [10, 0], [1, 1]), "populations[1] must be greater than 0"),
        (lambda: inequality_indices([1, 2, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1]), "between 5 and 100"),
        (lambda: inequality_indices([1, 2, 3, 4, 5], [1] * 5, [1.2] * 5, [0.1] * 5, "proportion"), "values[0] must be a proportion"),
        (lambda: inequality_indices([1, 2, 3, 4, 5], [1] * 5, [0.5] * 5, [0.1] * 5, repetitions=10), "at least 1000"),
        (lambda: inequality_indices([1, 2, 3, 4, 5], [1, 1, 0, 1, 1], [0.5] * 5, [0.1] * 5), "populations[2] must be greater than 0"),
        (lambda: inequality_indices([1, 2, 3, 4, 5], [1] * 5, [0.5] * 5, [0.1] * 5, confidence=1.5), "confidence must be"),
    ],
)
def test_errors_name_the_argument_and_the_reason(call, message):
    with pytest.raises(ValueError) as caught:
        call()
    assert message in str(caught.value)



def test_importing_stats_does_not_import_scipy():
    # scipy is only needed for exact Poisson limits; it is imported lazily inside them.
    import subprocess

    code = "import sys, pipelines.segmentation.stats, pipelines.segmentation.gaps; print('scipy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
