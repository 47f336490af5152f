"""The gap table builder as literal tables: a tiny cohort -> the published gap rows.

The cohort (one month, one indicator, 113 denominator patients) is written as cells of
identical patients so an analyst can check every expected figure by hand:

    imd2019  imd2025  sex  age   ethnicity  patients  numerator
    1        1        F    50    White      41        12
    5        5        M    50    Asian      60        30
    null     9        U    null  null       12        9

No count is 1-7, so nothing is suppressed; NHS round-to-5 makes 41 -> 40 and 12 -> 10
(so core20's rate is 10/40 = 0.25, computed from the controlled counts), 60/30
unchanged, the unknown cell 9/12 -> 10/10. Interval figures are Wilson / Newcombe method
10, rounded to 4 places (the functions are checked against Newcombe 1998 in
tests/unit/test_stats.py). Suppression, secondary suppression, cohorts, areas and
intersections have their own tables below.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from pipelines.segmentation.disclosure import MIDPOINT6, NHS_SUPPRESS_ROUND5, NONE
from pipelines.segmentation.gaps import build_gap_table
from pipelines.segmentation.schemas import GAP_TABLE

MONTH = dt.date(2026, 3, 1)
CELLS = [
    # imd2019, imd2025, sex, age, ethnicity, patients, numerator
    (1, 1, "F", 50, "White", 41, 12),
    (5, 5, "M", 50, "Asian", 60, 30),
    (None, 9, "U", None, None, 12, 9),
]


def _inputs(cells=CELLS, indicator_id="hyp_bp_target", version=2):
    results, people = [], []
    for c, (d19, d25, sex, age, ethnicity, n_patients, n_numerator) in enumerate(cells):
        for i in range(n_patients):
            pid = f"p{c}_{i}"
            results.append((MONTH, pid, indicator_id, version, i < n_numerator))
            detailed = {"White": "White - British", "Asian": "Asian or Asian British - Indian"}.get(ethnicity)
            people.append((MONTH, pid, d19, d25, sex, age, ethnicity, detailed, "C84001", "52R", "QT1"))
    results_frame = pl.LazyFrame(
        results,
        schema={
            "reporting_month": pl.Date,
            "patient_id": pl.String,
            "indicator_id": pl.String,
            "indicator_version": pl.Int32,
            "is_numerator": pl.Boolean,
        },
        orient="row",
    )
    people_frame = pl.LazyFrame(
        people,
        schema={
            "reporting_month": pl.Date,
            "patient_id": pl.String,
            "imd2019_decile": pl.Int8,
            "imd2025_decile": pl.Int8,
            "sex": pl.String,
            "age": pl.Int32,
            "ethnicity_broad": pl.String,
            "ethnicity_16": pl.String,
            "practice_code": pl.String,
            "sicbl_code": pl.String,
            "icb_code": pl.String,
        },
        orient="row",
    )
    return results_frame, people_frame


def _catalogue(direction="higher_is_better"):
    return pl.DataFrame(
        {
            "indicator_id": ["hyp_bp_target"],
            "indicator_version": [2],
            "clinical_area": ["Hypertension"],
            "direction": [direction],
            "title": ["BP treated to target"],
        }
    )


SHOWN = [
    "imd_vintage", "breakdown", "group", "numerator", "denominator", "rate", "rate_lower", "rate_upper",
    "reference_group", "gap", "gap_lower", "gap_upper", "rate_ratio", "comparison", "is_suppressed",
]


def _rows(table: pl.DataFrame, breakdown: str) -> list[tuple]:
    return (
        table.filter(pl.col("breakdown") == breakdown)
        .select(SHOWN)
        .with_columns(pl.col(pl.Float64).round(4))
        .rows()
    )


def test_core20_rows_for_both_vintages():
    results, people = _inputs()
    table = build_gap_table(results, people, _catalogue())
    assert _rows(table, "core20") == [
        # vintage  breakdown group      num   den  rate    lower   upper   ref     gap    gap_lo   gap_hi   ratio comparison      suppressed
        # 'rest' is everyone not in Core20: IMD 2019's 30/60 in deciles 3-10 plus its 10/10 with no decile -> 40/70.
        ("IMD2019", "core20", "core20", 10, 40, 0.25, 0.1419, 0.4019, "rest", -0.3214, -0.4751, -0.1299, 0.4375, "worse", False),
        ("IMD2019", "core20", "rest", 40, 70, 0.5714, 0.4548, 0.6806, "rest", None, None, None, None, "reference", False),
        # IoD 2025 puts the 12 unknown-decile patients (9 in the numerator) in decile 9: rest is 39/72 -> 40/70.
        ("IMD2025", "core20", "core20", 10, 40, 0.25, 0.1419, 0.4019, "rest", -0.3214, -0.4751, -0.1299, 0.4375, "worse", False),
        ("IMD2025", "core20", "rest", 40, 70, 0.5714, 0.4548, 0.6806, "rest", None, None, None, None, "reference", False),
    ]


def test_non_deprivation_breakdowns_once_under_primary_vintage():
    results, people = _inputs()
    table = build_gap_table(results, people, _catalogue())
    assert _rows(table, "overall") == [
        ("IMD2019", "overall", "all", 50, 115, 0.4348, 0.3477, 0.526, None, None, None, None, None, "not compared", False),
    ]
    assert _rows(table, "sex") == [
        ("IMD2019", "sex", "F", 10, 40, 0.25, 0.1419, 0.4019, "F", None, None, None, None, "reference", False),
        ("IMD2019", "sex", "M", 30, 60, 0.5, 0.3774, 0.6226, "F", 0.25, 0.0547, 0.4135, 2.0, "better", False),
        ("IMD2019", "sex", "unknown", 10, 10, 1.0, 0.7225, 1.0, None, None, None, None, None, "not compared", False),
    ]
    assert table.filter(pl.col("breakdown") == "ethnicity_broad")["group"].to_list() == ["Asian", "White", "unknown"]
    assert table.filter(pl.col("breakdown") == "age_band").select("group", "numerator", "denominator").rows() == [
        ("40-59", 40, 100),
        ("unknown", 10, 10),
    ]
    assert set(table.filter(pl.col("imd_vintage") == "IMD2025")["breakdown"]) == {
        "imd_decile", "imd_quintile", "core20", "imd_quintile|ethnicity_broad"
    }
    other = build_gap_table(results, people, _catalogue(), breakdowns=["sex"], primary_vintage="IMD2025")
    assert other["imd_vintage"].unique().to_list() == ["IMD2025"]


def test_lower_is_better_reverses_the_comparison():
    results, people = _inputs()
    table = build_gap_table(results, people, _catalogue("lower_is_better"), breakdowns=["core20", "sex"])
    assert table.select("imd_vintage", "breakdown", "group", "comparison").rows() == [
        ("IMD2019", "core20", "core20", "better"),
        ("IMD2019", "core20", "rest", "reference"),
        ("IMD2019", "sex", "F", "reference"),
        ("IMD2019", "sex", "M", "worse"),
        ("IMD2019", "sex", "unknown", "not compared"),
        ("IMD2025", "core20", "core20", "better"),
        ("IMD2025", "core20", "rest", "reference"),
    ]


def test_similar_when_the_gap_interval_includes_zero():
    cells = [(1, 1, "F", 30, "White", 50, 25), (10, 10, "F", 30, "White", 60, 30)]
    results, people = _inputs(cells)
    table = build_gap_table(results, people, _catalogue(), breakdowns=["imd_decile"], profile=NONE)
    assert _rows(table.filter(pl.col("imd_vintage") == "IMD2019"), "imd_decile") == [
        ("IMD2019", "imd_decile", "1", 25, 50, 0.5, 0.3664, 0.6336, "10", 0.0, -0.1813, 0.1813, 1.0, "similar", False),
        ("IMD2019", "imd_decile", "10", 30, 60, 0.5, 0.3774, 0.6226, "10", None, None, None, None, "reference", False),
    ]


def test_decile_and_quintile_groups_sort_numerically_with_unknown_last():
    cells = [(d, d, "F", 30, "White", 8, 4) for d in (10, 2, 1, 9)] + [(None, None, "F", 30, "White", 8, 4)]
    results, people = _inputs(cells)
    table = build_gap_table(results, people, _catalogue(), breakdowns=["imd_decile", "imd_quintile"], profile=NONE)
    first = table.filter(pl.col("imd_vintage") == "IMD2019")
    assert first.filter(pl.col("breakdown") == "imd_decile")["group"].to_list() == ["1", "2", "9", "10", "unknown"]
    assert first.filter(pl.col("breakdown") == "imd_quintile").select("group", "denominator").rows() == [
        ("1", 16),
        ("5", 16),
        ("unknown", 8),
    ]


def test_output_matches_the_contract_and_records_the_profile():
    results, people = _inputs()
    for profile in (NHS_SUPPRESS_ROUND5, MIDPOINT6):
        table = build_gap_table(results, people, _catalogue(), profile=profile)
        assert table.schema == pl.Schema(GAP_TABLE.schema)
        assert table["disclosure_profile"].unique().to_list() == [profile.name]
        assert table.select(GAP_TABLE.primary_key).is_duplicated().sum() == 0
    nhs = build_gap_table(results, people, _catalogue())
    published = pl.concat([nhs["numerator"], nhs["denominator"]]).drop_nulls()
    assert published.is_between(1, 7).sum() == 0
    assert (published % 5 == 0).all()


def test_result_is_deterministic_whatever_the_input_order():
    results, people = _inputs()
    shuffled = results.collect().sample(fraction=1.0, shuffle=True, seed=7).lazy()
    assert build_gap_table(shuffled, people, _catalogue()).equals(build_gap_table(results, people, _catalogue()))


def test_patient_without_attributes_is_unknown_not_dropped():
    results, people = _inputs()
    people = people.filter(pl.col("patient_id") != "p1_0")
    table = build_gap_table(results, people, _catalogue(), breakdowns=["sex"], profile=NONE)
    assert table.select("group", "denominator").rows() == [("F", 41), ("M", 59), ("unknown", 13)]


def test_uncatalogued_indicator_and_bad_arguments_are_errors():
    results, people = _inputs(indicator_id="not_in_catalogue")
    with pytest.raises(ValueError, match="not in the catalogue"):
        build_gap_table(results, people, _catalogue())
    results, people = _inputs()
    with pytest.raises(ValueError, match="breakdowns"):
        build_gap_table(results, people, _catalogue(), breakdowns=["postcode"])
    with pytest.raises(ValueError, match="primary_vintage"):
        build_gap_table(results, people, _catalogue(), primary_vintage="IMD2015")
    with pytest.raises(ValueError, match="direction"):
        build_gap_table(results, people, _catalogue("up"))
