"""The national roll-up: region and England gap tables, SII/RII and data quality from ICB partitions.

Every figure is computed from the partitions' private exact counts - the group counts
behind each ICB's gap table and its exact deprivation-quality counts - summed over the
area's ICBs (registered populations of different ICBs are disjoint, so group counts add).
Never from patient rows, and never from already-rounded published counts (summing rounded
counts compounds the rounding error and lets a reader recover hidden cells by differencing).
The summed counts then go through the same disclosure profile, secondary suppression,
statistics and blocking gate (`expectations/audit.gap_table.json`) as an ICS month's.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Collection
from datetime import date, timedelta

import polars as pl

from pipelines.national.geography import icb_populations
from pipelines.national.store import NATIONAL, PartitionStore
from pipelines.segmentation.month_disclosure import ALL_PRACTICES

_KEYS = ["reporting_month", "indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"]
GEOGRAPHY = ["geography_level", "geography_code", "geography_name"]
ENGLAND = ("england", "ENG", "England")


class RollupError(RuntimeError):
    """The partitions cannot be rolled up (missing, inconsistent settings, or a gate failed)."""


def areas(icbs: list[str], reference_dir: str | None = None) -> list[tuple[tuple[str, str, str], list[str]]]:
    """Return (level, code, name) with the ICBs of England and of each NHS England region that has one."""
    geography = icb_populations(reference_dir).filter(pl.col("icb_code").is_in(icbs))
    found = [ENGLAND, icbs]
    regions = [(("region", code, name), sorted(group["icb_code"].to_list()))
               for (code, name), group in geography.group_by(["region_code", "region_name"], maintain_order=True)]
    return [(found[0], sorted(found[1])), *sorted(regions)]


# Breakdowns by a geography inside the area: published in the ICB tables only (`rollup_month`).
AREA_BREAKDOWNS = ("practice", "sub_icb", "icb")
COHORT_PREFIX, SEPARATOR, NOT_MEMBER = "cohort:", "|", "not_member"


def complete_cohorts(counts: pl.DataFrame) -> pl.DataFrame:
    """Add, for each ICB, the cohort breakdowns it lacks because no patient of it was in the cohort.

    A partition emits `cohort:<id>` (and `core20|cohort:<id>`...) only for cohorts with
    members; in an ICB without members everyone is 'not_member'. Without these rows the
    region's 'member' + 'not_member' would not add up to its overall count, and the summed
    table would break the very identities secondary suppression protects.

    Examples:
        >>> c = pl.DataFrame({"partition_icb": ["A", "A", "A", "B"], "reporting_month": [1] * 4,
        ...     "indicator_id": ["x"] * 4, "indicator_version": [1] * 4, "imd_vintage": ["V"] * 4,
        ...     "breakdown": ["overall", "cohort:smi", "cohort:smi", "overall"], "group": ["all", "member", "not_member", "all"],
        ...     "numerator": [5, 1, 4, 7], "denominator": [9, 2, 7, 8]})
        >>> complete_cohorts(c).filter(pl.col("partition_icb") == "B").select("breakdown", "group", "denominator").rows()
        [('overall', 'all', 8), ('cohort:smi', 'not_member', 8)]
    """
    wanted = counts.select("imd_vintage", "breakdown").unique()
    added = []
    for icb in counts["partition_icb"].unique().sort().to_list():
        own = counts.filter(pl.col("partition_icb") == icb)
        missing = wanted.join(own.select("imd_vintage", "breakdown").unique(), on=["imd_vintage", "breakdown"], how="anti")
        for vintage, breakdown in missing.sort("imd_vintage", "breakdown").rows():
            parts = breakdown.split(SEPARATOR)
            cohort_at = [i for i, part in enumerate(parts) if part.startswith(COHORT_PREFIX)]
            others = [part for part in parts if not part.startswith(COHORT_PREFIX)]
            if not cohort_at or len(others) + len(cohort_at) != len(parts) or len(cohort_at) > 1:
                raise RollupError(f"ICB partition {icb} has no {breakdown!r} ({vintage}) rows; only cohort breakdowns may be absent")
            base = SEPARATOR.join(others) or "overall"
            rows = own.filter((pl.col("breakdown") == base) & (pl.col("imd_vintage") == vintage))
            if base == "overall":
                rows = own.filter(pl.col("breakdown") == "overall")
                group = pl.lit(NOT_MEMBER)
            else:
                pieces = [pl.col("group"), pl.lit(NOT_MEMBER)] if cohort_at[0] == 1 else [pl.lit(NOT_MEMBER), pl.col("group")]
                group = pl.concat_str(pieces, separator=SEPARATOR)
            added.append(rows.with_columns(pl.lit(vintage).alias("imd_vintage"), pl.lit(breakdown).alias("breakdown"),
                                           group.alias("group")))
    return pl.concat([counts, *added]) if added else counts


def sum_counts(counts: pl.DataFrame, icbs: list[str]) -> pl.DataFrame:
    """Return the exact group counts of the union of `icbs`: each group's numerator and denominator summed.

    `counts` must already hold every ICB's cohort rows (`complete_cohorts` over all the
    partitions, done once by the caller), so that an area's cell is the sum of the very cells
    its ICBs show.
    """
    return (counts.filter(pl.col("partition_icb").is_in(icbs)).group_by(_KEYS)
            .agg(pl.col("numerator").sum().cast(pl.Int64), pl.col("denominator").sum().cast(pl.Int64)).sort(_KEYS))


def _one_setting(store: PartitionStore, month: str, icbs: list[str], name: str) -> str:
    values = {store.manifest(icb, month).get(name) for icb in icbs}
    if len(values) != 1:
        raise RollupError(f"the ICB partitions of {month[:7]} were run with different {name} settings ({sorted(map(str, values))}); "
                          "re-run them with one setting before rolling up")
    return values.pop()


SUPPRESSION_METHODS = ("linked", "joint", "top_down")
SUPPRESSION_ENV = "CORE20_NATIONAL_ROLLUP_SUPPRESSION"
PROCESSES_ENV = "CORE20_ROLLUP_PROCESSES"


def own_releases(store: PartitionStore, month: str, icbs: list[str], counts: pl.DataFrame, quality: pl.DataFrame,
                 geographies: list, labels: dict, profile) -> tuple[set, set, dict]:
    """Return (hidden, shown, figures): each ICB's own published decisions, and what they force above.

    Each ICS publishes its month before the roll-up, and a reader may hold both releases. If
    the national release showed an ICB count its ICS hid, or hid one it showed and so on,
    a reader would hold two suppression patterns of the same counts. So the national ICB
    rows repeat the ICS's own: every row and deprivation-quality count the ICS published
    is named here, hidden if the ICS hid it, else shown (kept: never a complement). Only
    the regions and England are then decided by the roll-up, and a region's or England's
    row (quality count) is hidden from the start when any of its ICBs' is (its count
    minus the others' would narrow the hidden ones, all of them if only one is hidden);
    the audit then hides what else the rounding windows of the shown ones require.

    Names are `protect_month`'s: `(label, indicator_id, indicator_version, (imd_vintage,
    breakdown, group))` and `(label, 'deprivation_quality', imd_vintage, practice_code, column)`.

    Raises:
        RollupError: an ICS published a row or count that its partition's exact counts do not
            give under the disclosure profile (the partition is not the run that published),
            or published practice rows its partition did not export (an older partition:
            re-run it).
    """
    cell = ["imd_vintage", "breakdown", "group"]
    published = store.read_all(month, "published__gap_table", icbs).select(
        "partition_icb", "indicator_id", "indicator_version", *cell, "numerator", "denominator", "is_suppressed")
    joined = published.join(counts.select("partition_icb", "indicator_id", "indicator_version", *cell,
                                          pl.col("numerator").alias("_n"), pl.col("denominator").alias("_d")),
                            on=["partition_icb", "indicator_id", "indicator_version", *cell], how="left")
    unmatched = joined.filter(pl.col("_d").is_null() | (~pl.col("is_suppressed") & (
        (pl.col("numerator") != profile.control("_n")) | (pl.col("denominator") != profile.control("_d")))))
    if unmatched.height:
        icb, indicator, _, vintage, breakdown, group = unmatched.row(0)[:6]
        raise RollupError(f"{unmatched.height} published gap-table row(s) of {month[:7]} differ from their partitions' exact counts "
                          f"under the disclosure profile (e.g. ICB {icb}: {indicator} {vintage} {breakdown}={group}); "
                          "re-run those ICB partitions so that the roll-up repeats what each ICS published")
    def gap_name(row) -> tuple:
        icb, indicator, version, vintage, breakdown, group = row
        return labels[icb], indicator, version, (vintage, breakdown, group)

    hidden, shown = set(), set()
    hidden_rows: dict = {}  # ICB -> its hidden rows, for the areas above it
    for *row, is_hidden in joined.select("partition_icb", "indicator_id", "indicator_version", *cell, "is_suppressed").rows():
        (hidden if is_hidden else shown).add(gap_name(row))
        if is_hidden:
            hidden_rows.setdefault(row[0], set()).add(tuple(row[1:]))

    columns = [c for c in quality.columns if c.startswith("n_")]
    place = ["partition_icb", "imd_vintage", "practice_code"]
    released = store.read_all(month, "published__deprivation_quality", icbs).select(*place, *columns)
    both = released.join(quality.select(*place, *[pl.col(c).alias(f"_{c}") for c in columns]), on=place, how="left")
    missing = both.filter(pl.col(f"_{columns[0]}").is_null())
    if missing.height:
        raise RollupError(f"the partition of ICB {missing['partition_icb'][0]} ({month[:7]}) has no exact deprivation-quality "
                          f"row for practice {missing['practice_code'][0]}, which its ICS published: it was exported "
                          "before partitions kept every practice's row; re-run it")
    hidden_quality: dict = {}
    for c in columns:
        redacted = (pl.col(c) == 0) & (profile.control(f"_{c}") != 0) if profile.small_count_action == "redact" else pl.lit(False)
        is_hidden = pl.col(c).is_null() | redacted
        wrong = both.filter(~is_hidden & (pl.col(c) != profile.control(f"_{c}")))
        if wrong.height:
            raise RollupError(f"ICB {wrong['partition_icb'][0]}'s published deprivation-quality {c} of {month[:7]} "
                              f"(practice {wrong['practice_code'][0]}) differs from its partition's exact count under the "
                              "disclosure profile; re-run that ICB partition")
        for icb, vintage, practice, hide in both.select(*place, is_hidden.alias("_hide")).rows():
            (hidden if hide else shown).add((labels[icb], "deprivation_quality", vintage, practice, c))
            if hide and practice == ALL_PRACTICES:
                hidden_quality.setdefault(icb, set()).add((vintage, c))

    # Above the ICBs: hidden from the start where any ICB part is.
    forced = 0
    for (level, code, _), members in geographies:
        if level == "icb":
            continue
        rows = set().union(*(hidden_rows.get(icb, set()) for icb in members))
        counts_hidden = set().union(*(hidden_quality.get(icb, set()) for icb in members))
        above = {(labels[code], indicator, version, (vintage, breakdown, group))
                 for indicator, version, vintage, breakdown, group in rows if breakdown not in AREA_BREAKDOWNS}
        above |= {(labels[code], "deprivation_quality", vintage, ALL_PRACTICES, c) for vintage, c in counts_hidden}
        hidden |= above
        forced += len(above)
    figures = {"n_icb_units_hidden_by_their_ics": sum(len(r) for r in hidden_rows.values()),
               "n_icb_units_released": len(joined) + len(both) * len(columns), "n_units_hidden_above_for_them": forced}
    return hidden, shown, figures


# The national partition's private record of every release of the month (true counts: never
# published, never served), as `pipelines/releases.py` keeps an ICS's, per area.
RELEASES, RELEASE_STRUCTURES = "private__releases", "private__release_structures"
_RELEASE_ORDER = ["geography_code", "population", "imd_vintage", "breakdown", "group"]


def national_record(store: PartitionStore, month: str) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """Return the national partition's record of the month's releases (counts, structures), None before the first."""
    if not store.has_tables(NATIONAL, month, (RELEASES, RELEASE_STRUCTURES)):
        return None
    return store.read(NATIONAL, month, RELEASES), store.read(NATIONAL, month, RELEASE_STRUCTURES)


def earlier_releases(store: PartitionStore, month: str, icbs: list[str], labels: dict,
                     record: tuple[pl.DataFrame, pl.DataFrame] | None, every_release_of: Collection[str] = ()) -> dict:
    """Return area label -> the earlier releases of its counts still in readers' hands, as `protect_month` links them.

    Two kinds, each relabelled to the area's label in this roll-up:

    - an ICS's releases of its ICB before its current one (a re-sent extract re-ran the
      partition, which carried them: `partition.carry_releases`). The current one is repeated
      by the national ICB rows and linked as each ICB's own release (`own_releases`);
    - every earlier national release of the month (this partition's `private__releases`), for
      every area it showed that this roll-up shows: ICBs, regions and England. A reader holding
      national release 1 and 2 and the exact change of the re-send could otherwise subtract a
      region's or England's rows, as an ICS's re-run is protected from (`pipelines/releases.py`).

    `record`: the national partition's (`national_record`). A national month rolled up before
    the roll-up kept its record has none: its next roll-up is its first recorded release.
    `every_release_of`: ICBs whose committed releases are all earlier, the current one included
    (a new run of the ICB being checked before it is committed: `national.context`).
    """
    from pipelines.national.partition import release_tables
    from pipelines.segmentation.month_disclosure import RELEASE_COLUMNS

    found: dict = {}

    def add(label, counts: pl.DataFrame, structures: pl.DataFrame, code_column: str | None = None, code=None) -> None:
        for release, text in structures.sort("release").select("release", "structure").rows():
            rows = counts.filter(pl.col("release") == release)
            if code_column is not None:
                rows = rows.filter(pl.col(code_column) == code)
            found.setdefault(label, []).append(
                (rows.with_columns(pl.lit(label).alias("reporting_month")).select(list(RELEASE_COLUMNS)), json.loads(text)))

    for icb in icbs:
        if not store.has_tables(icb, month, release_tables()):
            continue
        structures = store.read(icb, month, "release_structures")
        if icb in every_release_of:
            add(labels[icb], store.read(icb, month, "releases"), structures)
        elif structures.height > 1:
            latest = structures["release"].max()
            add(labels[icb], store.read(icb, month, "releases"), structures.filter(pl.col("release") < latest))
    if record is not None:
        counts, structures = record
        for code in sorted(set(structures["geography_code"]) & set(labels)):
            add(labels[code], counts, structures.filter(pl.col("geography_code") == code), "geography_code", code)
    return found


def national_release_tables(month: str, records: dict, labels: dict,
                            record: tuple[pl.DataFrame, pl.DataFrame] | None) -> tuple[dict, int]:
    """Return (the national partition's release tables with this roll-up's release appended, its number).

    `records`: label -> (counts, structure) of this roll-up (`protect_month`'s figures['releases']);
    `record`: the national partition's record so far (`national_record`).
    A roll-up identical to the latest recorded release (a re-run on the same partitions) adds
    nothing and returns that release's number.
    """
    code_of = {label: code for code, label in labels.items()}
    value = month_date(month)
    counts = pl.concat([frame.with_columns(pl.lit(code_of[label]).alias("geography_code"), pl.lit(value).alias("reporting_month"))
                        for label, (frame, _) in records.items()]).select(
        "reporting_month", "geography_code", pl.exclude("reporting_month", "geography_code")).sort(_RELEASE_ORDER)
    structures = pl.DataFrame({"geography_code": [code_of[label] for label in records],
                               "structure": [json.dumps(structure, sort_keys=True) for _, structure in records.values()]}
                              ).sort("geography_code")
    earlier_counts, earlier_structures = record if record is not None else (None, None)
    latest = int(earlier_structures["release"].max()) if earlier_structures is not None and earlier_structures.height else 0
    if latest:
        last_counts = earlier_counts.filter(pl.col("release") == latest).drop("release").sort(_RELEASE_ORDER)
        last_structures = earlier_structures.filter(pl.col("release") == latest).drop("release").sort("geography_code")
        if last_counts.equals(counts) and last_structures.equals(structures):
            return {RELEASES: earlier_counts, RELEASE_STRUCTURES: earlier_structures}, latest
    release = pl.lit(latest + 1, pl.Int32).alias("release")
    counts = counts.select("reporting_month", release, pl.exclude("reporting_month"))
    structures = structures.select(release, pl.all())
    if latest:
        counts, structures = pl.concat([earlier_counts, counts]), pl.concat([earlier_structures, structures])
    return {RELEASES: counts, RELEASE_STRUCTURES: structures}, latest + 1


@dataclass(frozen=True)
class NationalProblem:
    """A month's areas as one disclosure problem: every ICB, its region and England, each under a label of its own.

    `protect_month` keeps populations, identities and cells apart per reporting month, so each
    area's block stands in for a month of its own: a label date (one day per area, in a year no
    extract has) that the tables get back as the real month afterwards.
    """

    icbs: list
    profile: object
    vintage: str
    definitions: object
    counts: pl.DataFrame  # every ICB's exact gap counts (`partition_icb`), cohort rows completed
    quality: pl.DataFrame  # every ICB's exact deprivation-quality counts (`partition_icb`)
    catalogue: pl.DataFrame
    geographies: list  # ((level, code, name), member ICBs): each ICB, England, each region
    labels: dict  # area code -> its label
    blocks: list  # per geography: its summed exact counts, labelled
    combined: pl.DataFrame  # the blocks as published (no practice, Sub-ICB or ICB rows above an ICB)
    exact_quality: pl.DataFrame
    relations: list
    memberships: pl.DataFrame
    sums: list  # (area label, its parts' labels)

    def above(self) -> set:
        """The labels of the areas above the ICBs (regions and England)."""
        return {self.labels[code] for (level, code, _), _ in self.geographies if level != "icb"}


def national_problem(store: PartitionStore, key: str, icbs: list[str], reference_dir: str | None = None) -> NationalProblem:
    """Return the month's ICBs, regions and England as one problem, from the partitions' private exact counts.

    Raises:
        RollupError: the partitions were run with different disclosure profiles, primary
            vintages or definitions.
    """
    from pipelines.segmentation.definitions import load_definitions
    from pipelines.segmentation.disclosure import PROFILES
    from pipelines.segmentation.gaps import _relations

    profile = PROFILES[_one_setting(store, key, icbs, "disclosure_profile")]
    vintage = _one_setting(store, key, icbs, "primary_imd_vintage")
    definitions = load_definitions(_one_setting(store, key, icbs, "definitions"))
    # Cohort rows an ICB lacks (no member there) are completed before any area is summed.
    counts = complete_cohorts(store.read_all(key, "gap_counts", icbs))
    hierarchy = store.read_all(key, "gap_hierarchy", icbs).drop("partition_icb").unique()
    catalogue = store.read_all(key, "indicator_catalogue", icbs).drop("partition_icb").unique()
    quality = store.read_all(key, "deprivation_quality", icbs)
    patterns = store.read_all(key, "membership_patterns", icbs).with_columns(
        (pl.col("partition_icb") + ":" + pl.col("pattern")).alias("patient_id"))
    names = dict(icb_populations(reference_dir).select("icb_code", "icb_name").rows())

    # One labelled block per area: its exact counts, quality totals and membership patterns.
    geographies = [(("icb", icb, names.get(icb, icb)), [icb]) for icb in sorted(icbs)] + areas(icbs, reference_dir)
    labels = {code: date(1900, 1, 1) + timedelta(days=i) for i, ((_, code, _), _) in enumerate(geographies)}
    blocks, quality_blocks, pattern_blocks, sums = [], [], [], []
    for (level, code, _), members in geographies:
        label = labels[code]
        blocks.append(sum_counts(counts, members).with_columns(pl.lit(label).alias("reporting_month")))
        # An ICB's every practice row (its ICS published them); above it the 'ALL' rows summed.
        area_quality = quality.filter(pl.col("partition_icb").is_in(members))
        if level != "icb":
            area_quality = area_quality.filter(pl.col("practice_code") == ALL_PRACTICES)
        quality_blocks.append(
            area_quality.drop("partition_icb").group_by("imd_vintage", "practice_code").agg(pl.col("^n_.*$").sum())
            .with_columns(pl.lit(label).alias("reporting_month")))
        pattern_blocks.append(patterns.filter(pl.col("partition_icb").is_in(members))
                              .select(pl.lit(label).alias("reporting_month"), "patient_id", "population").unique())
        if level != "icb":
            sums.append((label, [labels[icb] for icb in members]))
    regions_of_all = [code for (level, code, _), members in geographies if level == "region" and members == sorted(icbs)]
    if regions_of_all:
        # Every ICB in one region (a regional team's roll-up): England is that region cell for cell,
        # given as its one part so that the areas nest (England above the region above its ICBs).
        sums = [(labels[ENGLAND[1]], [labels[regions_of_all[0]]]) if total == labels[ENGLAND[1]] else (total, parts)
                for total, parts in sums]
    # A region's or England's practice, Sub-ICB and ICB rows would be its ICBs' own rows again,
    # cell for cell: they are published once, in the ICB's table, where they live.
    combined = pl.concat([block if level == "icb" else block.filter(~pl.col("breakdown").is_in(AREA_BREAKDOWNS))
                          for ((level, _, _), _), block in zip(geographies, blocks)], how="vertical_relaxed")
    exact_quality = pl.concat(quality_blocks, how="diagonal_relaxed").select(
        "reporting_month", "imd_vintage", "practice_code", pl.col("^n_.*$"))
    return NationalProblem(icbs=list(icbs), profile=profile, vintage=vintage, definitions=definitions, counts=counts,
                           quality=quality, catalogue=catalogue, geographies=geographies, labels=labels, blocks=blocks,
                           combined=combined, exact_quality=exact_quality,
                           relations=_relations(combined, hierarchy, vintage), memberships=pl.concat(pattern_blocks),
                           sums=sums)


def rollup_processes(processes: int | None = None) -> int:
    """The processes the roll-up's suppression audits its parts in: `processes` if given (above 0),
    else $CORE20_ROLLUP_PROCESSES, else every CPU this process may run on."""
    from pipelines.segmentation.disclosure import suppression_processes

    return suppression_processes(processes, env=PROCESSES_ENV)


def rollup_month(store_root: str, month: str, *, reference_dir: str | None = None, sii_seed: int = 20260,
                 sii_repetitions: int = 10000, sii_transform: bool = False, icbs: list[str] | None = None,
                 suppression: str | None = None, progress=None, processes: int | None = None) -> dict:
    """Roll the month's committed ICB partitions up to regions and England and commit the national partition.

    Every area the national release shows - each ICB, each region, England - is protected
    together: a reader holds them side by side, and a region's count is the sum of its ICBs'
    (England's of every ICB's), so an ICB cell hidden in the ICB's rows could otherwise be
    read off as the region's count minus the other ICBs'. Each area brings its own population
    identities (from its membership patterns) and its exact deprivation-quality totals.
    `suppression` (default $CORE20_NATIONAL_ROLLUP_SUPPRESSION, else 'linked'): 'linked' (as
    'joint', but the ICB rows repeat each ICS's own published decisions - a reader may hold
    both releases - and the regions and England are decided around them: `own_releases`),
    'joint' (every
    area in one `protect_month` problem, audited in scopes: each count first in a model of its
    ICB, of its ICB and a neighbour, of its region, of its region with England - the rest held
    at the truth - so each LP is the size of an area or two, not of the release; see
    `month_disclosure._area_scopes`) or 'top_down' (England and regions, then each region's
    ICBs under the region's fixed pattern, then one audit of the whole release:
    `protection.protect_top_down`; slower at every size measured). The ICB rows of the release
    `processes` (default `rollup_processes()`: $CORE20_ROLLUP_PROCESSES, else every CPU): the
    audit's independent parts (one per group of indicators that share populations) are
    audited that many at a time, in forked processes; the cells hidden are the same. With
    'joint' and 'top_down' the ICB rows of the release are the ones decided here, not the
    ICB's own ICS publication (a reader holding both holds two patterns).

    Every roll-up is a release of the month's national counts that readers keep. The national
    partition keeps a private record of each (`private__releases`, `private__release_structures`:
    true counts per area, never published), and the next roll-up of the month (after an ICB's
    extract was re-sent and its partition re-run) is linked to them and to the ICSs' earlier
    releases (`earlier_releases`): what they hid stays hidden, what they showed bounds today's
    counts by the known change. A roll-up on unchanged partitions adds no release.

    Returns:
        The national partition's manifest (ICBs, rows per table, `release`: the number of this
        national release of the month).

    Raises:
        RollupError: no partitions, partitions with different disclosure profiles or
            primary vintages, a roll-up table that fails its disclosure gate, or earlier releases
            to link under the 'top_down' method (which does not link them).
    """
    from pipelines.gates import run_suite
    from pipelines.segmentation.cohorts import drop_by_construction
    from pipelines.segmentation.disclosure import unpublishable_counts
    from pipelines.segmentation.gaps import build_inequality_table, gap_statistics
    from pipelines.national.protection import protect_top_down
    from pipelines.segmentation.month_disclosure import protect_month

    suppression = suppression or os.environ.get(SUPPRESSION_ENV) or "linked"
    if suppression not in SUPPRESSION_METHODS:
        raise ValueError(f"suppression must be one of {SUPPRESSION_METHODS}, not {suppression!r}")
    rollup_started = time.perf_counter()
    store = PartitionStore(store_root)
    key = f"{month[:7]}-01"
    icbs = icbs or store.icbs(key)
    if not icbs:
        raise RollupError(f"no ICB partition of {key[:7]} is committed under {store_root}")
    problem = national_problem(store, key, icbs, reference_dir)
    profile, vintage, labels, geographies = problem.profile, problem.vintage, problem.labels, problem.geographies
    counts, quality, combined = problem.counts, problem.quality, problem.combined
    started = time.perf_counter()
    # Earlier releases of this month's counts still in readers' hands: the ICSs' before a re-send,
    # and the national roll-up's own (a re-run after a partition was re-sent).
    record = national_record(store, key)
    earlier = earlier_releases(store, key, icbs, labels, record)
    if suppression in ("linked", "joint"):
        processes = rollup_processes(processes)
        hidden, shown, linking = (own_releases(store, key, icbs, counts, quality, geographies, labels, profile)
                                  if suppression == "linked" else (set(), set(), {}))
        controlled, quality_controlled, stats = protect_month(
            combined, problem.relations, profile, primary_vintage=vintage, memberships=problem.memberships,
            quality=problem.exact_quality, sums=problem.sums, progress=progress, processes=processes, hidden=hidden, shown=shown,
            released_areas={labels[icb] for icb in icbs} if suppression == "linked" else (), earlier=earlier)
        records = stats["releases"]
        stats = {"method": suppression, "processes": processes, **linking,
                 **{k: v for k, v in stats.items() if k not in ("hidden", "shown", "release", "releases")}}
    else:
        if earlier:
            raise RollupError(f"the {key[:7]} roll-up has earlier releases to link (a re-sent ICB or an earlier national "
                              "release), which the 'top_down' method (kept for comparison) does not do; use 'linked'")
        england = labels[ENGLAND[1]]
        regions = {labels[code]: [labels[icb] for icb in members]
                   for (level, code, _), members in geographies if level == "region"}
        controlled, quality_controlled, stats = protect_top_down(
            combined, problem.relations, profile, primary_vintage=vintage, memberships=problem.memberships,
            quality=problem.exact_quality, england=england, regions=regions, progress=progress)
        # Labels back to area codes, so the manifest says which region each figure is.
        code_of = {str(label): code for code, label in labels.items()}
        stats["regions"] = {code_of[label]: figures for label, figures in stats["regions"].items()}
        records = None
    suppression_seconds = time.perf_counter() - started
    release_frames, release = national_release_tables(key, records, labels, record) if records is not None else ({}, None)

    month_value = month_date(key)
    gap_tables, inequality_tables, quality_tables, private = [], [], [], []
    for ((level, code, name), _members), block in zip(geographies, problem.blocks):
        label = labels[code]
        geography = [pl.lit(level).alias("geography_level"), pl.lit(code).alias("geography_code"),
                     pl.lit(name).alias("geography_name")]
        own = controlled.filter(pl.col("reporting_month") == label).with_columns(pl.lit(month_value).alias("reporting_month"))
        # As in an ICS month: comparisons true by construction are not published.
        table, _dropped = drop_by_construction(gap_statistics(own, problem.catalogue, profile=profile), problem.definitions)
        gate = run_suite(table, "audit.gap_table", {"unpublishable_counts": unpublishable_counts(profile)})
        if not gate.success:
            raise RollupError(f"the {level} gap table {code} of {key[:7]} failed its disclosure gate: {gate.summary()}")
        inequality = build_inequality_table(table, base_seed=sii_seed, repetitions=sii_repetitions, transform=sii_transform)
        own_quality = (quality_controlled.filter((pl.col("reporting_month") == label)
                                                 & (pl.col("practice_code") == ALL_PRACTICES))
                       .with_columns(pl.lit(month_value).alias("reporting_month"), pl.lit(code).alias("practice_code")))
        gap_tables.append(table.select(*geography, pl.all()))
        inequality_tables.append(inequality.select(*geography, pl.all()))
        quality_tables.append(own_quality.select(*geography, pl.all()))
        private.append(block.with_columns(pl.lit(month_value).alias("reporting_month")).select(*geography, pl.all()))
    tables = {
        "gap_table": pl.concat(gap_tables),
        "inequality_table": pl.concat(inequality_tables),
        "deprivation_quality": pl.concat(quality_tables),
        "private__gap_counts": pl.concat(private),
        **release_frames,
    }
    info = {"icbs": icbs, "disclosure_profile": profile.name, "primary_imd_vintage": vintage, "release": release,
            "suppression": {**stats, "seconds": suppression_seconds},
            "hidden_rows": hidden_rows(tables["gap_table"], geographies),
            "rollup_seconds": time.perf_counter() - rollup_started}
    return store.write(NATIONAL, key, tables, info)


def hidden_rows(gap_table: pl.DataFrame, geographies: list) -> dict:
    """Return, per geography level, how many gap-table rows the roll-up published and how many it hid.

    Above the ICBs the hidden rows are split by why they can be: `over_a_hidden_icb_row` where
    at least one of the area's ICBs hid the same row (an ICS hid it; the area's count minus the
    other ICBs' would narrow it down, so the area's row is hidden too), `other` where none did
    (the area's own small count, or a complement). Counts of rows only: what a national team
    reads to see what disclosure control cost each level.
    """
    keys = ["indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"]
    members = pl.DataFrame([(code, icb) for (level, code, _), icbs in geographies if level != "icb" for icb in icbs],
                           schema={"geography_code": pl.String, "icb": pl.String}, orient="row")
    hidden_icb = (gap_table.filter((pl.col("geography_level") == "icb") & pl.col("is_suppressed"))
                  .select(pl.col("geography_code").alias("icb"), *keys).unique())
    above = (gap_table.filter((pl.col("geography_level") != "icb") & pl.col("is_suppressed"))
             .select("geography_level", "geography_code", *keys)
             .join(members, on="geography_code").join(hidden_icb.with_columns(pl.lit(True).alias("_under")),
                                                      on=["icb", *keys], how="left")
             .group_by("geography_level", "geography_code", *keys).agg(pl.col("_under").any().fill_null(False).alias("under")))
    under = dict(above.group_by("geography_level").agg(pl.col("under").sum()).rows())
    figures = {}
    for level, rows, hidden in (gap_table.group_by("geography_level")
                                .agg(pl.len(), pl.col("is_suppressed").sum()).sort("geography_level").rows()):
        figures[level] = {"rows": rows, "hidden": hidden, "share_hidden": round(hidden / rows, 4) if rows else 0.0}
        if level != "icb":
            figures[level] |= {"over_a_hidden_icb_row": under.get(level, 0), "other": hidden - under.get(level, 0)}
    return figures


def side_by_side(store_root: str, month: str) -> pl.DataFrame:
    """Return the month's national gap rows: every ICB, region and England, protected together (`rollup_month`)."""
    store = PartitionStore(store_root)
    return store.read(NATIONAL, f"{month[:7]}-01", "gap_table")


def month_date(month: str) -> date:
    return date.fromisoformat(f"{month[:7]}-01")


def area_table(icbs: list[str], reference_dir: str | None = None) -> pl.DataFrame:
    """Return the release's areas and how they nest (schemas.NATIONAL_AREAS): each ICB with its region, each region, England.

    Examples:
        >>> area_table(["QT1", "QOX"]).filter(pl.col("geography_level") != "icb").select(pl.exclude("geography_name")).rows()
        [('england', 'ENG', None, None, None), ('region', 'Y58', None, None, 'Y58'), ('region', 'Y60', None, None, 'Y60')]
    """
    from pipelines.segmentation.schemas import NATIONAL_AREAS

    geography = icb_populations(reference_dir).filter(pl.col("icb_code").is_in(icbs))
    rows = [("icb", icb, name, icb, name, region)
            for icb, name, region in geography.select("icb_code", "icb_name", "region_code").sort("icb_code").rows()]
    rows += [(level, code, name, None, None, code if level == "region" else None)
             for (level, code, name), _members in areas(icbs, reference_dir)]
    return pl.DataFrame(rows, schema=NATIONAL_AREAS.schema, orient="row").sort("geography_level", "geography_code")


def publish_national(store_root: str, month: str, warehouse: str, serving_root: str, *,
                     reference_dir: str | None = None, keep: int = 3) -> dict:
    """Build the national warehouse and serving snapshot of a month from the partition files.

    The one writer of the national DuckDB file is this step (never the partitions): it
    replaces the month's rows of `national.gap_table` (ICB, region and England rows side by
    side), `national.inequality_table`, `national.deprivation_quality` and
    `national.indicator_catalogue` in one transaction, with `national.areas` (how the areas
    nest). It then publishes a serving snapshot of the whole national warehouse exactly as
    an ICS month does (`serving.publish_snapshot`): the star with ICB, region and England
    rows side by side in `dim_geography`, Parquet per table and month, the data dictionary
    and the generated Power BI Project, built beside the current one and swapped in with one
    rename, so a reader never sees half a month.

    Both are held to the disclosure audit of an ICS month (`disclosure_audit`, with the
    partitions' disclosure profile): the tables before the warehouse is written, the snapshot
    before it can be pointed at.

    Raises:
        RollupError: a table or the snapshot breaks a disclosure rule (names surface and rule,
            never a value); the warehouse, or the current snapshot, is then left as it was.
    """
    from pathlib import Path

    from pipelines.disclosure_audit import audit_snapshot, audit_table
    from pipelines.segmentation.disclosure import get_profile
    from pipelines.serving import publish_snapshot
    from pipelines.warehouse import connect

    store = PartitionStore(store_root)
    key = f"{month[:7]}-01"
    committed = store.manifest(NATIONAL, key)
    icbs = committed["icbs"]
    tables = {
        "gap_table": side_by_side(store_root, key),
        "inequality_table": store.read(NATIONAL, key, "inequality_table"),
        "deprivation_quality": store.read(NATIONAL, key, "deprivation_quality"),
        # Every partition ran one set of definitions (rollup_month refuses otherwise): one catalogue.
        "indicator_catalogue": store.read_all(key, "indicator_catalogue", icbs).drop("partition_icb").unique()
        .sort(pl.all()),
    }
    profile = get_profile(committed["disclosure_profile"])

    def refuse(found: list, where: str) -> None:
        if found:
            raise RollupError(f"the national release of {key[:7]} breaks the disclosure profile {profile.name} in {where}: "
                              + "; ".join(str(v) for v in found))

    refuse([v for name, frame in tables.items() for v in audit_table(f"national.{name}", frame, profile)],
           "its tables (nothing was written)")
    Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    with connect(Path(warehouse)) as con:
        # Fully qualified: a file called national.duckdb is itself a catalog named 'national'.
        catalog = con.execute("select current_database()").fetchone()[0]
        schema = f'"{catalog}"."national"'
        con.execute("begin transaction")
        con.execute(f"create schema if not exists {schema}")
        for name, frame in tables.items():
            con.register("incoming", frame.to_arrow())
            con.execute(f"create table if not exists {schema}.{name} as select * from incoming limit 0")
            con.execute(f"delete from {schema}.{name} where reporting_month = ?", [month_date(key)])
            con.execute(f"insert into {schema}.{name} by name select * from incoming")
            con.unregister("incoming")
        # Areas of every month published so far: a month may have run a different set of ICBs.
        con.register("incoming", area_table(icbs, reference_dir).to_arrow())
        con.execute(f"create table if not exists {schema}.areas as select * from incoming limit 0")
        con.execute(f"insert into {schema}.areas select * from incoming i where not exists "
                    f"(select 1 from {schema}.areas a where a.geography_level = i.geography_level "
                    f"and a.geography_code = i.geography_code)")
        con.unregister("incoming")
        con.execute("commit")
    manifest = publish_snapshot(Path(warehouse), Path(serving_root), keep=keep, schema="national", check=lambda folder: refuse(
        audit_snapshot(folder, profile), "its serving snapshot (the warehouse holds the month; the current snapshot is unchanged)"))
    return {name: frame.height for name, frame in tables.items()} | {"snapshot": manifest["snapshot"]}
