"""An attacker who tries to recover every hidden count of a published gap table by subtraction.

Written independently of `pipelines.segmentation.gaps._relations`: the attacker knows only
the published table's documented structure (every breakdown's groups add up to the overall
count; deciles to quintiles to Core20/rest; detailed ethnic groups to broad ones; Sub-ICBs
to ICBs; the cells of an 'A|B' intersection to both margins) and, to be stronger than any
real reader, the *true* value of every visible count (as if nothing were rounded). For
each hidden count it solves two linear programmes (minimise and maximise the count subject
to every relation and non-negativity); the count is recovered when both give the same
value.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.optimize import linprog

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
            split = {"core20": ["1"], "rest": ["2", "3", "4", "5"], "unknown": ["unknown"]}
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


def recovered_cells(
    published: pl.DataFrame, truth: pl.DataFrame, column: str, fine_to_coarse: dict[str, dict[str, str]]
) -> list[tuple]:
    """Return the hidden `column` counts of `published` that the attacker pins to one value.

    Arguments:
        published: the published gap table (hidden counts are null, or 0 with is_suppressed: the
            attacker treats every such 0 as unknown, and a recovery counts only when the
            count really was hidden).
        truth: the same table built without disclosure control (profile 'none').
        column: 'numerator' or 'denominator'.
        fine_to_coarse: for 'ethnicity_16' and 'sub_icb', the broad group / ICB of each label.
    """
    cell = ["imd_vintage", "breakdown", "group"]
    joined = published.select(*KEY, *cell, pl.col(column).alias("shown"), "is_suppressed").join(
        truth.select(*KEY, *cell, pl.col(column).alias("true")), on=[*KEY, *cell], how="inner"
    )
    hidden_rows = pl.col("shown").is_null() | (pl.col("is_suppressed") & (pl.col("shown") == 0))
    joined = joined.with_columns(hidden_rows.alias("hidden"))
    recovered = []
    for key, table in joined.group_by(KEY, maintain_order=True):
        hidden = [tuple(r) for r in table.filter("hidden").select(cell).rows()]
        if not hidden:
            continue
        true = {tuple(r[:3]): r[3] for r in table.select(*cell, "true").rows()}
        shown = {tuple(r[:3]): r[3] for r in table.select(*cell, "shown").rows()}
        index = {c: i for i, c in enumerate(hidden)}
        rows, rhs = [], []
        for total, parts in _relations(list(true), fine_to_coarse):
            coefficients = np.zeros(len(hidden))
            constant = 0.0
            for c, sign in [(total, 1.0)] + [(p, -1.0) for p in parts]:
                if c in index:
                    coefficients[index[c]] += sign
                elif c in true:
                    constant += sign * true[c]
            if coefficients.any():
                rows.append(coefficients)
                rhs.append(-constant)
        if not rows:
            continue
        a_eq, b_eq = np.array(rows), np.array(rhs)
        for c, i in index.items():
            objective = np.zeros(len(hidden))
            objective[i] = 1.0
            low = linprog(objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            high = linprog(-objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            assert low.status == 0 and high.status in (0, 3), (low.message, high.message)
            # A cell shown as a genuine 0 beside a hidden count is not a hidden count.
            if high.status == 0 and -high.fun - low.fun < 0.5 and shown[c] != true[c]:
                recovered.append((*key, *c, round(low.fun)))
    return recovered
