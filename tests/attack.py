"""An attacker who tries to recover every hidden count of a published gap table by subtraction.

Written independently of `pipelines.segmentation.gaps._relations` and of the suppression
code: the attacker knows only what any reader knows.

- The published table's documented structure: every breakdown's groups add up to the
  overall count; deciles to quintiles to Core20/rest; detailed ethnic groups to broad
  ones; Sub-ICBs to ICBs; the cells of an 'A|B' intersection to both margins.
- The disclosure profile's rule, which is public and named on every row: from it, each
  visible count stands for a range of true counts (under suppress 1-7 and round to 5, a
  shown 10 was 8-12 and a shown 0 was 0), found here by applying the rule to every
  candidate count.
- That counts are not negative and that a numerator never exceeds its denominator (both
  columns are attacked together).

For each hidden count it solves two linear programmes, minimising and maximising the count
subject to all of that. A small count (1 to the profile's threshold) is *recovered* when
the interval left does not cover every value from 1 to the threshold: the table would
then say more about it than "it was small". Any other hidden count (a complement) is
recovered when it is pinned to one value, unless a visible 0 already tells every reader it
is 0: a part of a total shown as 0, or the numerator of a denominator shown as 0. (Since a
hidden row hides its numerator too, a hidden numerator under a margin published as "0 of
500" is pinned to 0 by that margin; publishing the margin's 0 is what says so, not the
hiding.)
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from pipelines.segmentation.disclosure import apply_profile, get_profile

KEY = ["reporting_month", "indicator_id", "indicator_version"]


def _relations(cells: list[tuple], fine_to_coarse: dict[str, dict[str, str]]) -> list[tuple]:
    """Return (total, parts) relations among (vintage, breakdown, group) cells of one table."""
    present: dict[tuple, list[str]] = {}
    for vintage, breakdown, group in cells:
        present.setdefault((vintage, breakdown), []).append(group)
    overall = next((c for c in cells if c[1] == "overall"), None)
    relations = []
    for (vintage, breakdown), groups in present.items():
        if breakdown != "overall" and overall is not None:
            relations.append((overall, [(vintage, breakdown, g) for g in groups]))
        if breakdown == "imd_quintile" and (vintage, "imd_decile") in present:
            for q in groups:
                parts = ["unknown"] if q == "unknown" else [str(2 * int(q) - 1), str(2 * int(q))]
                relations.append(((vintage, breakdown, q), [(vintage, "imd_decile", d) for d in parts]))
        if breakdown == "core20" and (vintage, "imd_quintile") in present:
            split = {"core20": ["1"], "rest": ["2", "3", "4", "5", "unknown"], "unknown": ["unknown"]}
            for c in groups:
                relations.append(((vintage, breakdown, c), [(vintage, "imd_quintile", q) for q in split[c]]))
        if breakdown in fine_to_coarse:
            coarse_name = {"ethnicity_16": "ethnicity_broad", "sub_icb": "icb"}[breakdown]
            by_coarse: dict[str, list] = {}
            for g in groups:
                by_coarse.setdefault(fine_to_coarse[breakdown].get(g, g), []).append((vintage, breakdown, g))
            for coarse, parts in by_coarse.items():
                relations.append(((vintage, coarse_name, coarse), parts))
        if "|" in breakdown:
            first, second = breakdown.split("|")
            for position, margin in enumerate((first, second)):
                margin_vintage = next((v for v, b in present if b == margin and (v == vintage or margin not in (
                    "imd_decile", "imd_quintile", "core20"))), None)
                if margin_vintage is None:
                    continue
                by_label: dict[str, list] = {}
                for g in groups:
                    by_label.setdefault(g.split("|")[position], []).append((vintage, breakdown, g))
                for label, parts in by_label.items():
                    relations.append(((margin_vintage, margin, label), parts))
    return relations


def _ranges(profile_name: str, shown: list[int]) -> dict[int, tuple[int, int]]:
    """Return, for each distinct shown value, the lowest and highest true count it can stand for."""
    profile = get_profile(profile_name)
    top = max(shown, default=0) + 20
    candidates = apply_profile(pl.DataFrame({"n": range(top), "true": range(top)}), ["n"], profile)
    visible = candidates.filter(~pl.col("is_suppressed"))
    out = {}
    for value in set(shown):
        possible = visible.filter(pl.col("n") == value)["true"]
        assert possible.len(), f"{profile_name} never shows {value}"
        out[value] = (possible.min(), possible.max())
    return out


def _profile_of(published: pl.DataFrame) -> tuple[str, int, bool]:
    """The one disclosure profile a published table names: (name, small-count threshold, whether it redacts)."""
    profiles = published["disclosure_profile"].unique().to_list()
    assert len(profiles) == 1, profiles
    profile = get_profile(profiles[0])
    return profiles[0], profile.small_count_threshold, profile.small_count_action == "redact"


def recovered_cells(
    published: pl.DataFrame, truth: pl.DataFrame, fine_to_coarse: dict[str, dict[str, str]], *, integer: bool = False
) -> list[tuple]:
    """Return the hidden counts of `published` that the attacker narrows down.

    Arguments:
        published: the published gap table (hidden counts are null, or 0 with is_suppressed:
            the attacker treats every such 0 as unknown).
        truth: the same table built without disclosure control (profile 'none'), used only
            to judge the attacker's result, never as the attacker's knowledge.
        fine_to_coarse: for 'ethnicity_16' and 'sub_icb', the broad group / ICB of each label.
        integer: solve integer programmes instead (counts are whole numbers, which can only
            narrow the intervals further); slower, and without the joint-LP shortcut.

    Returns:
        (month, indicator, version, vintage, breakdown, group, column, true count, lowest,
        highest) for every recovered count; [] when the attack fails everywhere.
    """
    cell = ["imd_vintage", "breakdown", "group"]
    columns = ("numerator", "denominator")
    profile_name, threshold, redacts = _profile_of(published)
    # Cells the table never publishes (an intersection with an 'unknown' part) are unknowns to the
    # reader too: they come from the truth with no published counts.
    joined = truth.select(*KEY, *cell, *[pl.col(c).alias(f"true_{c}") for c in columns]).join(
        published.select(*KEY, *cell, *columns, "is_suppressed").with_columns(pl.lit(True).alias("_published")),
        on=[*KEY, *cell], how="left",
    ).with_columns(pl.col("_published").fill_null(False), pl.col("is_suppressed").fill_null(True))
    shown_values = [v for c in columns for v in joined[c].drop_nulls().to_list()]
    ranges = _ranges(profile_name, shown_values)
    recovered = []
    for key, table in joined.group_by(KEY, maintain_order=True):
        rows = table.rows(named=True)
        cells = [tuple(r[c] for c in cell) for r in rows]
        recovered += _attack_key(key, rows, cells, _relations(cells, fine_to_coarse), threshold, redacts, ranges, integer)
    return recovered


def recovered_across_areas(
    published: pl.DataFrame, truth: pl.DataFrame, sums: dict[str, list[str]], fine_to_coarse: dict[str, dict[str, str]],
    *, integer: bool = False, earlier: list[tuple[pl.DataFrame, pl.DataFrame]] = (),
) -> list[tuple]:
    """Return the hidden counts a reader holding several areas' tables side by side narrows down.

    `published` and `truth` carry a `geography_code` column: one gap table per area. Besides
    each table's own structure, the reader knows that an area's count in every cell is the
    sum of its parts' counts in that cell (`sums`: area code -> part codes; a region is its
    ICBs). Otherwise as `recovered_cells`; a recovered count's key starts with its area.

    `earlier`: earlier releases of the same month's tables, each `(published, truth)`, held by
    the strongest reader of a re-send, who knows exactly how every true count changed since
    (e.g. which one patient was added). A count an earlier release showed is then known today
    within its range there plus the change; a count an earlier release hid is a target too,
    and is recovered when today's knowledge narrows what the earlier release hid: a count
    small then (1 to the threshold) must still allow every value of 1..threshold plus the
    change, a complement then must not be pinned.
    """
    cell = ["imd_vintage", "breakdown", "group"]
    columns = ("numerator", "denominator")
    profile_name, threshold, redacts = _profile_of(published)
    place = ["geography_code", *cell]

    def joined_with(published: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
        return truth.select(*KEY, *place, *[pl.col(c).alias(f"true_{c}") for c in columns]).join(
            published.select(*KEY, *place, *columns, "is_suppressed").with_columns(pl.lit(True).alias("_published")),
            on=[*KEY, *place], how="left",
        ).with_columns(pl.col("_published").fill_null(False), pl.col("is_suppressed").fill_null(True))

    joined = joined_with(published, truth)
    before = [joined_with(*release) for release in earlier]
    ranges = _ranges(profile_name, [v for frame in (joined, *before) for c in columns for v in frame[c].drop_nulls().to_list()])
    earlier_of: dict = {}  # indicator key -> per earlier release: {(place, column): (shown or None, true then)}
    for position, frame in enumerate(before):
        for row in frame.iter_rows(named=True):
            found = earlier_of.setdefault(tuple(row[k] for k in KEY), [{} for _ in before])[position]
            for c in columns:
                hidden = row[c] is None or (redacts and row["is_suppressed"] and row[c] == 0)
                found[(tuple(row[k] for k in place), c)] = (None if hidden else row[c], row[f"true_{c}"])
    recovered = []
    for key, table in joined.group_by(KEY, maintain_order=True):
        rows = table.sort(place).rows(named=True)
        cells = [tuple(r[c] for c in place) for r in rows]
        relations = []
        for area in sorted({c[0] for c in cells}):
            own = [c[1:] for c in cells if c[0] == area]
            relations += [((area, *total), [(area, *p) for p in parts]) for total, parts in _relations(own, fine_to_coarse)]
        present = set(cells)
        for area, parts in sums.items():
            for c in cells:
                if c[0] == area:
                    relations.append((c, [(p, *c[1:]) for p in parts if (p, *c[1:]) in present]))
        recovered += _attack_key(key, rows, cells, relations, threshold, redacts, ranges, integer,
                                 earlier=earlier_of.get(tuple(key), []))
    return recovered


def own_releases_alone(published: pl.DataFrame, own: pl.DataFrame) -> pl.DataFrame:
    """Return what a reader held before a national release: each ICS's own table, every area above it unknown.

    `published` is the national release (`geography_level`, `geography_code`); `own` the ICSs'
    own gap tables, each with its ICB's `geography_code`. Attacked with `recovered_across_areas`,
    this is what the ICS releases alone tell about every count, the areas above included
    (as sums of ICB counts): what a national release that repeats them cannot take back.
    """
    columns = [c for c in published.columns if c in own.columns]
    above = published.filter(pl.col("geography_level") != "icb").select(columns).with_columns(
        pl.lit(None, pl.Int64).alias("numerator"), pl.lit(None, pl.Int64).alias("denominator"),
        pl.lit(True).alias("is_suppressed"))
    return pl.concat([own.select(columns), above])


def _attack_key(key, rows, cells, relations, threshold, redacts, ranges, integer, earlier=()) -> list[tuple]:
    """Attack the hidden counts of one indicator's rows: `cells` name the rows, `relations` are (total, parts).

    `earlier`: per earlier release, {(cell, column): (shown value or None, true count then)}
    (`recovered_across_areas`).
    """
    columns = ("numerator", "denominator")
    recovered = []
    # Hidden: null, or for a redacting profile a 0 in a suppressed row (which may also be
    # a true 0: the attacker cannot tell, so treats it as unknown).
    hidden = {(c, col) for c, r in zip(cells, rows) for col in columns
              if r[col] is None or (redacts and r["is_suppressed"] and r[col] == 0)}
    variables = [(c, col) for col in columns for c in cells]
    # What each earlier release hid: (variable, small then, the change since).
    hidden_then = [(v, 1 <= then[v][1] <= threshold, rows[cells.index(v[0])][f"true_{v[1]}"] - then[v][1])
                   for then in earlier for v in variables if v in then and then[v][0] is None]
    if not hidden and not hidden_then:
        return recovered
    index = {v: i for i, v in enumerate(variables)}
    position = {c: i for i, c in enumerate(cells)}
    bounds = []
    for c, col in variables:
        shown = rows[position[c]][col]
        low, high = (0, None) if (c, col) in hidden else ranges[shown]
        for then in earlier:
            shown_then, true_then = then.get((c, col), (None, None))
            if shown_then is not None:  # its range then, moved by the known change
                change = rows[position[c]][f"true_{col}"] - true_then
                low = max(low, ranges[shown_then][0] + change)
                high = ranges[shown_then][1] + change if high is None else min(high, ranges[shown_then][1] + change)
        bounds.append((low, high))
    a_eq = []
    for total, parts in relations:
        for col in columns:
            row = np.zeros(len(variables))
            for c, sign in [(total, 1.0)] + [(p, -1.0) for p in parts]:
                if (c, col) in index:  # a group with no row has no patients: 0
                    row[index[(c, col)]] += sign
            if row.any():
                a_eq.append(row)
    a_ub = []
    for c in cells:  # numerator <= denominator
        row = np.zeros(len(variables))
        row[index[(c, "numerator")]], row[index[(c, "denominator")]] = 1.0, -1.0
        a_ub.append(row)
    a_eq, a_ub = np.array(a_eq), np.array(a_ub)
    true_of = {t: rows[position[t[0]]][f"true_{t[1]}"] for t in variables}
    public_zero = _public_zeros(variables, index, hidden, rows, cells, a_eq, a_ub)
    # What must stay possible for the attack to fail on a cell: every value from 1 to the
    # threshold for a small count (moved by the change since, for a count small in an earlier
    # release); some value other than the truth for the rest (a complement).
    needs: dict = {}
    for t in hidden:
        v = true_of[t]
        if 1 <= v <= threshold:
            needs.setdefault(t, []).append((1, threshold))
        elif rows[position[t[0]]]["_published"] and t not in public_zero:
            needs.setdefault(t, []).append(None)
    for t, small, change in hidden_then:
        if small:
            needs.setdefault(t, []).append((1 + change, threshold + change))
        elif rows[position[t[0]]]["_published"] and t not in public_zero:
            needs.setdefault(t, []).append(None)
    need_high = {t: max(true_of[t] + 1 if n is None else n[1] for n in found) for t, found in needs.items()}
    need_low = {t: min(true_of[t] - 1 if n is None else n[0] for n in found) for t, found in needs.items()}
    targets = sorted(needs)
    open_cells = targets if integer else _witnessed(targets, index, need_low, need_high, a_eq, a_ub, bounds)
    for target in open_cells:
        objective = np.zeros(len(variables))
        objective[index[target]] = 1.0
        low, high = _solve(objective, a_eq, a_ub, bounds, integer), _solve(-objective, a_eq, a_ub, bounds, integer)
        assert low.status == 0 and high.status in (0, 3), (low.message, high.message)
        lowest, highest = low.fun, (float("inf") if high.status == 3 else -high.fun)
        # A small count's range must stay open at both ends; a complement must not be pinned.
        narrowed = any(lowest > n[0] + 1e-6 or highest < n[1] - 1e-6 if n is not None else highest - lowest < 0.5
                       for n in needs[target])
        if narrowed:
            recovered.append((*key, *target[0], target[1], true_of[target], lowest, highest))
    return recovered


def _public_zeros(variables, index, hidden, rows, cells, a_eq, a_ub) -> set:
    """Return the hidden counts a visible 0 makes known: parts of a total known to be 0, numerators of a 0."""
    zero = {i for i, (c, col) in enumerate(variables) if (c, col) not in hidden and rows[cells.index(c)][col] == 0}
    changed = True
    while changed:
        changed = False
        implied = []
        for row in a_eq:  # total - parts = 0: a total of 0 makes every part 0
            totals, parts = np.flatnonzero(row > 0).tolist(), np.flatnonzero(row < 0).tolist()
            if totals and all(t in zero for t in totals):
                implied += parts
        for row in a_ub:  # numerator - denominator <= 0: the numerator of a 0 is 0
            if all(d in zero for d in np.flatnonzero(row < 0).tolist()):
                implied += np.flatnonzero(row > 0).tolist()
        for i in implied:
            if i not in zero:
                zero.add(i)
                changed = True
    return {variables[i] for i in zero if variables[i] in hidden}


def _solve(objective, a_eq, a_ub, bounds, integer: bool):
    """Minimise `objective` over the attacker's knowledge: a real-valued LP, or whole numbers."""
    if not integer:
        return linprog(objective, A_ub=a_ub, b_ub=np.zeros(len(a_ub)), A_eq=a_eq, b_eq=np.zeros(len(a_eq)),
                       bounds=bounds, method="highs")
    lower = np.array([b[0] for b in bounds], dtype=float)
    upper = np.array([np.inf if b[1] is None else b[1] for b in bounds], dtype=float)
    constraints = [LinearConstraint(a_eq, 0.0, 0.0), LinearConstraint(a_ub, -np.inf, 0.0)]
    result = milp(objective, constraints=constraints, bounds=Bounds(lower, upper), integrality=np.ones(len(objective)))
    return result  # status 0 optimal, 3 unbounded, as linprog


