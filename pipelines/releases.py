"""Private record of what each release of a month showed and hid, so a re-send cannot be differenced.

A month is published again when its extract is re-sent (a correction, a late practice, one
patient added). A reader may hold both releases, whatever the serving folder keeps, and
(the strongest reader) know exactly how the counts changed. Suppressing each release on its
own lets them subtract: a count hidden in the first release but shown (or pinned by its
complements) in the second falls out. So every release is linked to the earlier ones
(`month_disclosure.link_releases`): what they showed bounds today's counts, what they hid
stays hidden, and a count they hid while small must still look anywhere in 1-7.

For that, each published release leaves a private record in the warehouse's `disclosure`
schema (true counts: never published, never served):

- `disclosure.releases`: one row per count of the release's disclosure system (a population
  in a cell): `reporting_month`, `release` (1, 2, ... per month), the population, the
  cell, its true value and whether the release hid it;
- `disclosure.release_structures`: per release, the identities a reader could use in it
  (identical populations, linear identities, the cells each table published), as JSON.

The month's gate (`assets/gaps.py`) writes the candidate's record to
`disclosure.release_candidate` / `disclosure.release_candidate_structure`; the publish
transaction (`publication.publish`) appends it as the next release, in the same transaction
as the published tables, unless it is identical to the latest release (a plain re-run).
"""

from __future__ import annotations

import json
from datetime import date

import polars as pl

from pipelines.segmentation.month_disclosure import RELEASE_COLUMNS

SCHEMA = "disclosure"
CANDIDATE, CANDIDATE_STRUCTURE = "release_candidate", "release_candidate_structure"
RELEASES, STRUCTURES = "releases", "release_structures"
_ORDER = ["population", "imd_vintage", "breakdown", "group"]


def write_candidate(con, month: date, counts: pl.DataFrame, structure: dict) -> None:
    """Replace the month's candidate record (counts and structure) with this run's."""
    from pipelines.warehouse import write_frame

    write_frame(con, SCHEMA, CANDIDATE, counts.sort(_ORDER), partition_column="reporting_month", partition_value=month)
    frame = pl.DataFrame({"reporting_month": [month], "structure": [json.dumps(structure, sort_keys=True)]},
                         schema={"reporting_month": pl.Date, "structure": pl.String})
    write_frame(con, SCHEMA, CANDIDATE_STRUCTURE, frame, partition_column="reporting_month", partition_value=month)


def earlier_releases(con, month: date) -> list[tuple[pl.DataFrame, dict]]:
    """Return every published release of the month, oldest first, as (counts, structure)."""
    from pipelines.warehouse import table_exists

    if not (table_exists(con, SCHEMA, RELEASES) and table_exists(con, SCHEMA, STRUCTURES)):
        return []
    counts = pl.from_arrow(con.sql(f"select * from {SCHEMA}.{RELEASES} where reporting_month = $1",
                                   params=[month]).to_arrow_table())
    structures = con.execute(f"select release, structure from {SCHEMA}.{STRUCTURES} where reporting_month = ? "
                             "order by release", [month]).fetchall()
    return [(counts.filter(pl.col("release") == release).select(list(RELEASE_COLUMNS)), json.loads(structure))
            for release, structure in structures]


def _candidate(con, month: date) -> tuple[pl.DataFrame, str] | None:
    from pipelines.warehouse import table_exists

    if not (table_exists(con, SCHEMA, CANDIDATE) and table_exists(con, SCHEMA, CANDIDATE_STRUCTURE)):
        return None
    counts = pl.from_arrow(con.sql(f"select * from {SCHEMA}.{CANDIDATE} where reporting_month = $1",
                                   params=[month]).to_arrow_table())
    found = con.execute(f"select structure from {SCHEMA}.{CANDIDATE_STRUCTURE} where reporting_month = ?", [month]).fetchall()
    if counts.is_empty() or not found:
        return None
    return counts.select(list(RELEASE_COLUMNS)).sort(_ORDER), found[0][0]


