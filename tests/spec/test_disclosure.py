"""Disclosure rules as literal tables: true count -> published count, per profile."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.segmentation.disclosure import (
    MIDPOINT6,
    DisclosureProfile,
    NHS_SUPPRESS_ROUND5,
    NONE,
    OPENSAFELY_REDACT_ROUND5,
    PROFILES,
    apply_profile,
    get_profile,
)

S = None  # suppressed

#        true:   0  1  2  5  7   8   9  10  11  12  13  17  18  22  23  100  None
TRUE = [0, 1, 2, 5, 7, 8, 9, 10, 11, 12, 13, 17, 18, 22, 23, 100, None]
EXPECTED = {
    "nhs_suppress_1_7_round_5": [0, S, S, S, S, 10, 10, 10, 10, 10, 15, 15, 20, 20, 25, 100, None],
    "opensafely_redact_le7_round_5": [0, 0, 0, 0, 0, 10, 10, 10, 10, 10, 15, 15, 20, 20, 25, 100, None],
    "midpoint6": [0, 3, 3, 3, 9, 9, 9, 9, 9, 9, 15, 15, 15, 21, 21, 99, None],
    "none": TRUE,
}
IS_SMALL = {
    "nhs_suppress_1_7_round_5": [False, True, True, True, True] + [False] * 12,
    "opensafely_redact_le7_round_5": [False, True, True, True, True] + [False] * 12,
    "midpoint6": [False] * 17,
    "none": [False] * 17,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_table(name):
    frame = pl.DataFrame({"n": TRUE}, schema={"n": pl.Int64})
    out = apply_profile(frame, ["n"], get_profile(name))
    assert out["n"].to_list() == EXPECTED[name]
    assert out["is_suppressed"].to_list() == IS_SMALL[name]


def test_profile_names_are_the_recorded_identifiers():
    assert NHS_SUPPRESS_ROUND5.name == "nhs_suppress_1_7_round_5"
    assert OPENSAFELY_REDACT_ROUND5.name == "opensafely_redact_le7_round_5"
    assert MIDPOINT6.name == "midpoint6"
    assert NONE.name == "none"
    assert set(PROFILES) == {p.name for p in (NHS_SUPPRESS_ROUND5, OPENSAFELY_REDACT_ROUND5, MIDPOINT6, NONE)}


def test_row_is_suppressed_when_either_count_is_small_and_works_lazily():
    frame = pl.LazyFrame(
        {
            "numerator": [3, 40, 0, 9],
            "denominator": [50, 41, 6, 9],
        }
    )
    out = apply_profile(frame, ["numerator", "denominator"], NHS_SUPPRESS_ROUND5).collect()
    assert out.to_dict(as_series=False) == {
        "numerator": [None, 40, 0, 10],
        "denominator": [50, 40, None, 10],
        "is_suppressed": [True, False, True, False],
    }


def test_existing_is_suppressed_flag_is_kept():
    frame = pl.DataFrame({"n": [50, 50], "is_suppressed": [True, False]})
    out = apply_profile(frame, ["n"], NHS_SUPPRESS_ROUND5)
    assert out["is_suppressed"].to_list() == [True, False]


def test_unknown_profile_and_missing_column_are_clear_errors():
    with pytest.raises(ValueError, match="unknown disclosure profile 'nhs'.*known profiles"):
        get_profile("nhs")
    with pytest.raises(ValueError, match=r"columns \['denominator'\] are not in the frame"):
        apply_profile(pl.DataFrame({"numerator": [1]}), ["numerator", "denominator"], NHS_SUPPRESS_ROUND5)


def test_complements_spare_the_cells_readers_rely_on_most():
    from pipelines.segmentation.disclosure import complementary_suppression
    from pipelines.segmentation.gaps import complement_priority

    # One relation: all = small + headline part + intersection part. Without priorities the
    # smaller part (the headline Core20 cell) would be hidden; with them the intersection is.
    # Counts as a reader would know them exactly (no rounding), so a complement is needed.
    exact = DisclosureProfile("suppress_only", "1-7 suppressed, nothing rounded", 7, "suppress")
    core20 = ("IMD2025", "core20", "core20")
    cross = ("IMD2025", "core20|cohort:smi", "core20|in")
    total = ("IMD2025", "overall", "all")
    small = ("IMD2025", "core20", "unknown")
    values = {total: 100, small: 3, core20: 40, cross: 57}
    relations = [(total, [total, small, core20, cross])]
    assert complementary_suppression(values, {small}, relations, profile=exact) == {small, core20}
    assert complementary_suppression(values, {small}, relations, complement_priority, profile=exact) == {small, cross}
    # Rounded to 5, the same table protects the small cell by itself: 100 - 40 - 55, give or
    # take 6, covers 1-7.
    assert complementary_suppression(values, {small}, relations, profile=NHS_SUPPRESS_ROUND5) == {small}
