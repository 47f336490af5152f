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

import time
from typing import Sequence

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
    earlier: Sequence[pl.DataFrame] | None = None,
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
        earlier: true counts of earlier releases of the month (`release_counts`), kept for
            the cross-release audit; see `link_releases`.

    Returns:
        The gap counts with `numerator`/`denominator` controlled (hidden rows null, or 0 for
        a redacting profile), `is_suppressed`, and without the never-published cells; the
        quality table with every count controlled and shares recomputed from the controlled
        counts; figures (`n_lp_solves`, `n_complements`, `seconds`, ...).
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
    if memberships is not None:
        frame = memberships.collect() if isinstance(memberships, pl.LazyFrame) else memberships
        for month in months:
            rows = frame.filter(pl.col("reporting_month") == month)
            names = sorted(rows["population"].unique().to_list())
            matrix = membership_patterns(rows.select("patient_id", "population"), names)
            classes[month], identities[month] = population_identities(matrix, names)

    def population_class(month, name: str) -> str:
        return classes.get(month, {}).get(name, name)

    # Gap-table rows: one unit each, numerator and denominator.
    rows = counts.select(*KEYS, *CELL, "numerator", "denominator").rows()
    gap_unit: list[int] = []
    gap_classes: set = set()
    unpublished_rows: set[int] = set()
    gap_cells: dict = {}
    class_cells: dict = {}
    for r, (month, indicator, version, vintage, breakdown, group, numerator, denominator) in enumerate(rows):
        cell = (vintage, breakdown, group)
        gap_cells.setdefault(month, set()).add(cell)
        den_class = population_class(month, f"{indicator}@{version}:den")
        num_class = population_class(month, f"{indicator}@{version}:num")
        n = var((month, num_class, cell), numerator or 0)
        d = var((month, den_class, cell), denominator or 0)
        class_cells.setdefault((month, num_class), set()).add(cell)
        class_cells.setdefault((month, den_class), set()).add(cell)
        gap_classes |= {(month, num_class), (month, den_class)}
        problem.units.append([n, d])
        problem.unit_keys.append(repr((month, indicator, version, cell)))
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
                class_cells.setdefault((month, klass), set()).add(cell)
                quality_classes.add((month, klass))
                problem.units.append([v])
                problem.unit_keys.append(repr((month, "deprivation_quality", vintage, practice, column)))
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

    if earlier:
        link_releases(problem, index, earlier, profile)

    result = suppress(problem, profile)
    hidden = result.hidden_units
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
             "n_components": result.n_components, "n_variables": len(problem.keys),
             "n_relations": len(problem.relations), "n_identities": n_identities,
             "seconds": time.perf_counter() - started}
    return controlled, quality_controlled, stats


def link_releases(problem: CountProblem, index: dict, earlier: Sequence[pl.DataFrame], profile: DisclosureProfile) -> None:
    """Add what earlier releases of the month told readers to the problem (cross-release audit).

    Each earlier release is a `release_counts` frame: (`reporting_month`, `key`, `value`,
    `is_hidden`) for every published variable. A reader holding it knows each visible
    count's range there; the auditor also knows how much the true count changed since, so the
    two releases become one set of bounds on today's count: [lower + change, upper + change].
    This is the strongest reader (one who knows exactly how the extract changed, e.g. one
    patient added), so it also covers any weaker one.
    """
    import numpy as np

    from pipelines.segmentation.disclosure import _shown_bounds

    n = len(problem.keys)
    by_key = {repr(k): i for k, i in index.items()}
    for release in earlier:
        lower = np.zeros(n)
        upper = np.full(n, np.inf)
        shift = np.zeros(n)
        values = release["value"].to_list()
        lo, hi = _shown_bounds(profile, values)
        for key, value, is_hidden, low, high in zip(release["key"].to_list(), values, release["is_hidden"].to_list(),
                                                    lo.tolist(), hi.tolist()):
            i = by_key.get(key)
            if i is None:
                continue
            shift[i] = problem.values[i] - value
            if not is_hidden:
                lower[i], upper[i] = low, high
        problem.released.append((lower, upper, shift))