def record_release(con, month: date) -> int | None:
    """Append the month's candidate record as its next release; return its number (None: nothing new).

    Runs inside the publish transaction (`con` has it open), so the record and the published
    tables change together. A candidate identical to the latest release (a re-run of the
    same extract) adds nothing.
    """
    candidate = _candidate(con, month)
    if candidate is None:
        return None
    counts, structure = candidate
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(f"create table if not exists {SCHEMA}.{RELEASES} (reporting_month DATE, release INTEGER, "
                "population VARCHAR, imd_vintage VARCHAR, breakdown VARCHAR, \"group\" VARCHAR, value BIGINT, "
                "is_hidden BOOLEAN)")
    con.execute(f"create table if not exists {SCHEMA}.{STRUCTURES} (reporting_month DATE, release INTEGER, "
                "structure VARCHAR)")
    latest = con.execute(f"select max(release) from {SCHEMA}.{STRUCTURES} where reporting_month = ?", [month]).fetchall()[0][0]
    if latest is not None:
        previous = pl.from_arrow(con.sql(f"select * from {SCHEMA}.{RELEASES} where reporting_month = $1 and release = $2",
                                         params=[month, latest]).to_arrow_table()).select(list(RELEASE_COLUMNS)).sort(_ORDER)
        old_structure = con.execute(f"select structure from {SCHEMA}.{STRUCTURES} where reporting_month = ? and release = ?",
                                    [month, latest]).fetchall()[0][0]
        if previous.equals(counts) and old_structure == structure:
            return None
    release = (latest or 0) + 1
    frame = counts.with_columns(pl.lit(release, pl.Int32).alias("release")).select(
        "reporting_month", "release", *[c for c in RELEASE_COLUMNS if c != "reporting_month"])
    con.register("_release", frame.to_arrow())
    try:
        con.execute(f"insert into {SCHEMA}.{RELEASES} by name select * from _release")
    finally:
        con.unregister("_release")
    con.execute(f"insert into {SCHEMA}.{STRUCTURES} values (?, ?, ?)", [month, release, structure])
    return release


# Units a month's suppression must hide from the start whatever their counts: decided outside
# the month, by a check of its candidate against what readers hold elsewhere (an ICB re-run
# after its month's national release: `national.context`). Private, like the releases.
FORCED = "forced_hidden"
_FORCED_SCHEMA = {"reporting_month": pl.Date, "indicator_id": pl.String, "indicator_version": pl.Int32,
                  "imd_vintage": pl.String, "breakdown": pl.String, "group": pl.String, "practice_code": pl.String,
                  "count_column": pl.String}
_QUALITY = "deprivation_quality"


def write_forced_hidden(con, month: date, names) -> None:
    """Replace the month's forced-hidden units with `names` (as `protect_month`'s `hidden` takes them)."""
    from pipelines.warehouse import write_frame

    rows = []
    for name in sorted(names, key=repr):
        if name[1] == _QUALITY:
            _, _, vintage, practice, column = name
            rows.append((month, _QUALITY, None, vintage, None, None, practice, column))
        else:
            _, indicator, version, (vintage, breakdown, group) = name
            rows.append((month, indicator, version, vintage, breakdown, group, None, None))
    write_frame(con, SCHEMA, FORCED, pl.DataFrame(rows, schema=_FORCED_SCHEMA, orient="row"),
                partition_column="reporting_month", partition_value=month)


def forced_hidden(con, month: date) -> set[tuple]:
    """Return the month's forced-hidden units, named as `protect_month`'s `hidden` takes them (none: empty)."""
    from pipelines.warehouse import table_exists

    if not table_exists(con, SCHEMA, FORCED):
        return set()
    frame = pl.from_arrow(con.sql(f"select * from {SCHEMA}.{FORCED} where reporting_month = $1", params=[month]).to_arrow_table())
    return {(month, _QUALITY, vintage, practice, column) if indicator == _QUALITY
            else (month, indicator, version, (vintage, breakdown, group))
            for _, indicator, version, vintage, breakdown, group, practice, column
            in frame.select(list(_FORCED_SCHEMA)).rows()}
