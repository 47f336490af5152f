"""Disclosure control of a month's published counts as one system: the gap table and the
deprivation-quality table together, with every identity between their populations.

DOMAIN.md section 6: a reader holds every published table at once. Auditing each table
alone (as this pipeline once did) missed what they can do across tables: two indicators with
the same denominator show the same counts twice, so a complement hidden in one is shown in
the other; all patients of a practice (deprivation quality) minus its adults (an adult
indicator) is its children (a CYP indicator); the match methods of a practice add up to its
patients, blank and invalid postcodes repeat across vintages, and 'ALL' is the sum of the
practices. `protect_month` puts every count of the month into one `CountProblem`:

- a variable per (population, cell): the populations behind the published numbers are
  each indicator's denominator and numerator, all registered patients, and per vintage the
  patients with a decile and those of each match method; identical populations share one
  variable (`populations.population_identities`);
- relations: each breakdown's structure (gaps._relations) for every population in the gap
  table, 'ALL' = the sum of the practices for the quality table, and every linear identity
  between populations in every cell where all of them are published;
- units hidden together: a gap-table row (numerator and denominator: no half-shown row),
  each deprivation-quality count (a hidden practice total hides its whole row);
- cells of an intersection with an 'unknown' part are never published (missingness is
  reported in the one-dimensional breakdowns and in deprivation quality), but stay in the
  system as hidden counts, so what they add to the margins is still accounted for.

`disclosure.suppress` then hides the fewest, least-read units until no hidden count can be
narrowed down. Complement priority (gaps.complement_priority): intersections, then
practice and other minor breakdowns and the deprivation-quality counts, sparing IMD, Core20
and overall rows.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Collection, Mapping, Sequence

import polars as pl

from pipelines.segmentation.disclosure import CountProblem, DisclosureProfile, suppress

KEYS = ["reporting_month", "indicator_id", "indicator_version"]
CELL = ["imd_vintage", "breakdown", "group"]
UNKNOWN = "unknown"
SEPARATOR = "|"
ALL_PRACTICES = "ALL"
# Complements come from deprivation-quality counts about as readily as from practice rows.
QUALITY_PRIORITY = 1


def population_memberships(indicator_results: pl.LazyFrame, deprivation: pl.LazyFrame | None) -> pl.LazyFrame:
    """Return (`reporting_month`, `patient_id`, `population`) for every published population.

    Populations: '<indicator>@<version>:den' and ':num' from the indicator results; with the
    deprivation rows, 'all' (every registered patient) and per vintage '<vintage>:matched'
    and '<vintage>:<match method>', as the deprivation-quality table counts them.
    """
    key = pl.col("indicator_id") + "@" + pl.col("indicator_version").cast(pl.String)
    results = indicator_results.select("reporting_month", "patient_id", "indicator_id", "indicator_version", "is_numerator")
    parts = [
        results.select("reporting_month", "patient_id", (key + ":den").alias("population")),
        results.filter(pl.col("is_numerator").fill_null(False)).select(
            "reporting_month", "patient_id", (key + ":num").alias("population")),
    ]
    if deprivation is not None:
        frame = deprivation.lazy()
        parts.append(frame.select("reporting_month", "patient_id", pl.lit("all").alias("population")))
        for vintage, prefix in (("IMD2019", "imd2019"), ("IMD2025", "imd2025")):
            method = pl.col(f"{prefix}_method")
            parts.append(frame.select("reporting_month", "patient_id", (pl.lit(f"{vintage}:") + method).alias("population")))
            matched = pl.col(f"{prefix}_decile").is_not_null() & ~method.is_in(["blank", "outside_england"])
            parts.append(frame.filter(matched).select("reporting_month", "patient_id",
                                                      pl.lit(f"{vintage}:matched").alias("population")))
    return pl.concat(parts)


def _quality_population(vintage: str, column: str) -> str:
    if column == "n_patients":
        return "all"
    return f"{vintage}:{column.removeprefix('n_')}"


def protect_month(
    counts: pl.DataFrame,
    relations: list[tuple],
    profile: DisclosureProfile,
    *,
    primary_vintage: str,
    memberships: pl.LazyFrame | None = None,
    quality: pl.DataFrame | None = None,
    earlier: Sequence[tuple] | Mapping | None = None,
    sums: Sequence[tuple] | None = None,
    hidden: Collection[tuple] = (),
    shown: Collection[tuple] = (),
    protected: Collection | None = None,
    released_areas: Collection = (),
    alone_pass: bool = True,
    dear_complements: bool = False,
    decisions: bool = False,
    progress=None,
    processes: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame | None, dict]:
    """Return (controlled gap counts, controlled quality table or None, audit figures).

    Arguments:
        counts: true gap-table counts: `KEYS`, `CELL`, `numerator`, `denominator`.
        relations: the gap table's cell relations (gaps._relations).
        profile: the disclosure profile.
        primary_vintage: the vintage label of breakdowns not based on deprivation (the
            practice and overall cells the quality table shares).
        memberships: `population_memberships` of the same month(s); None: every indicator's
            populations are taken as unrelated (a single table audited alone).
        quality: the exact deprivation-quality table (DEPRIVATION_QUALITY) to protect jointly.
        earlier: earlier releases of the month still in readers' hands, each the
            `(counts, structure)` its own run returned under figures['release']; see
            `link_releases`. For several areas side by side (`sums`): a mapping from an
            area's `reporting_month` label to its earlier releases, each relabelled to it (an
            earlier national release's record of that area, an ICS's earlier release of an ICB).
        sums: (total, parts) pairs of `reporting_month` labels, for tables of several areas
            protected together (the national roll-up labels each area's rows with its own
            key): every population's count in every cell of `total` is the sum of its counts
            in that cell of `parts` (a region is its ICBs), a relation a reader holding the
            area tables side by side can use.
        hidden: units hidden from the start whatever their counts (a decision already taken:
            an enclosing problem's hidden cells, or a pattern to audit and complete), as
            `figures['hidden']` names them: `(reporting_month, indicator_id, indicator_version,
            (imd_vintage, breakdown, group))` for a gap-table row, `(reporting_month,
            'deprivation_quality', imd_vintage, practice_code, column)` for a quality count.
            Names of units not in this problem are ignored.
        shown: units, named the same way, that an enclosing problem already showed: never
            hidden here (never a complement); a reader knows them as published.
        protected: the `reporting_month` labels whose hidden counts this problem protects;
            None: all. The other areas' counts are what a reader knows (their hidden counts are
            protected by another problem that holds them: `national.protection`).
        released_areas: with `sums`: the `reporting_month` labels of areas whose every unit
            `hidden` and `shown` decide (an ICB whose own release the national one must repeat).
            Their counts are audited first in a scope of the area and the areas above it, the
            others (its siblings, theirs) held at the truth: complements can only come from
            above, so that is where they are looked for (`_area_scopes`).
        alone_pass: with `earlier`, also audit the release for a reader holding it alone (the
            second pass); False where that reader is protected by another audit (an ICB re-run
            checked against its month's national release: `national.context`; the ICB month
            audited its own counts for them).
        dear_complements: choose a complement only for a count short of its need in its whole
            part (`CountProblem.dear_complements`): for a check whose complements would change a
            release already out (`national.context`).
        decisions: also return, in the figures, `hidden` and `shown`: the names of the units
            hidden and shown (as `hidden` and `shown` take them), for an enclosing procedure.
        progress: called with lines of text on the suppression of large parts (`suppress`).
        processes: forked processes the large parts are audited in (`suppress`); 1: this one.

    Returns:
        The gap counts with `numerator`/`denominator` controlled (hidden rows null, or 0 for
        a redacting profile), `is_suppressed`, and without the never-published cells; the
        quality table with every count controlled and shares recomputed from the controlled
        counts; figures (`n_lp_solves`, `n_complements`, `seconds`, ...; `hidden` and `shown`
        with `decisions`), and this release's private record for the next release to link to:
        for one month `release`, for several `releases` (label -> record).
    """
    from pipelines.segmentation.gaps import complement_priority
    from pipelines.segmentation.populations import membership_patterns, population_identities

    started = time.perf_counter()
    # Key order, never the order the rows arrived in: with several optima the solver's pick
    # depends on the model's column order, and a re-run of the month must hide the same cells.
    counts = counts.sort(*KEYS, *CELL)
    if quality is not None:
        quality = quality.sort("reporting_month", "imd_vintage", "practice_code")
    problem = CountProblem(keys=[], values=[])
    index: dict[tuple, int] = {}

    def var(key: tuple, value: int) -> int:
        found = index.get(key)
        if found is None:
            found = index[key] = len(problem.keys)
            problem.keys.append(key)
            problem.values.append(int(value))
        elif problem.values[found] != int(value):
            raise RuntimeError("protect_month: two published counts of one population and cell differ")
        return found

    months = sorted(set(counts["reporting_month"].to_list()) | (set(quality["reporting_month"].to_list()) if quality is not None else set()))
    classes: dict = {}
    identities: dict = {}
    present: dict = {}
    if memberships is not None:
        frame = memberships.collect() if isinstance(memberships, pl.LazyFrame) else memberships
        for month in months:
            rows = frame.filter(pl.col("reporting_month") == month)
            names = sorted(rows["population"].unique().to_list())
            present[month] = set(names)
            matrix = membership_patterns(rows.select("patient_id", "population"), names)
            classes[month], identities[month] = population_identities(matrix, names)

    def population_class(month, name: str) -> str:
        return classes.get(month, {}).get(name, name)

    # Gap-table rows: one unit each, numerator and denominator.
    unit_names: list[tuple] = []
    rows = counts.select(*KEYS, *CELL, "numerator", "denominator").rows()
    gap_unit: list[int] = []
    gap_classes: set = set()
    unpublished_rows: set[int] = set()
    gap_cells: dict = {}
    class_cells: dict = {}
    published_in: dict = {}  # (month, population name) -> the cells its count is published in
    for r, (month, indicator, version, vintage, breakdown, group, numerator, denominator) in enumerate(rows):
        cell = (vintage, breakdown, group)
        gap_cells.setdefault(month, set()).add(cell)
        den_class = population_class(month, f"{indicator}@{version}:den")
        num_class = population_class(month, f"{indicator}@{version}:num")
        n = var((month, num_class, cell), numerator or 0)
        d = var((month, den_class, cell), denominator or 0)
        for name in (f"{indicator}@{version}:num", f"{indicator}@{version}:den"):
            published_in.setdefault((month, name), set()).add(cell)
        class_cells.setdefault((month, num_class), set()).add(cell)
        class_cells.setdefault((month, den_class), set()).add(cell)
        gap_classes |= {(month, num_class), (month, den_class)}
        problem.units.append([n, d])
        unit_names.append((month, indicator, version, cell))
        problem.unit_keys.append(repr(unit_names[-1]))
        problem.unit_priority.append(complement_priority(cell))
        problem.at_most.append((n, d))
        unit = len(problem.units) - 1
        gap_unit.append(unit)
        if SEPARATOR in breakdown and UNKNOWN in group.split(SEPARATOR):
            problem.unpublished.add(unit)
            unpublished_rows.add(r)

    # Deprivation-quality counts: one unit each; a practice's patient total hides its row.
    quality_units: dict[tuple[int, str], int] = {}
    quality_cells: dict = {}
    quality_classes: set = set()
    count_columns = [c for c in (quality.columns if quality is not None else []) if c.startswith("n_")]
    if quality is not None:
        for r, row in enumerate(quality.iter_rows(named=True)):
            month, vintage, practice = row["reporting_month"], row["imd_vintage"], row["practice_code"]
            cell = (primary_vintage, "overall", "all") if practice == ALL_PRACTICES else (primary_vintage, "practice", practice)
            quality_cells.setdefault(month, set()).add(cell)
            row_units = []
            for column in count_columns:
                klass = population_class(month, _quality_population(vintage, column))
                v = var((month, klass, cell), row[column] or 0)
                published_in.setdefault((month, _quality_population(vintage, column)), set()).add(cell)
                class_cells.setdefault((month, klass), set()).add(cell)
                quality_classes.add((month, klass))
                problem.units.append([v])
                unit_names.append((month, "deprivation_quality", vintage, practice, column))
                problem.unit_keys.append(repr(unit_names[-1]))
                problem.unit_priority.append(QUALITY_PRIORITY)
                quality_units[(r, column)] = len(problem.units) - 1
                row_units.append(len(problem.units) - 1)
            problem.implies[quality_units[(r, "n_patients")]] = [u for u in row_units if u != quality_units[(r, "n_patients")]]

    # Structure within each population: the gap table's breakdown relations; 'ALL' = the practices.
    def add_relation(total_key, part_keys) -> None:
        total = index.get(total_key)
        parts = [index[k] for k in part_keys if k in index]
        if total is not None and parts:
            problem.relations.append(([total, *parts], [1.0] + [-1.0] * len(parts)))
        elif total is None and parts:
            problem.relations.append((parts, [1.0] * len(parts)))  # no row for the total: all 0

    for month, klass in sorted(gap_classes, key=repr):
        for total, members in relations:
            add_relation((month, klass, total), [(month, klass, m) for m in members if m != total])
    overall = (primary_vintage, "overall", "all")
    for (month, klass), cells in sorted(class_cells.items(), key=repr):
        if (month, klass) in gap_classes:
            continue
        practices = sorted(c for c in cells if c[1] == "practice")
        add_relation((month, klass, overall), [(month, klass, c) for c in practices])

    # Identities between populations, in every cell where all of them are published.
    n_identities = 0
    for month in months:
        domain_gap = gap_cells.get(month, set())
        domain_quality = quality_cells.get(month, set())
        for identity in identities.get(month, []):
            domains = []
            for klass in identity:
                published = set()
                if (month, klass) in gap_classes:
                    published |= domain_gap
                if (month, klass) in quality_classes:
                    published |= domain_quality
                domains.append(published)
            cells = set.intersection(*domains) if domains else set()
            for cell in sorted(cells):
                members = [(index[(month, k, cell)], c) for k, c in identity.items() if (month, k, cell) in index]
                if len(members) > 1 or (members and any((month, k, cell) not in index for k in identity)):
                    problem.relations.append(([m for m, _ in members], [float(c) for _, c in members]))
                    n_identities += 1

    # Areas side by side: each population's count in an area's cell is the sum over its parts.
    added: set = set()
    sum_parts: dict = {}  # an area's count -> its parts' counts
    linked: set = set()  # counts that are a part of an area's sum (an ICB's count in its region's)
    names_of: dict = {}
    for (month, name), cells in published_in.items():
        names_of.setdefault(month, []).append((name, cells))
    for total, parts in sums or ():
        for name, cells in sorted(names_of.get(total, []), key=lambda item: item[0]):
            for cell in sorted(cells):
                total_key = (total, population_class(total, name), cell)
                part_keys = tuple(sorted({(p, population_class(p, name), cell) for p in parts}, key=repr))
                if (total_key, part_keys) not in added:
                    added.add((total_key, part_keys))
                    add_relation(total_key, part_keys)
                    if total_key in index:
                        sum_parts[index[total_key]] = [index[k] for k in part_keys if k in index]
                    linked.update(index[k] for k in part_keys if k in index)
    if linked:
        _area_scopes(problem, sums, linked, set(released_areas))

    # A population with no member this month (e.g. a match method nobody's postcode took) has a
    # count of 0 in every cell: an identity every reader holds, so hiding such a 0 protects nothing.
    if memberships is not None:
        problem.known_zero = {v for v, key in enumerate(problem.keys)
                              if key[1] not in present.get(key[0], set()) and problem.values[v] == 0}
    n_linked = 0
    if isinstance(earlier, Mapping):
        earlier = {month: list(found) for month, found in earlier.items() if found}
    elif earlier:
        if len(months) != 1:
            raise ValueError("protect_month: earlier releases of several areas are given per area label (a mapping)")
        earlier = {months[0]: list(earlier)}
    alone = None
    if earlier:
        if alone_pass:
            # This release as a reader holding it alone sees it (the second pass below): the problem
            # before the earlier releases add their bounds, relations and helper constants.
            alone = dataclasses.replace(problem, keys=list(problem.keys), values=list(problem.values),
                                        relations=list(problem.relations), released=list(problem.released),
                                        exact=dict(problem.exact), fixed_hidden=set(problem.fixed_hidden),
                                        earlier_small=dict(problem.earlier_small))
        for month in sorted(earlier):
            n_linked += link_releases(problem, index, earlier[month], profile, month=month,
                                      classes=classes.get(month, {}))

    if protected is not None:
        protected = set(protected)
        problem.context = {v for v, key in enumerate(problem.keys) if key[0] not in protected}
    primary = None
    if hidden or shown:
        unit_of_name = {name: u for u, name in enumerate(unit_names)}
        problem.kept_shown = {unit_of_name[name] for name in shown if name in unit_of_name}
        if hidden:
            small = profile.small_count_threshold
            primary = {u for u, members in enumerate(problem.units) if any(1 <= problem.values[m] <= small for m in members)}
            primary |= {unit_of_name[name] for name in hidden if name in unit_of_name}
    if alone is not None:
        alone.context, alone.kept_shown = problem.context, problem.kept_shown
    if released_areas:
        for linked_problem in (problem, alone) if alone is not None else (problem,):
            _link_area_releases(linked_problem, profile, set(released_areas), sum_parts)
        # An earlier release of the areas above (a national release before a re-send) bounds their
        # totals too, which ties the released areas' blocks together: their intervals are then a
        # relaxation, worked out over the whole part where that decides (CountProblem.prior_relaxed).
        problem.prior_relaxed = bool(set(earlier or ()) - set(released_areas))
    problem.dear_complements = dear_complements
    result = suppress(problem, profile, primary_units=primary, progress=progress, processes=processes)
    hidden = result.hidden_units
    if alone is not None:
        # Two readers: one holding every release and the exact change (above), and one holding
        # this release alone, for whom today's small counts must cover 1..threshold. Hiding only
        # widens intervals, so the second pass keeps what the first guaranteed.
        second = suppress(alone, profile, primary_units=set(hidden), processes=processes)
        result.n_lp_solves += second.n_lp_solves
        result.n_complements += second.n_complements
        hidden = result.hidden_units = set(hidden) | second.hidden_units
    hidden_rows = [gap_unit[r] in hidden for r in range(len(rows))]
    hidden_value = pl.lit(None, pl.Int64) if profile.small_count_action != "redact" else pl.lit(0, pl.Int64)
    controlled = (
        counts.with_columns(pl.Series("_hide", hidden_rows, dtype=pl.Boolean),
                            # Profile 'none' (private checks only) keeps every cell, the never-published ones too.
                            pl.Series("_published", [r not in unpublished_rows or profile.name == "none"
                                                     for r in range(len(rows))], dtype=pl.Boolean))
        .with_columns(
            *[pl.when(pl.col("_hide")).then(hidden_value).otherwise(profile.control(c)).alias(c)
              for c in ("numerator", "denominator")],
            pl.col("_hide").alias("is_suppressed"),
        )
        .filter("_published")
        .drop("_hide", "_published")
    )
    quality_controlled = None
    if quality is not None:
        from pipelines.segmentation.deprivation_quality import controlled_quality

        masks = {c: [quality_units[(r, c)] in hidden for r in range(quality.height)] for c in count_columns}
        quality_controlled = controlled_quality(quality, profile, masks)
    stats = {"n_lp_solves": result.n_lp_solves, "n_complements": result.n_complements,
             "n_needs_cut_by_earlier_releases": result.n_prior_cut,
             "n_components": result.n_components, "n_variables": len(problem.keys),
             "n_lp_models": result.n_models, "largest_lp_model": result.largest_model,
             "n_relations": len(problem.relations), "n_identities": n_identities, "n_area_sums": len(added),
             "n_earlier_releases": max((len(found) for found in (earlier or {}).values()), default=0),
             "n_release_links": n_linked,
             "seconds": time.perf_counter() - started}
    if decisions:
        stats["hidden"] = {unit_names[u] for u in hidden}
        stats["shown"] = {name for u, name in enumerate(unit_names) if u not in hidden}
    records = _release_records(problem, hidden, months, classes, identities, gap_classes, quality_classes,
                               gap_cells, quality_cells)
    if len(months) == 1:
        stats["release"] = records[months[0]]
    else:
        stats["releases"] = records
    return controlled, quality_controlled, stats


def _link_area_releases(problem: CountProblem, profile: DisclosureProfile, released: set, sum_parts: dict) -> None:
    """Add to `problem` what the released areas' own releases told their readers (`protect_month`'s `released_areas`).

    That release is an earlier release of the same counts (no change since): a count it showed
    is known within its rounding window, one it hid from 0 up, and the areas above it showed
    nothing then. What it allows of a count (`suppress`'s prior) follows from the count's own
    area (`CountProblem.prior_blocks`), and of a count above, from its parts (`prior_sums`): a
    need that release already cut (a region's small count whose two hidden ICB parts that
    release keeps at 1 or more each is known to be 2 or more) is not this release's to meet.
    """
    import numpy as np

    from pipelines.segmentation.disclosure import _shown_bounds

    n = len(problem.keys)
    low, high = _shown_bounds(profile, np.asarray(problem.values, dtype=np.int64))
    lower, upper = np.zeros(n), np.full(n, np.inf)
    for u in problem.kept_shown:
        for v in problem.units[u]:
            if problem.keys[v][0] in released:
                lower[v], upper[v] = low[v], high[v]
    problem.released.append((lower, upper, np.zeros(n)))
    problem.prior_blocks = {v: key[0] for v, key in enumerate(problem.keys) if key[0] in released}
    problem.prior_sums = {v: parts for v, parts in sum_parts.items() if problem.keys[v][0] not in released}


def _area_scopes(problem: CountProblem, sums: Sequence[tuple], linked: set, released: set = frozenset()) -> None:
    """Give `problem` a scope per area that is a part of another (`CountProblem.scope_sets`).

    The scope of an area is it and every area under it (a region and its ICBs; an ICB alone).
    A count is audited first in its own area's scope; a count that is a part of its parent's
    sum (an ICB's row of a breakdown its region also shows) first in a scope of its area and one
    sibling (held by the parent and the other siblings in its own), then in its parent's; then
    in each scope up to the top, whose scope is the whole problem (`suppress` always adds it).
    So an ICB's practice rows are audited within the ICB, its other rows with one neighbouring
    ICB of its region, then the region; a region's rows with one other region, then England.

    A count of a `released` area (its rows already decided by the area's own release) is
    audited first in a scope of the area and every area above it, with no sibling: there the
    areas above are free (each count of theirs is this area's plus constants: the siblings
    are held at the truth), so an area above whose count is hidden frees this area's, and one
    whose count is shown binds it within its own rounding window - the only new thing the
    release can tell about the area.
    """
    # An area's parent is the smallest area whose sum holds it (England may be given as the sum
    # of every ICB and a region as the sum of its ICBs: each ICB's parent is its region).
    parts_of = {total: set(parts) for total, parts in sums}
    leaves: dict = {}

    def leaves_of(area) -> frozenset:
        if area not in leaves:
            leaves[area] = frozenset().union(*(leaves_of(p) for p in parts_of[area])) if area in parts_of else frozenset([area])
        return leaves[area]

    areas = set(parts_of) | {p for parts in parts_of.values() for p in parts}
    parent: dict = {}
    for area in sorted(areas, key=repr):
        # (A region of one ICB holds the same leaves as its ICB: it is still the ICB's parent.)
        above = [t for t in parts_of if t != area and (leaves_of(area) < leaves_of(t)
                                                       or (leaves_of(area) == leaves_of(t) and area in parts_of[t]))]
        if above:
            smallest = min(len(leaves_of(t)) for t in above)
            tied = [t for t in above if len(leaves_of(t)) == smallest]
            # Two sums of the same leaves nest when one is a part of the other (England given as its
            # one region): the inner one, which holds no other, is the parent.
            inner = [t for t in tied if not any(u in parts_of[t] for u in tied if u != t)]
            if len(inner) > 1:
                raise ValueError(f"protect_month: area {area!r} is in two sums of the same size: the areas do not nest")
            parent[area] = inner[0]
    children: dict = {}
    for part, total in parent.items():
        children.setdefault(total, []).append(part)
    by_area: dict = {}
    for v, key in enumerate(problem.keys):
        by_area.setdefault(key[0], []).append(v)

    def under(area) -> list:
        found, stack = [], [area]
        while stack:
            a = stack.pop()
            found.append(a)
            stack.extend(children.get(a, ()))
        return found

    def scope(name, areas) -> tuple:
        """Register the scope `name` holding the counts of `areas` (once); return its name."""
        if name not in problem.scope_sets:
            problem.scope_sets[name] = {x for a in areas for x in by_area.get(a, ())}
        return name

    def sibling_pair(area) -> tuple:
        """The scope of `area` and the next part of its parent's sum (in key order, round)."""
        siblings = sorted(children[parent[area]], key=repr)
        other = siblings[(siblings.index(area) + 1) % len(siblings)]
        return scope(("pair", area, other), (*under(area), *under(other)))

    def down(top, child) -> tuple:
        """The scope of a top area and one of its parts, with everything under that part."""
        return scope(("down", top, child), (top, *under(child)))

    def up(area) -> tuple:
        """The scope of an area and every area above it (its siblings held at the truth)."""
        above, a = [area], area
        while a in parent:
            a = parent[a]
            above.append(a)
        return scope(("up", area), above)

    index = {key: v for v, key in enumerate(problem.keys)}
    chains: dict = {}
    for v, key in enumerate(problem.keys):
        area, scopes = key[0], []
        if area in released and area in parent:
            scopes.append(up(area))
        if area not in parent and area in children:
            # A top area's count (England's) moves with one of its parts' (held by the others):
            # with the part whose count in the same cell is smallest but not 0 (a small count is
            # hidden too; a 0 shown pins it, and England's with it).
            counts = {part: problem.values[index[(part, *key[1:])]] for part in children[area] if (part, *key[1:]) in index}
            if counts:
                scopes.append(down(area, min(counts, key=lambda part: (counts[part] == 0, counts[part], repr(part)))))
        if v in linked:
            # A part of its parent's sum moves only against a sibling's count (the parent held at
            # the truth): its first scope is it and one sibling, climbing while it is its parent's
            # only part (a region of one ICB is that ICB, cell for cell).
            while parent[area] in parent and len(children[parent[area]]) == 1:
                area = parent[area]
            if len(children[parent[area]]) > 1:
                scopes.append(sibling_pair(area))
            if parent[area] not in parent:
                scopes.append(down(parent[area], area))  # a region's count, freed with England's
            area = parent[area]
        while area in parent:  # the top area's scope is the whole problem
            scopes.append(area)
            if parent[area] not in parent:
                # The top area with the scope below it: frees that part's own count (held there by
                # the top area's) while every other part of the top stays at the truth.
                scopes.append(down(parent[area], area))
            area = parent[area]
        if scopes:
            chain = chains.setdefault(tuple(scopes), tuple(scopes))  # one tuple per distinct chain
            problem.scope_chain[v] = chain
            for name in chain:
                if not isinstance(name, tuple):  # an area's own scope: it and everything under it
                    scope(name, under(name))


RELEASE_COLUMNS = {"reporting_month": pl.Date, "population": pl.String, "imd_vintage": pl.String, "breakdown": pl.String,
                   "group": pl.String, "value": pl.Int64, "is_hidden": pl.Boolean}


def _release_records(problem: CountProblem, hidden_units: set, months: list, classes: dict, identities: dict,
                     gap_classes: set, quality_classes: set, gap_cells: dict, quality_cells: dict) -> dict:
    """Return, per `reporting_month` label, (counts, structure) of a release, as the next release must know it.

    `counts`: one row per count of the system (a population class in a cell): its true value
    and whether the release hid it (every place showing it hidden, or never published).
    `structure`: what a reader could combine in that release, in population names: the
    classes of identical populations, the identities between classes, and the cells where
    each table's populations were published (the domain of those identities).
    Both are private: they hold true counts, and stay in the warehouse's `disclosure` schema
    (a national roll-up's, in its partition's private tables).
    """
    units_of: dict[int, list[int]] = {}
    for u, members in enumerate(problem.units):
        for m in members:
            units_of.setdefault(m, []).append(u)
    wanted = set(months)
    rows: dict = {month: [] for month in months}
    for v, key in enumerate(problem.keys):
        if not (isinstance(key, tuple) and len(key) == 3 and key[0] in wanted and v in units_of):
            continue  # a helper constant, not a count
        month, klass, (vintage, breakdown, group) = key
        rows[month].append((month, klass, vintage, breakdown, group, int(problem.values[v]),
                            all(u in hidden_units for u in units_of[v])))
    records = {}
    for month in months:
        structure = {
            "classes": {name: klass for name, klass in classes.get(month, {}).items() if name != klass},
            "identities": [{k: int(c) for k, c in identity.items()} for identity in identities.get(month, [])],
            "gap_classes": sorted(k for m, k in gap_classes if m == month),
            "quality_classes": sorted(k for m, k in quality_classes if m == month),
            "gap_cells": sorted(list(c) for c in gap_cells.get(month, set())),
            "quality_cells": sorted(list(c) for c in quality_cells.get(month, set())),
        }
        records[month] = (pl.DataFrame(rows[month], schema=RELEASE_COLUMNS, orient="row"), structure)
    return records


def link_releases(problem: CountProblem, index: dict, earlier: Sequence[tuple], profile: DisclosureProfile, *,
                  month, classes: dict) -> int:
    """Add what earlier releases of the month told readers to the problem; return the relations added.

    Each earlier release is `(counts, structure)` as `_release_records` made it when that
    release was published. The reader this protects against holds every release and knows
    exactly how each true count changed since (e.g. which one patient was added: the
    strongest reader of a re-send, so any weaker one is covered too). For them an earlier
    release is a second view of today's counts x, shifted by the known change s:

    - a count it showed stands for a range r: today's count is within r + s (`released`);
    - a count it hid stays hidden (`fixed_hidden`), and if it was small then (1..threshold),
      today's interval must still cover 1 + s..threshold + s (`earlier_small`): what the
      reader learns is about the earlier release's patients;
    - its identities held for its counts: sum c (x - s) = 0, i.e. sum c x = sum c x_true, added
      where today's identities do not already imply them (populations identical then but not
      now, a pattern of memberships that today's extra patient broke).
    """
    import numpy as np

    from pipelines.segmentation.disclosure import _shown_bounds

    threshold = profile.small_count_threshold
    suppresses = profile.small_count_action in ("suppress", "redact") and threshold > 0
    today = [dict(classes)]
    added = 0
    released: list[dict] = []

    def var(name: str, cell: tuple):
        return index.get((month, today[0].get(name, name), cell))

    def constant_relation(terms: dict) -> None:
        nonlocal added
        terms = {v: c for v, c in terms.items() if c != 0}
        if not terms:
            return
        total = sum(c * problem.values[v] for v, c in terms.items())
        members, coefficients = list(terms), [float(c) for c in terms.values()]
        if total != 0:
            # The known constant as an exact helper count (in no unit: never shown or hidden).
            helper = len(problem.keys)
            problem.keys.append(("__release_constant__", helper))
            problem.values.append(abs(int(total)))
            problem.exact[helper] = abs(int(total))
            members.append(helper)
            coefficients.append(-1.0 if total > 0 else 1.0)
        problem.relations.append((members, coefficients))
        added += 1

    # Today's identities, to skip an earlier one they already imply.
    today_vectors: dict[frozenset, list[dict]] = {}
    for members, coefficients in problem.relations:
        today_vectors.setdefault(frozenset(members), []).append(dict(zip(members, coefficients)))

    for counts, structure in earlier:
        old_classes = structure.get("classes", {})
        members_of: dict[str, list[str]] = {}
        for name, klass in old_classes.items():
            members_of.setdefault(klass, []).append(name)
        shown: dict[int, tuple[float, float]] = {}
        rows = counts.filter(pl.col("reporting_month") == month)
        values = rows["value"].to_list()
        lo, hi = _shown_bounds(profile, values) if values else (np.zeros(0), np.zeros(0))
        old_value: dict[tuple, int] = {}
        for (klass, vintage, breakdown, group, value, is_hidden), low, high in zip(
                rows.select("population", "imd_vintage", "breakdown", "group", "value", "is_hidden").rows(),
                lo.tolist(), hi.tolist()):
            cell = (vintage, breakdown, group)
            names = [klass, *members_of.get(klass, [])]
            old_value[(klass, cell)] = int(value)
            today_vars = {}
            for name in names:
                v = var(name, cell)
                if v is not None:
                    today_vars[name] = v
            for name, v in today_vars.items():
                shift = problem.values[v] - int(value)
                if is_hidden:
                    problem.fixed_hidden.add(v)
                    if suppresses and 1 <= int(value) <= threshold:
                        low_need, high_need = 1 + shift, threshold + shift
                        if v in problem.earlier_small:
                            a, b = problem.earlier_small[v]
                            low_need, high_need = min(a, low_need), max(b, high_need)
                        problem.earlier_small[v] = (low_need, high_need)
                else:
                    a, b = shown.get(v, (0.0, np.inf))
                    shown[v] = (max(a, low + shift), min(b, high + shift))
            # Populations identical then but counted apart today: their counts differed by
            # exactly the change since.
            distinct = sorted(set(today_vars.values()))
            for other in distinct[1:]:
                constant_relation({other: 1, distinct[0]: -1})
        released.append(shown)
        # The earlier identities, in the cells where their populations were published then.
        gap_classes, quality_classes = set(structure.get("gap_classes", [])), set(structure.get("quality_classes", []))
        gap_cells = {tuple(c) for c in structure.get("gap_cells", [])}
        quality_cells = {tuple(c) for c in structure.get("quality_cells", [])}
        for identity in structure.get("identities", []):
            domains = []
            for klass in identity:
                domain = set()
                if klass in gap_classes:
                    domain |= gap_cells
                if klass in quality_classes:
                    domain |= quality_cells
                domains.append(domain)
            for cell in sorted(set.intersection(*domains)) if domains else []:
                terms: dict[int, int] = {}
                constant = 0
                for klass, c in identity.items():
                    v = var(klass, cell)
                    if v is not None:
                        terms[v] = terms.get(v, 0) + int(c)
                    constant += int(c) * old_value.get((klass, cell), 0)
                if constant != 0 or not terms:
                    continue  # not an identity of that release's counts here (a cell it did not publish)
                if any(_same_relation(terms, t) for t in today_vectors.get(frozenset(terms), ())):
                    continue
                constant_relation(terms)
    # What each release showed, as bounds over every count (helper constants included, unbounded).
    n = len(problem.keys)
    for shown in released:
        lower, upper = np.zeros(n), np.full(n, np.inf)
        for v, (a, b) in shown.items():
            lower[v], upper[v] = a, b
        problem.released.append((lower, upper, np.zeros(n)))
    return added


def _same_relation(terms: dict, other: dict) -> bool:
    """Whether two homogeneous relations are the same up to a factor."""
    if set(terms) != set(other):
        return False
    first = next(iter(terms))
    ratio = other[first] / terms[first]
    return all(abs(other[v] - ratio * c) < 1e-9 for v, c in terms.items())