def _witnessed(targets, index, need_low, need_high, a_eq, a_ub, bounds) -> list:
    """Return the targets that two joint LPs cannot show to be open; the rest are open.

    One LP pushes every target up towards its `need_high` at once, another pulls every
    target down towards its `need_low`; any feasible point where a target reaches a value
    proves that value possible, so a target reaching both is not narrowed down. This only
    saves time: every target it cannot clear gets its own two LPs.
    """
    n = a_eq.shape[1]
    reached = {}
    for sign, need in ((-1.0, need_high), (1.0, need_low)):
        remaining = list(targets)
        while remaining:  # rounds on what is left, while they make progress
            k = len(remaining)
            picks = np.zeros((k, n))
            for i, t in enumerate(remaining):
                picks[i, index[t]] = 1.0
            caps = [(None, need[t]) if sign < 0 else (need[t], None) for t in remaining]
            # up: u <= x, u <= need, maximise sum u; down: d >= x, d >= need, minimise sum d.
            upper = np.vstack([np.hstack([a_ub, np.zeros((len(a_ub), k))]), np.hstack([sign * picks, -sign * np.eye(k)])])
            result = linprog(np.r_[np.zeros(n), sign * np.ones(k)], A_ub=upper, b_ub=np.zeros(len(upper)),
                             A_eq=np.hstack([a_eq, np.zeros((len(a_eq), k))]), b_eq=np.zeros(len(a_eq)),
                             bounds=bounds + caps, method="highs")
            assert result.status == 0, result.message
            ok = [result.x[n + i] >= need[t] - 1e-6 if sign < 0 else result.x[n + i] <= need[t] + 1e-6
                  for i, t in enumerate(remaining)]
            if not any(ok):
                break
            remaining = [t for t, good in zip(remaining, ok) if not good]
        for t in targets:
            reached[t] = reached.get(t, True) and t not in remaining
    return [t for t in targets if not reached[t]]
