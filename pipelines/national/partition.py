"""Run one ICB's month in a private scratch warehouse and leave its results in the partition store.

The ICB month runs the very job the single-ICS mode runs (staging, gates, cohorts,
indicators, disclosure, publish) in a DuckDB file of its own under a scratch folder, so
no two partitions ever share a DuckDB file (DuckDB allows one writer per file). What
leaves the scratch warehouse:

- private: `gap_counts` (the exact group counts behind the gap table, never rounded),
  `gap_hierarchy` (which fine ethnicity / Sub-ICB groups nest in which coarse ones) and
  `indicator_catalogue`, the exact deprivation-quality counts (every practice and 'ALL') and the distinct membership
  patterns of the published populations (numbered, no patient id): what the national
  roll-up needs to protect every area together, and nothing patient-level;
- published: the month's rows of every `published.*` table (already disclosure-controlled
  at ICB level), for the ICB rows of the national warehouse and serving snapshot;
- private: the month's record of every release the partition published (`releases`,
  `release_structures`, true counts), which the next run of the partition carries back into
  its scratch warehouse so that a re-sent extract is suppressed against them (`carry_releases`).

The scratch folder is deleted afterwards; patient rows never reach the store.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from pipelines.national.store import PartitionStore

PRIVATE_TABLES = ("gap_counts", "gap_hierarchy", "indicator_catalogue", "deprivation_quality", "membership_patterns",
                  "releases", "release_structures")


def release_tables() -> dict[str, tuple[str, str]]:
    """Return partition table name -> (schema, table) of the month's release record in a warehouse.

    The ICS month's private record of every release of the month (`pipelines/releases.py`):
    exported with the partition and put back into the next run's scratch warehouse, so that a
    re-run on a re-sent extract is suppressed against what the partition published before.
    """
    from pipelines import releases  # (imported here: it brings the disclosure modules)

    return {"releases": (releases.SCHEMA, releases.RELEASES), "release_structures": (releases.SCHEMA, releases.STRUCTURES)}


class PartitionFailed(RuntimeError):
    """An ICB month did not publish (a gate blocked it or its input could not be used); the message says why."""


def reference_template(scratch_root: Path, reference_dir: str | None) -> Path:
    """Return a warehouse holding only the reference tables, built once per machine and reference pins.

    Loading the reference tables (the spatial postcode lookup above all) costs far more than a
    small ICB month; each partition starts from a copy of this file instead. A file lock
    makes concurrent workers on one machine build it once.
    """
    from pipelines.definitions import build_definitions
    from pipelines.runner import ensure_reference

    scratch_root.mkdir(parents=True, exist_ok=True)
    template = scratch_root / "reference-template.duckdb"
    with open(scratch_root / "reference-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        defs = build_definitions(warehouse=str(template), reference_dir=reference_dir)
        if ensure_reference(defs, template) != 0:
            raise PartitionFailed(f"reference data could not be loaded into {template}")
    return template


def run_icb_month(
    icb: str, month: str, *, extracts_root: str, store_root: str, scratch_root: str | None = None,
    reference_dir: str | None = None, settings_kwargs: dict | None = None,
) -> dict:
    """Run ICB `icb`'s month `month` (YYYY-MM-DD or YYYY-MM) from EXTRACTS_ROOT/<icb>/ and commit its partition.

    Returns:
        The partition's committed manifest (run id, table row counts, patients run).

    After the month's national roll-up, the new run is checked against that release before it is
    committed (`national.context`): units the check hides are hidden from the start in a new run
    of the month, until the check hides nothing more (the manifest's `national_release_check`).

    Raises:
        PartitionFailed: when the month did not publish, or cannot be checked against the
            month's national release; the store keeps the previous run.
    """
    from pipelines.national.context import hidden_for_national_release
    from pipelines.resources import PipelineSettings

    key = f"{month[:7]}-01"
    scratch_base = Path(scratch_root or tempfile.gettempdir()) / "core20-national"
    template = reference_template(scratch_base, reference_dir)
    settings = PipelineSettings(**(settings_kwargs or {}))
    info = {"primary_imd_vintage": settings.primary_imd_vintage,
            # None: the shipped definitions.
            "definitions": str(settings.definitions_path()) if settings.definitions_path() else None,
            "disclosure_profile": settings.disclosure_profile}
    store = PartitionStore(store_root)
    # After the month's national release, the run is checked against it before it is committed
    # (`national.context`); units the check hides go back into the month, run again with them.
    forced: set = set()
    checks: list[dict] = []
    while True:
        tables = _run_month(icb, key, template, scratch_base, store, settings, forced, extracts_root=extracts_root,
                            reference_dir=reference_dir)
        more, figures = hidden_for_national_release(store, icb, key, tables, info, reference_dir=reference_dir)
        if figures:
            checks.append(figures)
        if not more:
            break
        if more <= forced:
            # The month showed units it was told to hide: looping again would change nothing.
            raise PartitionFailed(f"ICB {icb} {key[:7]}: the month still shows {len(more)} unit(s) the check against the "
                                  "month's national release requires hidden (disclosure.forced_hidden); nothing committed")
        forced |= more
    n_patients = int(tables.pop("_n_patients")["n"][0])
    if checks:
        info["national_release_check"] = {"runs": len(checks), "n_units_hidden": len(forced),
                                          "n_lp_solves": sum(c["n_lp_solves"] for c in checks),
                                          "seconds": round(sum(c["seconds"] for c in checks), 3)}
    return store.write(icb, key, tables, {"n_patients": n_patients, **info})


def _run_month(icb: str, key: str, template: Path, scratch_base: Path, store: PartitionStore, settings, forced: set, *,
               extracts_root: str, reference_dir: str | None) -> dict[str, pl.DataFrame]:
    """Run the ICB month once in a fresh scratch warehouse (its earlier releases carried in, `forced` hidden); return
    the tables that leave it (`export_partition`).

    Raises:
        PartitionFailed: the month did not publish.
    """
    from pipelines.definitions import build_definitions
    from pipelines.jobs import MONTHLY_JOB
    from pipelines.releases import write_forced_hidden
    from pipelines.runner import QUIET_LOGS, failure_message
    from pipelines.warehouse import connect

    scratch = Path(tempfile.mkdtemp(prefix=f"{icb}-{key[:7]}-", dir=scratch_base))
    try:
        warehouse = scratch / "core20plus5.duckdb"
        shutil.copyfile(template, warehouse)
        carry_releases(store, icb, key, warehouse)
        if forced:
            with connect(warehouse) as con:
                write_forced_hidden(con, date.fromisoformat(key), forced)
        defs = build_definitions(
            warehouse=str(warehouse), extracts=str(Path(extracts_root) / icb), reference_dir=reference_dir,
            settings=settings, serving_root=str(scratch / "serving"), reports_dir=str(scratch / "reports"),
        )
        result = defs.resolve_job_def(MONTHLY_JOB).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), partition_key=key, raise_on_error=False, run_config=QUIET_LOGS,
        )
        if not result.success:
            raise PartitionFailed(f"ICB {icb} {key[:7]} did not publish: {failure_message(result)}")
        return export_partition(warehouse, key, settings.primary_imd_vintage, settings.definitions_path())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def carry_releases(store: PartitionStore, icb: str, partition_key: str, warehouse: Path) -> int:
    """Put the partition's earlier releases of the month into a new scratch warehouse; return how many.

    Each run of a partition starts from the reference tables alone, and the scratch folder is
    deleted afterwards, so without this a re-run on a re-sent extract (a correction, a late
    practice) was suppressed on its own: a reader holding the ICB rows published before and
    after could subtract them. With the earlier releases in `disclosure.releases` the ICB
    month links to them as an ICS's re-run does (`month_disclosure.link_releases`) and records
    itself as the next release. A partition committed before releases were exported has none
    to carry: its re-run is its first recorded release.
    """
    from pipelines.warehouse import connect, write_frame

    if not store.has_tables(icb, partition_key, release_tables()):
        return 0
    frames = {name: store.read(icb, partition_key, name) for name in release_tables()}
    if frames["release_structures"].is_empty():
        return 0
    month = date.fromisoformat(partition_key)
    with connect(warehouse) as con:
        for name, (schema, table) in release_tables().items():
            write_frame(con, schema, table, frames[name], partition_column="reporting_month", partition_value=month)
    return frames["release_structures"].height


def export_partition(warehouse: Path, partition_key: str, primary_vintage: str, definitions: Path | None = None,
                     ) -> dict[str, pl.DataFrame]:
    """Return the tables that leave an ICB month's scratch warehouse: private counts and published rows.

    The counts are made where the month's patient rows are, as the ICS month makes them
    (`gaps.gap_counts_sql` in the warehouse); the membership patterns are one row per distinct
    pattern of published populations (`populations.membership_representatives`) under a
    pattern number, never a patient id: the roll-up needs them to find the identities
    between the populations (two indicators with one denominator) in each ICB and region.
    """
    from assets.gaps import PATIENT_LEVEL
    from pipelines.segmentation.cohorts import published_intersections, reported_cohorts
    from pipelines.segmentation.definitions import load_definitions
    from pipelines.segmentation.gaps import gap_counts_sql
    from pipelines.segmentation.month_disclosure import population_memberships
    from pipelines.segmentation.populations import membership_representatives
    from pipelines.segmentation.sql import literal
    from pipelines.warehouse import connect, quote, table_exists

    month = date.fromisoformat(partition_key)

    def month_rows(con, schema: str, table: str) -> pl.DataFrame:
        frame = pl.from_arrow(con.sql(f'select * from "{schema}"."{table}"').to_arrow_table())
        return frame.filter(pl.col("reporting_month") == month) if "reporting_month" in frame.columns else frame

    relation = {name: f"(select * from {quote(schema)}.{quote(table)} where reporting_month = {literal(month)})"
                for name, (schema, table) in PATIENT_LEVEL.items()}
    with connect(warehouse, read_only=True) as con:
        catalogue = month_rows(con, "indicators", "indicator_catalogue")
        cohort_catalogue = month_rows(con, "cohorts", "cohort_catalogue")
        # Every practice's row, not only 'ALL': the ICS published them, so the roll-up, which
        # shows the same ICB counts again, must hold them as that ICS's reader does.
        quality = month_rows(con, "population", "deprivation_quality")
        reported = reported_cohorts(cohort_catalogue.select("cohort_id"), cohort_catalogue)["cohort_id"].unique().sort()
        cohorts = f"(select * from {relation['cohorts']} where cohort_id in ({', '.join(literal(c) for c in reported) or 'NULL'}))"
        # The crosses the ICS month publishes (Core20 x age band, a cohort's reporting focus).
        intersections = published_intersections(load_definitions(definitions), pl.DataFrame(
            {"cohort_id": reported}, schema={"cohort_id": pl.String}))
        counted = gap_counts_sql(con, relation["results"], relation["attributes"], cohorts, intersections=intersections,
                                 primary_vintage=primary_vintage)
        results, deprivation = membership_representatives(con, relation["results"], relation["deprivation"])
        n_patients = con.execute(f"select count(distinct patient_id) from {relation['attributes']}").fetchone()[0]
        published = [row[0] for row in con.execute(
            "select table_name from information_schema.tables where table_schema = 'published' order by 1").fetchall()]
        tables = {f"published__{name}": month_rows(con, "published", name) for name in published}
        for name, (schema, table) in release_tables().items():
            if table_exists(con, schema, table):
                tables[name] = month_rows(con, schema, table)
    memberships = population_memberships(results.lazy(), deprivation.lazy()).collect()
    numbers = memberships.select("patient_id").unique().sort("patient_id").with_row_index("pattern")
    memberships = (memberships.join(numbers, on="patient_id")
                   .select("reporting_month", pl.format("pattern-{}", "pattern").alias("pattern"), "population")
                   .sort("pattern", "population"))
    tables.update({
        "gap_counts": counted.counts,
        "gap_hierarchy": counted.hierarchy,
        "indicator_catalogue": catalogue,
        "deprivation_quality": quality,
        "membership_patterns": memberships,
        "_n_patients": pl.DataFrame({"n": [n_patients]}),
    })
    return tables
