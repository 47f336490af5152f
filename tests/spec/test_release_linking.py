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


def test_a_re_send_cannot_unsay_what_the_first_release_showed_and_still_publishes():
    # Rounded to 5 this time, with four parts. Release 1: 48 = 12 + 12 + 12 + 12, all shown (50;
    # 10, 10, 10, 10). A shown 10 is 8-12 and a shown 50 is 48-52, so the four parts add up to at
    # least 48 and each is at most 12: every part is exactly 12, from release 1 alone. The extract
    # is re-sent with a correction, 7 of a's patients belonging to b: 48 = 5 + 19 + 12 + 12.
    # A reader who holds release 1 and knows the exact change reads today's a = 12 - 7 = 5 whatever
    # release 2 hides, so no suppression can hold it to 1-7 for them: that need is cut to what
    # release 1 already said (the audit once hid every count around a, then raised, and the month
    # never published). A reader of release 2 alone must still find a anywhere in 1-7.
    from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5

    cells = [("IMD2025", "overall", "all"), *[("IMD2025", "g", g) for g in "abcd"]]

    def counts(values):
        return pl.DataFrame([(MONTH, "x", 1, *cell, 0, v) for cell, v in zip(cells, values)], orient="row",
                            schema=_counts([0, 0, 0, 0]).schema)

    relations = [(cells[0], cells)]
    first, _, figures = protect_month(counts([48, 12, 12, 12, 12]), relations, NHS_SUPPRESS_ROUND5, primary_vintage="IMD2025")
    assert _hidden(first) == []
    second, _, second_figures = protect_month(counts([48, 5, 19, 12, 12]), relations, NHS_SUPPRESS_ROUND5,
                                              primary_vintage="IMD2025", earlier=[figures["release"]])
    assert second_figures["n_needs_cut_by_earlier_releases"] >= 1
    hidden = _hidden(second)
    assert "a" in hidden and len(hidden) == 2  # a and one complement, not every part
    # Release 2 alone: a and the other hidden part add up to the shown total less the shown parts,
    # at most (50 + 2) - (10 - 2) - (10 - 2) = 36 here; the other part takes any rest (it is at
    # least 0), so a can be anything from 0 to that: 1-7 stays open.
    shown = dict(second.filter(~pl.col("is_suppressed")).select("group", "denominator").rows())
    assert "all" in shown and len(shown) == 3
    assert (shown["all"] + 2) - sum(shown[g] - 2 for g in shown if g != "all") >= 7
