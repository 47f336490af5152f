"""Spec: secondary suppression when a hidden cell is exposed only through a chain of relations.

Found by the indicator library (a women-only maternity indicator in a small practice
population): every cell of the exposed cell's own relations was already hidden, yet the
visible total and the visible 'not a member' count still determined it. As a literal table:

    cell                   count  why hidden
    total                  14
    core20                 2      1-7
    rest                   12     complement of core20 in total = core20 + rest
    core20 & not member    2      1-7
    rest & member          1      1-7
    rest & not member      11     complement of (core20 & not member) in 'not member'
    not member             13

Visible total and 'not member' give core20 + rest = 14 and rest&not + core20&not = 13;
with core20 = core20&not and rest = rest&not + rest&member, that pins rest & member = 1.
(Counts corrected so every relation holds: the first version of this table did not add
up, which the new audit, solving the relations as a reader would, refuses.) These tests use a profile that suppresses 1-7 but rounds nothing, so the reader knows every
visible count exactly (the worst case); with rounding to 5 the same table needs less.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5, DisclosureProfile, complementary_suppression

EXACT = DisclosureProfile("suppress_only", "1-7 suppressed, nothing rounded", 7, "suppress")
VALUES = {"total": 14, "core20": 2, "rest": 12, "core20_not": 2, "rest_member": 1, "rest_not": 11, "not_member": 13}
RELATIONS = [
    ("total", ["total", "core20", "rest"]),
    ("rest", ["rest", "rest_not", "rest_member"]),
    ("core20", ["core20", "core20_not"]),
    ("not_member", ["not_member", "rest_not", "core20_not"]),
]
PRIMARY = {"core20", "core20_not", "rest_member"}


def known(count: int, rounded: bool) -> tuple[int, int]:
    """What a reader knows of a visible count: exactly, or (suppress 1-7, round to 5) the
    counts 8+ that round to the shown value, e.g. 13 is shown as 15, so 13-17."""
    if not rounded:
        return count, count
    shown = (count + 2) // 5 * 5
    return (0, 0) if shown == 0 else (max(shown - 2, 8), shown + 2)


def interval(hidden: set, cell: str, rounded: bool = False) -> tuple[float, float]:
    """Lowest and highest value of `cell` a reader can derive: visible counts as `known`,
    hidden ones only non-negative, every relation holding (two LPs)."""
    cells = sorted(VALUES)
    a_eq = np.array([[(1.0 if c == total else -1.0) if c in members else 0.0 for c in cells]
                     for total, members in RELATIONS])
    bounds = [(0, None) if c in hidden else known(VALUES[c], rounded) for c in cells]
    objective = np.array([1.0 if c == cell else 0.0 for c in cells])
    low = linprog(objective, A_eq=a_eq, b_eq=np.zeros(len(a_eq)), bounds=bounds, method="highs")
    high = linprog(-objective, A_eq=a_eq, b_eq=np.zeros(len(a_eq)), bounds=bounds, method="highs")
    return low.fun, (np.inf if high.status == 3 else -high.fun)


def test_without_the_extra_cell_the_member_count_would_be_recoverable():
    assert interval(PRIMARY | {"rest", "rest_not"}, "rest_member") == (1.0, 1.0)


def test_a_cell_exposed_through_a_chain_gets_more_hidden_not_an_error():
    hidden = complementary_suppression(VALUES, PRIMARY, RELATIONS, profile=EXACT)
    assert PRIMARY < hidden
    for cell in PRIMARY:
        low, high = interval(hidden, cell)
        assert low <= 1 and high >= 7, (cell, low, high)


def test_rounding_to_five_protects_part_of_the_chain_by_itself():
    hidden = complementary_suppression(VALUES, PRIMARY, RELATIONS, profile=NHS_SUPPRESS_ROUND5)
    exact = complementary_suppression(VALUES, PRIMARY, RELATIONS, profile=EXACT)
    assert PRIMARY <= hidden and len(hidden) <= len(exact)
    for cell in PRIMARY:
        low, high = interval(hidden, cell, rounded=True)
        assert low <= 1 and high >= 7, (cell, low, high)
