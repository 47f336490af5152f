"""Units: a proportion of persons and a rate of events per population, each as a literal table.

Input: patients in two groups (Core20 and the rest) with their numerator flags; rule: the
indicator's value_type and multiplier; expected: rates, limits and gaps worked by hand from the
documented methods (DOMAIN.md section 5), the arithmetic written out in the comments.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from pipelines.segmentation.disclosure import NONE
from pipelines.segmentation.gaps import build_gap_table

MONTH = dt.date(2026, 3, 1)


def _patients(groups: dict[int, tuple[int, int]], indicator: str):
    """Return (results, attributes): per IMD decile, `denominator` patients of whom `numerator` in the numerator."""
    results, people = [], []
    for decile, (numerator, denominator) in groups.items():
        for k in range(denominator):
            pid = f"{decile}-{k}"
            results.append((MONTH, pid, indicator, 1, k < numerator))
            people.append((MONTH, pid, decile, decile))
    results = pl.LazyFrame(results, orient="row", schema={"reporting_month": pl.Date, "patient_id": pl.String,
                           "indicator_id": pl.String, "indicator_version": pl.Int32, "is_numerator": pl.Boolean})
    people = pl.LazyFrame(people, orient="row", schema={"reporting_month": pl.Date, "patient_id": pl.String,
                          "imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8})
    return results, people


def _catalogue(indicator: str, value_type: str, multiplier: int) -> pl.DataFrame:
    return pl.DataFrame({"indicator_id": [indicator], "indicator_version": [1], "clinical_area": ["x"],
                         "direction": ["higher_is_better"], "value_type": [value_type], "multiplier": [multiplier]},
                        schema_overrides={"indicator_version": pl.Int32})


def _core20(table: pl.DataFrame) -> dict[str, dict]:
    rows = table.filter((pl.col("breakdown") == "core20") & (pl.col("imd_vintage") == "IMD2019"))
    return {r["group"]: r for r in rows.iter_rows(named=True)}


def test_a_proportion_gets_wilson_limits_and_a_newcombe_gap_stored_as_a_proportion():
    # Core20 (decile 1): 45 of 100; rest (decile 5): 60 of 100.
    results, people = _patients({1: (45, 100), 5: (60, 100)}, "p")
    table = build_gap_table(results, people, _catalogue("p", "proportion", 1), breakdowns=["core20"], intersections=(),
                            profile=NONE)
    core, rest = _core20(table)["core20"], _core20(table)["rest"]
    # Wilson, z = 1.959964: centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
    # p = 0.45, n = 100: z^2/n = 0.0384146; centre 0.4692073/1.0384146 = 0.4518497;
    # half 1.959964 * sqrt(0.002475 + 0.0000960) / 1.0384146 = 0.0957039 -> 0.35615 to 0.54755.
    assert (core["value_type"], core["multiplier"], core["comparison_method"]) == ("proportion", 1, "newcombe")
    assert core["rate"] == pytest.approx(0.45)
    assert core["rate_lower"] == pytest.approx(0.35615, abs=5e-5)
    assert core["rate_upper"] == pytest.approx(0.54755, abs=5e-5)
    # p = 0.60: centre 0.6192073/1.0384146 = 0.5963007; half 1.959964 * sqrt(0.0024 + 0.0000960)/1.0384146
    # = 0.0943231 -> 0.50198 to 0.69062.
    assert rest["rate_lower"] == pytest.approx(0.50198, abs=5e-5)
    assert rest["rate_upper"] == pytest.approx(0.69062, abs=5e-5)
    # Newcombe (method 10): d = -0.15; lower d - sqrt((0.45-0.35615)^2 + (0.69062-0.60)^2) = -0.15 - 0.13047
    # = -0.28047; upper d + sqrt((0.54755-0.45)^2 + (0.60-0.50198)^2) = -0.15 + 0.13833 = -0.01167.
    assert core["gap"] == pytest.approx(-0.15)
    assert core["gap_lower"] == pytest.approx(-0.28047, abs=1e-4)
    assert core["gap_upper"] == pytest.approx(-0.01167, abs=1e-4)


def test_a_rate_per_100000_gets_byar_limits_and_a_mover_gap_on_its_own_scale():
    # Core20: 60 events among 1,025 children; rest: 185 among 3,110; per 100,000.
    results, people = _patients({1: (60, 1025), 5: (185, 3110)}, "r")
    table = build_gap_table(results, people, _catalogue("r", "rate", 100000), breakdowns=["core20"], intersections=(),
                            profile=NONE)
    core, rest = _core20(table)["core20"], _core20(table)["rest"]
    assert (core["value_type"], core["multiplier"], core["comparison_method"]) == ("rate", 100000, "mover")
    # 60 / 1025 * 100000 = 5853.66
    assert core["rate"] == pytest.approx(5853.6585, abs=1e-3)
    # Byar, O = 60: lower O (1 - 1/(9O) - z/(3 sqrt O))^3 = 60 (1 - 0.0018519 - 0.0843441)^3 = 60 * 0.9138040^3
    # = 45.7834 -> 4466.7 per 100,000; upper (O+1)(1 - 1/(9(O+1)) + z/(3 sqrt(O+1)))^3 = 61 * 1.0818278^3
    # = 77.2342 -> 7535.0 per 100,000.
    assert core["rate_lower"] == pytest.approx(4466.7, abs=0.1)
    assert core["rate_upper"] == pytest.approx(7535.0, abs=0.1)
    # Rest, O = 185: 185 (1 - 0.000600601 - 0.0480330)^3 = 185 * 0.9513664^3 = 159.2976 -> 5122.2;
    # 186 (1 - 0.000597371 + 0.0479040)^3 = 186 * 1.0473066^3 = 213.6704 -> 6870.3; rate 5948.55.
    assert rest["rate"] == pytest.approx(5948.5531, abs=1e-3)
    assert rest["rate_lower"] == pytest.approx(5122.2, abs=0.2)
    assert rest["rate_upper"] == pytest.approx(6870.3, abs=0.2)
    # MOVER: d = -94.895; lower d - sqrt((5853.66 - 4466.71)^2 + (6870.27 - 5948.55)^2) = -94.9 - 1665.3 = -1760.2;
    # upper d + sqrt((7534.95 - 5853.66)^2 + (5948.55 - 5122.18)^2) = -94.9 + 1873.4 = 1778.5.
    assert core["gap"] == pytest.approx(-94.8945, abs=1e-3)
    assert core["gap_lower"] == pytest.approx(-1760.2, abs=0.5)
    assert core["gap_upper"] == pytest.approx(1778.5, abs=0.5)


def test_a_rate_under_10_events_gets_exact_poisson_limits():
    # 5 events among 2,000: exact Poisson 95% limits for 5 are 1.6235 and 11.6683 (chi-squared quantiles
    # 3.2470/2 and 23.3367/2, the published tables) -> 81.17 and 583.42 per 100,000.
    results, people = _patients({1: (5, 2000), 5: (40, 2000)}, "r")
    table = build_gap_table(results, people, _catalogue("r", "rate", 100000), breakdowns=["core20"], intersections=(),
                            profile=NONE)
    core = _core20(table)["core20"]
    assert core["rate"] == pytest.approx(250.0)
    assert core["rate_lower"] == pytest.approx(81.17, abs=0.01)
    assert core["rate_upper"] == pytest.approx(583.42, abs=0.01)


def test_rates_from_small_rounded_counts_are_flagged():
    # Rounded to 5: a proportion on a denominator under 50 and a rate on a numerator under 50 are flagged.
    from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5

    results, people = _patients({1: (8, 10), 5: (300, 600)}, "p")
    table = build_gap_table(results, people, _catalogue("p", "proportion", 1), breakdowns=["core20"], intersections=(),
                            profile=NHS_SUPPRESS_ROUND5)
    flags = {g: r["is_low_reliability"] for g, r in _core20(table).items()}
    assert flags == {"core20": True, "rest": False}  # 8/10 publishes as 10/10 = 100%: a range, not a point
    results, people = _patients({1: (30, 5000), 5: (300, 5000)}, "r")
    table = build_gap_table(results, people, _catalogue("r", "rate", 100000), breakdowns=["core20"], intersections=(),
                            profile=NHS_SUPPRESS_ROUND5)
    assert {g: r["is_low_reliability"] for g, r in _core20(table).items()} == {"core20": True, "rest": False}
