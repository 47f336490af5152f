"""Measure generation and the monthly run at ICS scale; print figures for the README.

    flock /tmp/core20-heavy.lock .venv/bin/python scripts/benchmark.py [--patients 1000000] [--keep DIR] [--compare-gx]

Steps: generate a synthetic extract of N patients, load the reference tables into a fresh
warehouse, run one month, and report wall time per Dagster step and peak memory, then the
time spent in data-quality gates (each check's own `gate_seconds`: quarantine rules,
suites, match rates, loading the suites and recording the history) as a share of the
monthly run. `--compare-gx` also times Great Expectations itself on the staged patients
(all of them) and on a 10% slice of the staged events, to show what the polars engine
saves. Timings are measured here, never asserted in tests.
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


def gate_seconds(result) -> list[tuple[str, float]]:
    """Return (gate, seconds) for every asset check of a run that reports its own time."""
    gates = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        seconds = evaluation.metadata.get("gate_seconds")
        if seconds is not None:
            gates.append((f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}", float(seconds.value)))
    return gates


def gx_import_seconds() -> float:
    """Return the time a fresh interpreter takes to import great_expectations (paid once per run)."""
    import subprocess

    code = "import time, os; os.environ['GX_ANALYTICS_ENABLED']='False'; t=time.perf_counter(); import great_expectations; print(time.perf_counter()-t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def compare_with_gx(warehouse: Path, month: dt.date) -> None:
    """Time the staged-table suites with GX's pandas engine next to the polars engine."""
    from pipelines import quality
    from pipelines.gates import Suite, validate
    from pipelines.warehouse import connect, read_table

    patient_suite, event_suite = quality.staging_suites(month)
    with connect(warehouse, read_only=True) as con:
        patients = read_table(con, "staging", "patients", partition_column="reporting_month", partition_value=month)
        events = read_table(con, "staging", "events", partition_column="reporting_month", partition_value=month)
    events = events.head(events.height // 10)
    print("\n| suite | rows | polars engine (s) | GX pandas engine (s) |\n|---|---:|---:|---:|")
    for name, suite, frame in (("staging.patients (all)", patient_suite, patients),
                               ("staging.events (as quarantine rules, 10% slice)", event_suite, events)):
        timings = []
        for engine in ("polars", "great_expectations"):
            started = time.perf_counter()
            validate(frame, Suite(suite.name, engine, suite.expectations))
            timings.append(time.perf_counter() - started)
        print(f"| {name} | {frame.height:,} | {timings[0]:.2f} | {timings[1]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder)")
    parser.add_argument("--compare-gx", action="store_true", help="also time Great Expectations' own engine on the staged tables")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    work = args.keep or Path(tempfile.mkdtemp(prefix="core20-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    month = dt.date(2026, 10, 1)

    from pipelines.synthetic import generate_extract

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
    gates = gate_seconds(result)
    print("\n| gate | seconds |\n|---|---:|")
    for gate, seconds in gates:
        print(f"| {gate} | {seconds:.2f} |")
    total = sum(seconds for _, seconds in gates)
    print(f"\ngates: {total:.1f} s of the {run_s:.1f} s monthly run ({total / run_s:.0%}); "
          f"importing great_expectations, included once in that, takes {gx_import_seconds():.1f} s in a fresh process")
    if args.compare_gx:
        compare_with_gx(warehouse, month)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
