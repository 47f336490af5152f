"""A re-sent month is suppressed consistently with the release readers already hold.

Worked by hand, with a profile that suppresses 1-7 and rounds nothing (subtraction is exact),
one table: overall = a + b + c.

Release 1 (30 = 7 + 10 + 13): a is small and hidden; alone in its relation it would fall out
as 30 - 10 - 13, so a complement is hidden too (b).

Release 2, the extract re-sent with one patient added to a (31 = 8 + 10 + 13). Suppressed on
its own nothing in it is small, so it shows a = 8; a reader who holds both releases and knows
the patient went to a reads a = 7 for release 1. Linked to release 1, a and b stay hidden (once
hidden, hidden in every later release of the month), and what is left must still allow release
1's a anywhere in 1-7: a + b = 31 - 13 = 18 today, so today's a is anywhere in 0-18 and release
1's (a - 1) anywhere in 0-17.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from pipelines.segmentation.disclosure import DisclosureProfile
from pipelines.segmentation.month_disclosure import protect_month

MONTH = dt.date(2026, 10, 1)
EXACT = DisclosureProfile("suppress_only", "1-7 suppressed, nothing rounded", 7, "suppress")
CELLS = [("IMD2025", "overall", "all"), ("IMD2025", "g", "a"), ("IMD2025", "g", "b"), ("IMD2025", "g", "c")]
RELATIONS = [(CELLS[0], CELLS)]


def _counts(values: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        [(MONTH, "x", 1, *cell, 0, v) for cell, v in zip(CELLS, values)], orient="row",
        schema={"reporting_month": pl.Date, "indicator_id": pl.String, "indicator_version": pl.Int32,
                "imd_vintage": pl.String, "breakdown": pl.String, "group": pl.String,
                "numerator": pl.Int64, "denominator": pl.Int64})


def _hidden(controlled: pl.DataFrame) -> list[str]:
    return sorted(controlled.filter("is_suppressed")["group"].to_list())


def test_the_private_record_says_what_a_release_hid_and_a_plain_re_run_changes_nothing():
    first, _, figures = protect_month(_counts([30, 7, 10, 13]), RELATIONS, EXACT, primary_vintage="IMD2025")
    assert _hidden(first) == ["a", "b"]
    counts, structure = figures["release"]
    dens = counts.filter(population="x@1:den").sort("group")
    assert dens.select("group", "value", "is_hidden").rows() == [
        ("a", 7, True), ("all", 30, False), ("b", 10, True), ("c", 13, False)]
    assert set(structure) >= {"classes", "identities", "gap_cells", "quality_cells"}
    again, _, again_figures = protect_month(_counts([30, 7, 10, 13]), RELATIONS, EXACT, primary_vintage="IMD2025",
                                            earlier=[figures["release"]])
    assert _hidden(again) == ["a", "b"] and again_figures["n_earlier_releases"] == 1


def test_a_count_small_in_the_first_release_stays_covered_when_it_grows_past_the_threshold():
    # Release 1: a = 7 (small, hidden) with complement b. Release 2: one patient added to a (8, not
    # small now). It stays hidden, and what is left must still allow release 1's a anywhere in 1-7:
    # a reader who knows the patient went to a reads a - 1 from release 2's interval for a.
    first, _, figures = protect_month(_counts([30, 7, 10, 13]), RELATIONS, EXACT, primary_vintage="IMD2025")
    assert _hidden(first) == ["a", "b"]
    linked, _, _ = protect_month(_counts([31, 8, 10, 13]), RELATIONS, EXACT, primary_vintage="IMD2025",
                                 earlier=[figures["release"]])
    assert {"a", "b"} <= set(_hidden(linked))
    # a + b = 31 - 13 = 18 with b >= 0 leaves a anywhere in 0-18: release 1's a (a - 1) in 0-17, covering 1-7.
    alone, _, _ = protect_month(_counts([31, 8, 10, 13]), RELATIONS, EXACT, primary_vintage="IMD2025")
    assert _hidden(alone) == []  # on its own nothing is small: a = 8 shown, so release 1's a = 7
