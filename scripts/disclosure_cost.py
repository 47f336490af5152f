"""Measure what disclosure control costs a month, against the month and a one-pass floor, in one sitting.

    flock /tmp/core20-heavy.lock .venv/bin/python scripts/disclosure_cost.py --patients 1000000 [--keep DIR]

Generates an extract, loads the reference tables, times the *floor* (one DuckDB query that
reads the extract once and counts patients and events per IMD 2019 quintile through the
postcode lookup; run before and after the month, median reported), then runs the month
in-process and reports, from the run's own metadata:

- suppression: the joint secondary-suppression audit inside the gap-table step
  (`suppression_seconds`), with its solves, complements and linked earlier releases;
- the disclosure audit gate: building the candidate snapshot and report (work publishing
  needs anyway, moved before the publish transaction) and checking every surface (`audit_seconds`);
- each step's wall time and the month's, wall and CPU, and the ratios to the floor.

Timings are measured here and never asserted in tests. Nothing patient-level is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FLOOR_SQL = """
with patients as (select patient_id, upper(replace(postcode, ' ', '')) as postcode_key from read_parquet('{patients}')),
lookup as (select replace(pcds, ' ', '') as postcode_key, lsoa11cd from read_parquet('{lookup}')),
imd as (select "LSOA code (2011)" as lsoa11cd,
               "Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)" as decile
        from read_csv('{imd}', header = true)),
events as (select patient_id, count(*) as n_events from read_parquet('{events}') group by patient_id)
select ceil(imd.decile / 2) as q, count(*) as n_patients, coalesce(sum(events.n_events), 0) as n_events
from patients left join lookup using (postcode_key) left join imd using (lsoa11cd) left join events using (patient_id)
group by all order by 1
"""


def floor_seconds(extract: Path, repeats: int) -> list[tuple[float, float]]:
    """Return (wall, cpu) seconds of the one-pass floor query, `repeats` times."""
    import duckdb

    from reference_data import loader

    sql = FLOOR_SQL.format(patients=extract / "patients.parquet", events=extract / "events.parquet",
                           lookup=loader.verified_path("postcode_lsoa11"), imd=loader.verified_path("imd2019_lsoa11"))
    con = duckdb.connect()
    con.sql("set enable_progress_bar = false")
    out = []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        con.sql(sql).fetchall()
        out.append((time.perf_counter() - started, time.process_time() - started_cpu))
    con.close()
    return out


def materialization_metadata(result, asset_path: list[str]) -> dict:
    """Return the metadata of a run's materialisation of one asset (empty if absent)."""
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            if list(materialization.asset_key.path) == asset_path:
                return {k: v.value for k, v in materialization.metadata.items()}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    work = args.keep or Path(tempfile.mkdtemp(prefix="core20-disclosure-"))
    work.mkdir(parents=True, exist_ok=True)
    month = dt.date(2026, 10, 1)
    extract = work / "extracts" / "2026-10"

    from pipelines.synthetic import generate_extract

    if not (extract / "patients.parquet").exists():
        generate_extract(extract, reporting_month=month, n_patients=args.patients, seed=args.seed)

    import dagster as dg

    from pipelines.definitions import build_definitions
    from pipelines.jobs import MONTHLY_JOB, REFERENCE_JOB
    from pipelines.runner import QUIET_LOGS
    from pipelines.segmentation.gaps import build_gap_table  # noqa: F401  (imports paid before timing)

    warehouse = work / "warehouse.duckdb"
    defs = build_definitions(warehouse=str(warehouse), extracts=str(work / "extracts"))
    defs.resolve_job_def(REFERENCE_JOB).execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=QUIET_LOGS)
    floors = floor_seconds(extract, 3)
    started, started_cpu = time.perf_counter(), time.process_time()
    result = defs.resolve_job_def(MONTHLY_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=month.isoformat(), run_config=QUIET_LOGS)
    run_s, run_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    floors += floor_seconds(extract, 2)
    floor, floor_cpu = statistics.median(f[0] for f in floors), statistics.median(f[1] for f in floors)

    steps = [(e.step_key, e.event_specific_data.duration_ms / 1000) for e in result.all_events
             if e.event_type_value == "STEP_SUCCESS"]
    gaps = materialization_metadata(result, ["audit", "gap_table"])
    audit = materialization_metadata(result, ["audit", "disclosure"])
    suppression = float(gaps.get("suppression_seconds", 0.0))
    audit_s = float(audit.get("audit_seconds", 0.0))
    build_s = float(audit.get("candidate_build_seconds", 0.0))
    print(f"patients {args.patients:,}; month {run_s:.1f} s wall, {run_cpu:.1f} s CPU (success={result.success}); "
          f"floor {floor:.2f} s wall, {floor_cpu:.2f} s CPU (median of {len(floors)}); "
          f"month/floor {run_s / floor:.0f}x wall, {run_cpu / floor_cpu:.0f}x CPU")
    print("\n| step | seconds | share |\n|---|---:|---:|")
    for step, seconds in steps:
        print(f"| {step} | {seconds:.1f} | {seconds / run_s:.1%} |")
    print("\n| disclosure control | seconds | share of the month | x floor |\n|---|---:|---:|---:|")
    for name, seconds in (("secondary suppression (joint audit of gap + deprivation-quality counts)", suppression),
                          ("disclosure audit: checking every surface", audit_s),
                          ("suppression + audit", suppression + audit_s),
                          ("candidate snapshot + report build (publishing work, moved before the gate)", build_s)):
        print(f"| {name} | {seconds:.1f} | {seconds / run_s:.1%} | {seconds / floor:.1f} |")
    print(f"\nsuppression: {gaps.get('suppression_n_lp_solves')} solves, {gaps.get('suppression_n_complements')} complements, "
          f"{gaps.get('suppression_n_variables')} counts, {gaps.get('suppression_n_earlier_releases')} earlier release(s)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
