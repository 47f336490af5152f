"""Spec: secondary suppression when a hidden cell is exposed only through a chain of relations.

Found by the indicator library (a women-only maternity indicator in a small practice
population): every cell of the exposed cell's own relations was already hidden, yet the
visible total and the visible 'not a member' count still determined it, and suppression
stopped with an error instead of hiding one more cell. As a literal table:

    cell                   count  why hidden
    total                  13
    core20                 2      1-7
    rest                   11     complement of core20 in total = core20 + rest
    core20 & not member    1      1-7
    rest & member          1      1-7
    rest & not member      11     complement of (core20 & not member) in 'not member'
    not member             12

Visible total and 'not member' give core20 + rest = 13 and rest&not + core20&not = 12;
with core20 = core20&not and rest = rest&not + rest&member, that pins rest & member = 1.
"""

from __future__ import annotations

from pipelines.segmentation.disclosure import _recoverable, complementary_suppression

VALUES = {"total": 13, "core20": 2, "rest": 11, "core20_not": 1, "rest_member": 1, "rest_not": 11, "not_member": 12}
RELATIONS = [
    ("total", ["total", "core20", "rest"]),
    ("rest", ["rest", "rest_not", "rest_member"]),
    ("core20", ["core20", "core20_not"]),
    ("not_member", ["not_member", "rest_not", "core20_not"]),
]
PRIMARY = {"core20", "core20_not", "rest_member"}


def test_a_cell_exposed_through_a_chain_gets_one_more_cell_hidden_not_an_error():
    hidden = complementary_suppression(VALUES, PRIMARY, RELATIONS)
    assert PRIMARY <= hidden
    assert _recoverable(hidden, RELATIONS) == []
    # The extra cell is the smallest visible one touching the chain ('not_member', 12),
    # so the total stays published.
    assert hidden == PRIMARY | {"rest", "rest_not", "not_member"}


def test_without_the_extra_cell_the_member_count_would_be_recoverable():
    assert _recoverable(PRIMARY | {"rest", "rest_not"}, RELATIONS) == ["rest_member"]
