"""A release of areas above ones that published first: what those releases already tell is not its to hide.

Worked by hand, with a profile that suppresses 1-7 and rounds nothing. Two ICBs, A and B, each
published its own table first: total t = p + q, with q <= s (q's patients are among s's):

    A and B each: t = 20 shown, s = 19 shown, p = 1 (small: hidden), q = 19 (hidden with it,
    or p = t - q would show it).

From its own release a reader knows q <= 19, so p = 20 - q >= 1: p is anywhere in 1..20, which
covers 1..7. The region R = A + B (t = 40, s = 38, p = 2, q = 38) comes later, its ICB rows
repeating A's and B's releases. R's p is small (2), and the two ICB releases alone already
tell p_R = p_A + p_B >= 2: no pattern of R can let a reader place it at 1. Its need is
therefore 2..7, not 1..7 (the prior of `CountProblem.prior_sums`). Hiding p_R and q_R meets
it (p_R anywhere in 2..40); t_R = 20 + 20 and s_R = 19 + 19 are known anyway and stay shown.
Without the ICB releases as a prior, the 1..7 need cannot be met and the audit gives up.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.segmentation.disclosure import CountProblem, DisclosureProfile, suppress

EXACT = DisclosureProfile("suppress_only", "1-7 suppressed, nothing rounded", 7, "suppress")
NAMES = ["t", "p", "q", "s"]
AREAS = ["A", "B", "R"]
VALUES = {"A": [20, 1, 19, 19], "B": [20, 1, 19, 19], "R": [40, 2, 38, 38]}


def _problem(linked: bool) -> CountProblem:
    keys = [(area, name) for area in AREAS for name in NAMES]
    index = {key: i for i, key in enumerate(keys)}
    problem = CountProblem(keys=keys, values=[v for area in AREAS for v in VALUES[area]])
    for area in AREAS:
        t, p, q, s = (index[(area, n)] for n in NAMES)
        problem.relations.append(([t, p, q], [1.0, -1.0, -1.0]))
        problem.at_most.append((q, s))
    for name in NAMES:
        problem.relations.append(([index[("R", name)], index[("A", name)], index[("B", name)]], [1.0, -1.0, -1.0]))
    problem.units = [[v] for v in range(len(keys))]
    problem.unit_keys = [repr(key) for key in keys]
    problem.unit_priority = [0] * len(keys)
    shown_below = {index[(area, n)] for area in ("A", "B") for n in ("t", "s")}
    problem.kept_shown = set(shown_below)
    if linked:
        lower, upper = np.zeros(len(keys)), np.full(len(keys), np.inf)
        for v in shown_below:
            lower[v] = upper[v] = problem.values[v]
        problem.released.append((lower, upper, np.zeros(len(keys))))
        problem.prior_blocks = {index[key]: key[0] for key in keys if key[0] != "R"}
        problem.prior_sums = {index[("R", n)]: [index[("A", n)], index[("B", n)]] for n in NAMES}
    return problem


def test_a_need_the_earlier_area_releases_already_cut_is_met_at_what_they_allow():
    problem = _problem(linked=True)
    index = {key: i for i, key in enumerate(problem.keys)}
    primary = {index[(area, n)] for area in ("A", "B") for n in ("p", "q")} | {index[("R", "p")]}
    result = suppress(problem, EXACT, primary_units=primary)
    hidden = sorted(problem.keys[u] for u in result.hidden_units)
    assert hidden == [("A", "p"), ("A", "q"), ("B", "p"), ("B", "q"), ("R", "p"), ("R", "q")]
    # The ICB releases' prior of p_R, worked above: 1 + 1 up to 20 + 20.
    assert result.n_prior_cut == 1


def test_without_the_earlier_area_releases_the_need_cannot_be_met():
    problem = _problem(linked=False)
    index = {key: i for i, key in enumerate(problem.keys)}
    primary = {index[(area, n)] for area in ("A", "B") for n in ("p", "q")} | {index[("R", "p")]}
    with pytest.raises(RuntimeError, match="no visible count is left to hide"):
        suppress(problem, EXACT, primary_units=primary)
