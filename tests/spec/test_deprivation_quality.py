"""Spec tests for the postcode/IMD data-quality table and its per-practice gate."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from pipelines.segmentation.deprivation_quality import (
    PracticeThresholds,
    deprivation_quality,
    practice_problems,
    published_quality,
)
from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5
from pipelines.segmentation.schemas import DEPRIVATION_QUALITY, MATCH_METHODS

MONTH = dt.date(2026, 10, 1)


def patients(practice: str, methods: dict[str, int], decile_for=("postcode_lookup", "spatial", "lsoa_supplied")) -> pl.DataFrame:
    """`n` patients per method at one practice; matched methods get decile 3, the rest none."""
    rows = [(practice, m, 3 if m in decile_for else None) for m, n in methods.items() for _ in range(n)]
    frame = pl.DataFrame(rows, schema=["practice_code", "method", "decile"], orient="row")
    return frame.select(
        "practice_code",
        pl.col("decile").cast(pl.Int8).alias("imd2019_decile"), pl.col("method").alias("imd2019_method"),
        pl.col("decile").cast(pl.Int8).alias("imd2025_decile"), pl.col("method").alias("imd2025_method"),
    )


EXTRACT = pl.concat([
    # A: a normal practice. 90 exact, 4 spatial, 2 outside England, 2 blank, 1 invalid, 1 unmatched.
    patients("A", {"postcode_lookup": 90, "spatial": 4, "outside_england": 2, "blank": 2, "invalid_postcode": 1, "unmatched": 1}),
    # B: every postcode blank - a data problem, not a population.
    patients("B", {"blank": 80}),
    # C: too small to judge.
    patients("C", {"blank": 10}),
])


def test_figures_per_month_and_practice():
    q = deprivation_quality(EXTRACT, MONTH)
    assert q.columns == DEPRIVATION_QUALITY.names
    assert q.schema == pl.Schema(DEPRIVATION_QUALITY.schema)
    row = q.filter(imd_vintage="IMD2019", practice_code="A").row(0, named=True)
    assert row["n_patients"] == 100
    assert {m: row[f"n_{m}"] for m in MATCH_METHODS if row[f"n_{m}"]} == {
        "postcode_lookup": 90, "spatial": 4, "outside_england": 2, "blank": 2, "invalid_postcode": 1, "unmatched": 1,
    }
    # Matched over "has an address": everyone but blank and outside England (96).
    assert row["n_matched"] == 94
    assert row["match_rate"] == pytest.approx(94 / 96)
    assert row["address_rate"] == pytest.approx(97 / 100)
    assert (row["share_blank"], row["share_invalid_postcode"], row["share_outside_england"]) == (0.02, 0.01, 0.02)

    whole = q.filter(imd_vintage="IMD2019", practice_code="ALL").row(0, named=True)
    assert whole["n_patients"] == 190 and whole["n_blank"] == 92
    b = q.filter(imd_vintage="IMD2025", practice_code="B").row(0, named=True)
    # No address at all: the match rate is undefined, not 0% or 100%.
    assert b["match_rate"] is None and b["address_rate"] == 0.0
    assert q.filter(practice_code="ALL")["imd_vintage"].to_list() == ["IMD2019", "IMD2025"]


def test_practice_gate_names_only_large_failing_practices():
    q = deprivation_quality(EXTRACT, MONTH)
    assert practice_problems(q, "IMD2025", PracticeThresholds()).rows() == [("B", 80, 0.0)]
    assert practice_problems(q, "IMD2025", PracticeThresholds(min_patients=5))["practice_code"].to_list() == ["B", "C"]
    assert practice_problems(q, "IMD2025", PracticeThresholds(min_address_rate=0.0)).is_empty()
    assert practice_problems(q, "IMD2025", PracticeThresholds(min_address_rate=0.98))["practice_code"].to_list() == ["A", "B"]


def test_published_counts_are_controlled_and_shares_follow_them():
    published = published_quality(deprivation_quality(EXTRACT, MONTH), NHS_SUPPRESS_ROUND5)
    counts = published.select(c for c in DEPRIVATION_QUALITY.names if c.startswith("n_"))
    values = [v for column in counts.iter_columns() for v in column.to_list() if v is not None]
    assert values and all(v == 0 or (v > 7 and v % 5 == 0) for v in values)
    a = published.filter(imd_vintage="IMD2019", practice_code="A").row(0, named=True)
    assert a["n_patients"] == 100 and a["n_postcode_lookup"] == 90
    # 2 blank patients: suppressed, so neither the share nor the match rate that needs it is shown.
    assert a["n_blank"] is None and a["share_blank"] is None and a["match_rate"] is None
    assert a["address_rate"] is None


def test_the_match_rate_is_computed_from_the_controlled_counts_or_shown_as_suppressed():
    # One definition: patients with a decile / patients with an address IMD can apply to (all but
    # blank and outside England), from the published (rounded) counts; hidden when one is hidden.
    from pipelines.segmentation.deprivation_quality import controlled_quality

    exact = deprivation_quality(patients("D", {"postcode_lookup": 381, "spatial": 9, "blank": 22,
                                               "outside_england": 13, "unmatched": 11}), MONTH)
    counts = [c for c in exact.columns if c.startswith("n_")]
    shown = controlled_quality(exact, NHS_SUPPRESS_ROUND5, {c: [False] * exact.height for c in counts})
    d = shown.filter(imd_vintage="IMD2019", practice_code="D").row(0, named=True)
    # 436 -> 435 patients, 390 -> 390 matched, 22 -> 20 blank, 13 -> 15 outside England.
    assert (d["n_patients"], d["n_matched"], d["n_blank"], d["n_outside_england"]) == (435, 390, 20, 15)
    assert d["match_rate"] == pytest.approx(390 / 400)  # the exact rate is 390 / 401
    hide_blank = {c: [c == "n_blank"] * exact.height for c in counts}
    hidden = controlled_quality(exact, NHS_SUPPRESS_ROUND5, hide_blank).filter(practice_code="D").row(0, named=True)
    assert hidden["n_blank"] is None and hidden["match_rate"] is None and hidden["n_matched"] == 390
