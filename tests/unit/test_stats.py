"""Scalar interval functions against published worked values, and their error messages.

Sources of the expected numbers:

- Newcombe RG (1998a) "Two-sided confidence intervals for the single proportion:
  comparison of seven methods", Stat Med 17:857-872, Table I (Wilson score, method 3).
- Newcombe RG (1998b) "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Stat Med 17:873-890, Table II, method 10
  (hybrid score, no continuity correction), examples (a)-(h).
- Exact Poisson 95% limits for a count of 0 (upper 3.689) and Byar's approximation as in
  the Fingertips technical guidance / PHEindicatormethods::phe_rate.
"""

from __future__ import annotations

import sys
from statistics import NormalDist

import pytest

from pipelines.segmentation import disclosure, gaps, stats
from pipelines.segmentation.stats import Interval, byar_interval, newcombe_difference, wilson_interval


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


def test_byar_and_exact_poisson():
    assert _rounded(byar_interval(0), 3) == (0.0, 0.0, 3.689)
    # Exact Poisson 95% limits for 5 (Garwood): 1.6235 to 11.6683.
    assert _rounded(byar_interval(5)) == (5.0, 1.6235, 11.6683)
    z = NormalDist().inv_cdf(0.975)
    o = 100
    lower = o * (1 - 1 / (9 * o) - z / (3 * o**0.5)) ** 3
    upper = (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * (o + 1) ** 0.5)) ** 3
    assert byar_interval(o) == pytest.approx((100.0, lower, upper))
    assert _rounded(byar_interval(o), 2) == (100.0, 81.36, 121.63)


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
