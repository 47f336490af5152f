"""Measure generation and the monthly run at ICS scale; print figures for the README.

    .venv/bin/python scripts/benchmark.py [--patients 1000000] [--keep DIR]

Steps: generate a synthetic extract of N patients, load the reference tables into a fresh
warehouse, run one month, and report wall time per Dagster step and peak memory. Timings
are measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def peak_rss_gib() -> float:
    """Return this process's peak resident memory in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def step_durations(result) -> list[tuple[str, float]]:
    """Return (step, seconds) for each successful step of a Dagster run, in order."""
    return [
        (event.step_key, event.event_specific_data.duration_ms / 1000)
        for event in result.all_events
        if event.event_type_value == "STEP_SUCCESS"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    work = args.keep or Path(tempfile.mkdtemp(prefix="core20-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    month = dt.date(2026, 10, 1)

    from pipelines.segmentation.synth import generate_extract

    started = time.perf_counter()
    generate_extract(work / "extracts" / "2026-10", reporting_month=month, n_patients=args.patients, seed=args.seed)
    generate_s = time.perf_counter() - started
    print(f"generate {args.patients:,} patients: {generate_s:.1f} s", flush=True)

    import dagster as dg

    from pipelines.definitions import build_definitions
    from pipelines.jobs import MONTHLY_JOB, REFERENCE_JOB
    from pipelines.runner import QUIET_LOGS

    warehouse = work / "warehouse.duckdb"
    defs = build_definitions(warehouse=str(warehouse), extracts=str(work / "extracts"))
    started = time.perf_counter()
    ref = defs.resolve_job_def(REFERENCE_JOB).execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=QUIET_LOGS)
    print(f"reference tables (once per reference version): {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    result = defs.resolve_job_def(MONTHLY_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key="2026-10-01", run_config=QUIET_LOGS
    )
    run_s = time.perf_counter() - started
    print(f"monthly run: {run_s:.1f} s (success={result.success}); peak memory {peak_rss_gib():.1f} GiB")
    print("\n| step | seconds |\n|---|---:|")
    for step, seconds in step_durations(ref) + step_durations(result):
        print(f"| {step} | {seconds:.1f} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
