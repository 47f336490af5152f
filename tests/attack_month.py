"""An attacker holding every published table of a month at once (and, optionally, two releases of it).

Written apart from the pipeline's suppression code (pipelines/segmentation/month_disclosure.py,
populations.py, disclosure.py): it shares only the published tables' documented layout.

What it knows:

- every published gap-table row (all indicators) and every published deprivation-quality
  count, with the profile's public rule (a shown 10 was 8-12, a shown 0 was 0);
- each breakdown's documented structure for every indicator (tests/attack.py `_relations`),
  'ALL' = the sum of the practices, each vintage's match methods adding up to the practice's
  patients, 'matched' = the methods that give a decile, numerators never above denominators;
- every linear identity between the populations behind those counts, as the most informed
  reader would: found here from the patients themselves by exact elimination over every distinct
  membership pattern (the pipeline selects independent patterns first), applied in every cell
  where all the populations in it are published (indicators sharing a denominator; all ages
  minus adults = children per practice, from deprivation quality and two indicators);
- optionally an earlier release of the same month, and how each true count changed since
  (the strongest reader of a re-send: one who knows exactly which patient was added). A count
  this reader pins or narrows is not held against the later release when the earlier release
  alone (every later count hidden) already gives the same interval: it is reported apart
  (`known_from_earlier`), e.g. a count the earlier release showed and fixed exactly through its
  rounded neighbours, hidden later.

For every hidden count it solves min and max LPs (sparse, HiGHS) after a joint LP shortcut;
with `integer`, the counts it could not clear are attacked again as whole numbers (milp).
A small count is recovered when its interval misses some of 1..threshold; any other hidden
count when it is pinned to one value, unless a visible 0 above it already says it is 0.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from attack import _ranges, _relations

KEY = ["reporting_month", "indicator_id", "indicator_version"]
CELL = ["imd_vintage", "breakdown", "group"]
METHODS = ("postcode_lookup", "spatial", "lsoa_supplied", "practice_fallback", "outside_england", "invalid_postcode",
           "blank", "unmatched")
MATCHED = ("postcode_lookup", "spatial", "lsoa_supplied", "practice_fallback")


class _System:
    def __init__(self):
        self.index: dict = {}
        self.true: list[int] = []
        self.shown: list = []
        self.rows: list[dict] = []
        self.le: list[tuple[int, int]] = []
        self.constants: list[float] = []

    def var(self, key, true, shown):
        if key in self.index:
            i = self.index[key]
            if shown is not None and self.shown[i] is None:
                self.shown[i] = shown  # shown elsewhere: the reader has it
            return i
        self.index[key] = len(self.true)
        self.true.append(int(true))
        self.shown.append(shown)
        return self.index[key]

    def relation(self, terms: dict, constant: float = 0.0):
        terms = {k: v for k, v in terms.items() if abs(v) > 1e-12}
        if terms:
            self.rows.append(terms)
            self.constants.append(constant)


def _identities(memberships: pl.DataFrame) -> list[dict[str, float]]:
    """Return a basis of the linear identities among the populations, with whole-number coefficients.

    Exact Gaussian elimination with fractions over every distinct membership pattern (the
    pipeline picks independent rows first; this stays naive on purpose), then each
    null-space vector scaled to whole numbers, so integer programmes can meet them exactly.
    """
    from fractions import Fraction
    from math import lcm

    names = sorted(memberships["population"].unique().to_list())
    wide = (memberships.with_columns(pl.lit(1, pl.Int8).alias("x"))
            .pivot(on="population", index="patient_id", values="x").fill_null(0))
    patterns = wide.select([pl.col(n) for n in names]).unique().rows()
    k = len(names)
    pivots: dict[int, list] = {}  # pivot column -> reduced row
    for pattern in patterns:
        row = [Fraction(v) for v in pattern]
        for column, pivot_row in pivots.items():
            if row[column] != 0:
                factor = row[column]
                row = [a - factor * b for a, b in zip(row, pivot_row)]
        lead = next((j for j in range(k) if row[j] != 0), None)
        if lead is None:
            continue
        row = [v / row[lead] for v in row]
        for column in list(pivots):
            if pivots[column][lead] != 0:
                factor = pivots[column][lead]
                pivots[column] = [a - factor * b for a, b in zip(pivots[column], row)]
        pivots[lead] = row
    out = []
    for free in (j for j in range(k) if j not in pivots):
        vector = [Fraction(0)] * k
        vector[free] = Fraction(1)
        for column, row in pivots.items():
            vector[column] = -row[free]
        scale = lcm(*[v.denominator for v in vector])
        out.append({n: float(v * scale) for n, v in zip(names, vector) if v != 0})
    return out


def attack_month(gap: pl.DataFrame, gap_truth: pl.DataFrame, quality: pl.DataFrame | None, quality_truth: pl.DataFrame | None,
                 memberships: pl.DataFrame | None, fine_to_coarse: dict, *, primary_vintage: str, profile: str,
                 earlier: dict | None = None, integer: bool = False, integer_sample: int | None = None,
                 integer_time_limit: float = 600.0, solve: bool = True) -> dict:
    """Return {'targets': n, 'narrowed': [...], 'exact': [...], 'unsolved': [...]} for one month.

    `earlier`: an earlier release of the month the reader also holds, as {'shown': ..., 'true': ...}
    (this function's own output for it) and 'memberships' (that release's population memberships,
    for its identities); the reader knows exactly how each true count changed since.
    With `integer`, each hidden count (or a sample) is attacked as whole numbers: feasibility
    programmes, one per end of what must stay possible, each solved to a proof (a solution, or
    infeasibility); one that ends without a proof is reported as unsolved.
    """
    threshold = 7
    system = _System()
    month_rows = gap.join(gap_truth.select(*KEY, *CELL, pl.col("numerator").alias("tn"), pl.col("denominator").alias("td")),
                          on=[*KEY, *CELL], how="inner")
    cells_by_indicator: dict = {}
    for r in month_rows.iter_rows(named=True):
        cell = (r["imd_vintage"], r["breakdown"], r["group"])
        pop = f"{r['indicator_id']}@{r['indicator_version']}"
        n = system.var((pop + ":num", cell), r["tn"], r["numerator"])
        d = system.var((pop + ":den", cell), r["td"], r["denominator"])
        system.le.append((n, d))
        cells_by_indicator.setdefault(pop, set()).add(cell)
    # Unpublished intersection cells (an 'unknown' part) are unknowns too: present in the truth only.
    for r in gap_truth.join(gap.select(*KEY, *CELL), on=[*KEY, *CELL], how="anti").iter_rows(named=True):
        cell = (r["imd_vintage"], r["breakdown"], r["group"])
        pop = f"{r['indicator_id']}@{r['indicator_version']}"
        system.var((pop + ":num", cell), r["numerator"], None)
        system.var((pop + ":den", cell), r["denominator"], None)
        cells_by_indicator.setdefault(pop, set()).add(cell)
    for pop, cells in cells_by_indicator.items():
        for total, parts in _relations(sorted(cells), fine_to_coarse):
            for column in (":num", ":den"):
                terms = {system.index[(pop + column, total)]: 1.0} if (pop + column, total) in system.index else {}
                for p in parts:
                    if (pop + column, p) in system.index:
                        terms[system.index[(pop + column, p)]] = terms.get(system.index[(pop + column, p)], 0.0) - 1.0
                system.relation(terms)
    quality_cells = set()
    if quality is not None:
        joined = quality.join(quality_truth, on=["reporting_month", "imd_vintage", "practice_code"], suffix="_true")
        for r in joined.iter_rows(named=True):
            cell = (primary_vintage, "overall", "all") if r["practice_code"] == "ALL" else (primary_vintage, "practice", r["practice_code"])
            quality_cells.add(cell)
            v = r["imd_vintage"]
            ids = {"all": system.var(("all", cell), r["n_patients_true"], r["n_patients"]),
                   "matched": system.var((f"{v}:matched", cell), r["n_matched_true"], r["n_matched"])}
            for m in METHODS:
                # blank, invalid and outside England do not depend on the vintage: one count.
                pop = m if m in ("blank", "invalid_postcode", "outside_england") else f"{v}:{m}"
                ids[m] = system.var((pop, cell), r[f"n_{m}_true"], r[f"n_{m}"])
            system.relation({ids["all"]: 1.0, **{ids[m]: -1.0 for m in METHODS}})
            system.relation({ids["matched"]: 1.0, **{ids[m]: -1.0 for m in MATCHED}})
        pops = {k[0] for k in system.index if not k[0].endswith((":num", ":den"))}
        for pop in sorted(pops):
            total = system.index.get((pop, (primary_vintage, "overall", "all")))
            parts = [i for (p, c), i in system.index.items() if p == pop and c[1] == "practice"]
            if total is not None and parts:
                system.relation({total: 1.0, **{i: -1.0 for i in parts}})
    if memberships is not None:
        published_in: dict[str, set] = {}
        for (pop, cell) in system.index:
            published_in.setdefault(pop, set()).add(cell)
        gap_cells = set().union(*cells_by_indicator.values()) if cells_by_indicator else set()
        for identity in _identities(memberships):
            domains = []
            for pop in identity:
                if pop.endswith((":num", ":den")):
                    domains.append(gap_cells)
                else:
                    domains.append(quality_cells)
            for cell in sorted(set.intersection(*domains)) if domains else []:
                terms = {}
                for pop, c in identity.items():
                    if (pop, cell) in system.index:
                        terms[system.index[(pop, cell)]] = terms.get(system.index[(pop, cell)], 0.0) + c
                system.relation(terms)
    if earlier is not None and earlier.get("memberships") is not None:
        # The earlier release's identities held for its counts: sum c * (x - change) = 0 in
        # every cell it published them, i.e. sum c * x = a constant the reader knows.
        old_true = earlier["true"]
        old_gap_cells = {c for (p, c) in old_true if p.endswith((":num", ":den"))}
        old_quality_cells = {c for (p, c) in old_true if not p.endswith((":num", ":den"))}
        for identity in _identities(earlier["memberships"]):
            domains = [old_gap_cells if p.endswith((":num", ":den")) else old_quality_cells for p in identity]
            for cell in sorted(set.intersection(*domains)) if domains else []:
                terms, constant = {}, 0.0
                assert abs(sum(c * old_true.get((p, cell), 0) for p, c in identity.items())) < 1e-9
                for pop, c in identity.items():
                    i = system.index.get((pop, cell))
                    if i is not None:
                        terms[i] = terms.get(i, 0.0) + c
                        constant += c * system.true[i]
                system.relation(terms, constant)
    n = len(system.true)
    shown_values = [s for s in system.shown if s is not None]
    ranges = _ranges(profile, shown_values)
    lower = np.zeros(n)
    upper = np.full(n, np.inf)
    for i, s in enumerate(system.shown):
        if s is not None:
            lower[i], upper[i] = ranges[s]
    # What the earlier release alone says (every count of this release hidden), for `known_earlier`.
    earlier_lower, earlier_upper = np.zeros(n), np.full(n, np.inf)
    if earlier is not None:
        # An earlier release: its shown ranges, shifted by the exact change in each true count.
        old_system_shown, old_true = earlier["shown"], earlier["true"]
        old_ranges = _ranges(profile, [s for s in old_system_shown.values() if s is not None])
        for key, s in old_system_shown.items():
            i = system.index.get(key)
            if i is None or s is None:
                continue
            shift = system.true[i] - old_true[key]
            earlier_lower[i], earlier_upper[i] = old_ranges[s][0] + shift, old_ranges[s][1] + shift
            lower[i] = max(lower[i], earlier_lower[i])
            upper[i] = min(upper[i], earlier_upper[i])
    rows, cols, data = [], [], []
    for r, terms in enumerate(system.rows):
        for i, c in terms.items():
            rows.append(r)
            cols.append(i)
            data.append(c)
    a_eq = sparse.csr_matrix((data, (rows, cols)), shape=(len(system.rows), n))
    b_eq = np.array(system.constants, dtype=float)
    a_ub = sparse.csr_matrix(([1.0] * len(system.le) + [-1.0] * len(system.le),
                              (list(range(len(system.le))) * 2, [a for a, _ in system.le] + [b for _, b in system.le])),
                             shape=(len(system.le), n))
    truth = np.array(system.true, dtype=float)
    residual = np.abs(a_eq @ truth - b_eq)
    if residual.max(initial=0) > 1e-6:
        keys = list(system.index)
        bad = [{keys[i]: c for i, c in system.rows[r].items()} for r in np.flatnonzero(residual > 1e-6)[:3]]
        raise AssertionError(f"the attacker's relations do not hold for the true counts: {bad}")
    if not solve:  # what the reader holds of this release, for a later one to be attacked with it
        return {"shown": {k: system.shown[i] for k, i in system.index.items()},
                "true": {k: system.true[i] for k, i in system.index.items()}}
    hidden = [i for i, s in enumerate(system.shown) if s is None]
    visible_zero = {i for i, s in enumerate(system.shown) if s == 0}
    if memberships is not None:
        # A population with no member has a count of 0 in every cell: an identity (x = 0) the
        # reader holds with the others, so such a 0 is known whether shown or not.
        present = set(memberships["population"].unique().to_list())
        visible_zero |= {i for (pop, _), i in system.index.items() if pop not in present}
    zero = _zero_closure(system, visible_zero)
    # What must stay possible, in this release's counts x. With an earlier release, a count it hid
    # is a target too: its old value is x - change, so its needs shift by the change.
    # A count the earlier release hid is judged as it was there: what the reader learns of it is
    # about that release's patients, the change since being known (so a small count then must
    # still look anywhere in 1-7 then, today's values shifted by the change), whether today's
    # release hides it or not.
    judged = {i: system.true[i] for i in hidden}
    shift_of = {}
    if earlier is not None:
        old_shown, old_true = earlier["shown"], earlier["true"]
        for key, s_old in old_shown.items():
            i = system.index.get(key)
            if i is None or s_old is not None:
                continue
            if system.shown[i] is not None:
                hidden.append(i)
            elif not 1 <= old_true[key] <= threshold:
                continue  # a complement then: judged as today's count
            shift_of[i] = system.true[i] - old_true[key]
            judged[i] = old_true[key]
    if earlier is not None:
        # What the earlier release fixed exactly (a visible 0 then, the parts of such a total, the
        # numerators of such a denominator) is known from it: today's value is that plus the
        # known change, so there is nothing of it to recover.
        old_zero = {system.index[k] for k, v in earlier["shown"].items() if v == 0 and k in system.index}
        known_before = _zero_closure(system, old_zero, earlier=True)
        hidden = [i for i in hidden if i not in known_before or i in shift_of]
    need_low = {i: (1.0 if 1 <= judged[i] <= threshold else judged[i] - 1.0) + shift_of.get(i, 0) for i in hidden}
    need_high = {i: (float(threshold) if 1 <= judged[i] <= threshold else judged[i] + 1.0) + shift_of.get(i, 0)
                 for i in hidden}
    bounds = list(zip(lower, [None if not np.isfinite(u) else u for u in upper]))
    seen_low, seen_high = truth.copy(), truth.copy()

    def solve(c, extra_bounds=None, witness=True):
        result = linprog(c, A_ub=a_ub, b_ub=np.zeros(a_ub.shape[0]), A_eq=a_eq, b_eq=b_eq,
                         bounds=extra_bounds or bounds, method="highs")
        if result.status == 0 and witness:  # a point of a looser system is no witness
            np.minimum(seen_low, result.x, out=seen_low)
            np.maximum(seen_high, result.x, out=seen_high)
        return result

    def is_open(i) -> bool:
        small = 1 <= judged[i] <= threshold
        if small:
            return not (seen_low[i] <= need_low[i] + 1e-6 and seen_high[i] >= need_high[i] - 1e-6)
        return not (seen_high[i] - seen_low[i] >= 0.5 or i in zero)

    # Joint shortcut, in rounds while they make progress: push every open hidden count up (then
    # down) to its need at once; any solution is a point the reader cannot rule out.
    open_ = [i for i in hidden if is_open(i)]
    while open_:
        before = len(open_)
        for sign in (-1.0, 1.0):
            caps = list(bounds)
            for i in open_:
                lo, hi = caps[i]
                caps[i] = (lo, need_high[i] if hi is None else min(hi, max(need_high[i], system.true[i]))) if sign < 0 \
                    else (max(lo, min(need_low[i], system.true[i])), hi)
            c = np.zeros(n)
            c[open_] = sign
            solve(c, caps)
        open_ = [i for i in open_ if is_open(i)]
        if len(open_) == before:
            break
    narrowed, exact = [], []
    unsolved, known_earlier = [], []
    for i in open_:
        c = np.zeros(n)
        c[i] = 1.0
        low = solve(c)
        high = solve(-c)
        if low.status != 0 or high.status not in (0, 3):
            unsolved.append(i)  # reported, never counted as safe
            continue
        lowest, highest = low.fun, (np.inf if high.status == 3 else -high.fun)
        if 1 <= judged[i] <= threshold:
            found = narrowed if lowest > need_low[i] + 1e-6 or highest < need_high[i] - 1e-6 else None
        else:
            found = exact if highest - lowest < 0.5 and i not in zero else None
        if found is not None and earlier is not None:
            # Recovered from this release, or already from the earlier one? With every count of
            # this release hidden (the earlier release's ranges and the structure alone), the same
            # interval means this release told the reader nothing more of it (e.g. a count the
            # earlier release showed, fixed there by its rounded neighbours, hidden now).
            alone = list(zip(earlier_lower, [None if not np.isfinite(u) else u for u in earlier_upper]))
            before_low, before_high = solve(c, alone, witness=False), solve(-c, alone, witness=False)
            if before_low.status == 0 and before_high.status == 0 and abs(before_low.fun - lowest) < 1e-6 \
                    and abs(-before_high.fun - highest) < 1e-6:
                known_earlier.append(i)
                continue
        if found is not None:
            found.append(i)
    integer_checked = integer_known = 0
    if integer:
        rng = np.random.default_rng(0)
        candidates = [i for i in hidden if i not in narrowed and i not in exact and i not in unsolved]
        if integer_sample is not None and len(candidates) > integer_sample:
            candidates = sorted(rng.choice(candidates, integer_sample, replace=False).tolist())
        lb = np.array([b[0] for b in bounds])
        ub = np.array([np.inf if b[1] is None else b[1] for b in bounds])
        constraints = [LinearConstraint(a_eq, b_eq, b_eq), LinearConstraint(a_ub, -np.inf, 0.0)]
        options = {"time_limit": integer_time_limit, "presolve": True}

        def possible(i, low, high):
            """True/False: some whole-number point has low <= x_i <= high; None: no proof either way."""
            lo, hi = lb.copy(), ub.copy()
            lo[i], hi[i] = max(lo[i], low), min(hi[i], high)
            if lo[i] > hi[i]:
                return False
            found = milp(np.zeros(n), constraints=constraints, bounds=Bounds(lo, hi), integrality=np.ones(n),
                         options=options)
            return {0: True, 2: False}.get(found.status)

        for i in candidates:
            small = 1 <= judged[i] <= threshold
            if small:
                # Both ends of 1..threshold (shifted for an earlier release) must stay possible.
                ends = [possible(i, -np.inf, need_low[i]), possible(i, need_high[i], np.inf)]
                if None in ends:
                    unsolved.append(i)
                    continue
                integer_checked += 1
                if not all(ends):
                    narrowed.append(i)
            elif i in zero:
                integer_known += 1  # a visible 0 above it already says it is 0: nothing to recover
            else:
                # Some value other than the truth must stay possible.
                below = possible(i, -np.inf, need_low[i])
                above = True if below else possible(i, need_high[i], np.inf)
                if below is True or above is True:
                    integer_checked += 1
                elif below is False and above is False:
                    integer_checked += 1
                    exact.append(i)
                else:
                    unsolved.append(i)
    keys = list(system.index)
    return {"targets": len(hidden), "narrowed": [keys[i] for i in narrowed],
            "earlier_targets": len(shift_of), "unsolved": [keys[i] for i in unsolved], "exact": [keys[i] for i in exact],
            "known_from_earlier": [keys[i] for i in known_earlier],
            "integer_checked": integer_checked, "integer_known": integer_known, "variables": n, "relations": len(system.rows),
            "shown": {k: system.shown[i] for k, i in system.index.items()},
            "true": {k: system.true[i] for k, i in system.index.items()}}


def _zero_closure(system: _System, visible_zero: set, *, earlier: bool = False) -> set:
    """Counts every reader knows are 0: a visible 0, the parts of a total known to be 0, a numerator of a 0.

    `earlier`: zeros of the earlier release's counts, for which every relation is homogeneous
    (a relation carrying a constant here is an identity of those counts); otherwise a relation
    with a constant says nothing of this kind and is skipped.
    """
    zero = set(visible_zero)
    changed = True
    while changed:
        changed = False
        for terms, constant in zip(system.rows, system.constants):
            if constant and not earlier:
                continue
            totals = [i for i, c in terms.items() if c > 0]
            parts = [i for i, c in terms.items() if c < 0]
            if totals and all(t in zero for t in totals):
                for p in parts:
                    if p not in zero:
                        zero.add(p)
                        changed = True
        for a, b in system.le:
            if b in zero and a not in zero:
                zero.add(a)
                changed = True
    return zero


def memberships_of(results: pl.DataFrame, deprivation: pl.DataFrame) -> pl.DataFrame:
    """Return (patient_id, population) for every population the attacker names, from the private tables."""
    key = pl.col("indicator_id") + "@" + pl.col("indicator_version").cast(pl.String)
    parts = [results.select("patient_id", (key + ":den").alias("population")),
             results.filter("is_numerator").select("patient_id", (key + ":num").alias("population")),
             deprivation.select("patient_id", pl.lit("all").alias("population"))]
    for vintage, prefix in (("IMD2019", "imd2019"), ("IMD2025", "imd2025")):
        method = pl.col(f"{prefix}_method")
        name = pl.when(method.is_in(["blank", "invalid_postcode", "outside_england"])).then(method).otherwise(
            pl.lit(f"{vintage}:") + method)
        parts.append(deprivation.select("patient_id", name.alias("population")))
        parts.append(deprivation.filter(method.is_in(list(MATCHED))).select(
            "patient_id", pl.lit(f"{vintage}:matched").alias("population")))
    return pl.concat(parts).unique()


def published_month(warehouse: Path, month: dt.date, with_alone: bool = False) -> dict:
    """Return what the attacker needs of a published month: its published tables, the true counts
    (from the private tables, profile 'none'), the memberships behind its populations and the
    fine-to-coarse maps; with `with_alone`, the month suppressed on its own as a control.
    """
    from pipelines.segmentation.cohorts import reported_cohorts
    from pipelines.segmentation.deprivation_quality import deprivation_quality
    from pipelines.segmentation.disclosure import NONE, get_profile
    from pipelines.segmentation.gaps import build_gap_table
    from pipelines.warehouse import connect, read_table

    with connect(warehouse, read_only=True) as con:
        tables = {name: read_table(con, *name.split(".")).filter(pl.col("reporting_month") == month) for name in (
            "published.gap_table", "published.deprivation_quality", "indicators.patient_indicators",
            "population.patient_attributes", "population.patient_deprivation", "staging.patients",
            "indicators.indicator_catalogue", "cohorts.cohort_membership", "cohorts.cohort_catalogue")}
    gap = tables["published.gap_table"]
    vintage = gap.filter(pl.col("breakdown") == "overall")["imd_vintage"][0]
    truth = build_gap_table(tables["indicators.patient_indicators"].lazy(), tables["population.patient_attributes"].lazy(),
                            tables["indicators.indicator_catalogue"], profile=NONE, primary_vintage=vintage,
                            cohorts=reported_cohorts(tables["cohorts.cohort_membership"], tables["cohorts.cohort_catalogue"]).lazy())
    deprivation = tables["population.patient_deprivation"].join(
        tables["staging.patients"].select("patient_id", "practice_code"), on="patient_id")
    attributes = tables["population.patient_attributes"]
    fine = {"ethnicity_16": dict(attributes.select("ethnicity_16", "ethnicity_broad").drop_nulls().unique().rows()),
            "sub_icb": dict(attributes.select("sicbl_code", "icb_code").drop_nulls().unique().rows())}
    alone = None
    if with_alone:
        # The month suppressed on its own, as the pipeline did before releases were linked.
        figures: dict = {}
        alone = build_gap_table(
            tables["indicators.patient_indicators"].lazy(), tables["population.patient_attributes"].lazy(),
            tables["indicators.indicator_catalogue"], profile=get_profile(gap["disclosure_profile"][0]),
            primary_vintage=vintage, deprivation=deprivation.lazy(), audit_stats=figures,
            quality=deprivation_quality(deprivation, month),
            cohorts=reported_cohorts(tables["cohorts.cohort_membership"], tables["cohorts.cohort_catalogue"]).lazy())
        alone = (alone, figures["quality"])
    return {"gap": gap, "truth": truth, "quality": tables["published.deprivation_quality"], "alone": alone,
            "quality_truth": deprivation_quality(deprivation, month), "vintage": vintage, "fine": fine,
            "memberships": memberships_of(tables["indicators.patient_indicators"], deprivation),
            "profile": gap["disclosure_profile"][0]}


def add_one_patient(folder: Path) -> None:
    """Re-send an extract with one patient added: a copy, under a new id, of the patient with most events."""
    import json

    events = pl.read_parquet(folder / "events.parquet")
    source = events.group_by("patient_id").len().sort("len", "patient_id", descending=True)["patient_id"][0]
    meta = json.loads((folder / "extract.json").read_text())
    for path in sorted(folder.glob("*.parquet")):
        frame = pl.read_parquet(path)
        copy = frame.filter(pl.col("patient_id") == source).with_columns(pl.lit("RESENT-ADDED-1").alias("patient_id"))
        pl.concat([frame, copy]).write_parquet(path)
        if path.stem in meta.get("row_counts", {}):
            meta["row_counts"][path.stem] += copy.height
    meta["n_patients"] = meta.get("n_patients", 0) + 1
    (folder / "extract.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
