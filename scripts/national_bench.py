"""Measure the national month with one Celery worker and with two, and its floor, in one sitting.

    flock /tmp/core20-heavy.lock .venv/bin/python scripts/national_bench.py --scale 0.002 --icbs all

1. Generate (or reuse) a synthetic national extract at SCALE of every chosen ICB's population.
2. The floor: the one-pass DuckDB query of scripts/benchmark.py (postcode -> LSOA -> IMD
   quintile joined to each patient's event count) over every ICB's extract in turn - the
   least work any engine must do to read the month - timed before and after the runs.
3. The national job (`core20 national`'s code path) with 1 worker, then 2 workers, each on
   a fresh partition store: wall-clock time, the peak resident memory of each worker process
   (sampled every 0.2 s, its children included) and of the run's own process.

With --rollup-once the runs of step 3 are the ICB months alone, and the roll-up (one step
after them whatever the number of workers, the same work) is timed once, in this process, on
the first run's partitions, with its suppression's figures; each run's figures are printed
to standard error as it ends, so a benchmark cut short keeps the runs before.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from benchmark import FLOOR_SCRIPT, floor_sql, tree_rss  # noqa: E402

ENGLAND_PATIENTS = 63_000_000  # registered patients in England, about (issue 17; NHS Digital publishes the monthly figure)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def floor_seconds(extracts: Path, month: str, reference_dir: Path) -> tuple[float, float]:
    """Return (wall, cpu) seconds of the floor query summed over every ICB extract of the month (median of 3)."""
    walls, cpus = [], []
    for _ in range(3):
        wall = cpu = 0.0
        for icb in sorted(p for p in extracts.iterdir() if (p / month).is_dir()):
            out = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, floor_sql(icb / month, reference_dir), "1"],
                                 capture_output=True, text=True, check=True)
            measured = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
            wall += measured["seconds"][0]
            cpu += measured["cpu_seconds"][0]
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def run_with_workers(n: int, work: Path, extracts: Path, month: str, rollup: bool = True) -> dict:
    from pipelines.national.local import local_cluster, run_national_month

    root = work / f"workers-{n}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "dagster_home").mkdir(parents=True)
    env = {"DAGSTER_HOME": str(root / "dagster_home"), "CORE20_NATIONAL_EXTRACTS_ROOT": str(extracts),
           "CORE20_NATIONAL_STORE_ROOT": str(root / "partitions"), "CORE20_NATIONAL_SCRATCH_ROOT": str(work / "scratch"),
           "CORE20_NATIONAL_WAREHOUSE": str(root / "national.duckdb"), "CORE20_NATIONAL_SERVING_ROOT": str(root / "serving"),
           "GX_ANALYTICS_ENABLED": "False"}
    with local_cluster(n, env, root / "logs") as cluster:
        peaks = {pid: 0 for pid in cluster["pids"]}
        own = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for pid in peaks:
                    peaks[pid] = max(peaks[pid], tree_rss(pid))
                own[0] = max(own[0], tree_rss(os.getpid()))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started, load_before = time.perf_counter(), os.getloadavg()
        result, events = run_national_month(month, cluster["env"], rollup=rollup)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    steps = {}
    for e in events:
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_SUCCESS":
            steps[e.step_key] = e.dagster_event.event_specific_data.duration_ms / 1000
    suppression = hidden = None
    if result.success and rollup:
        from pipelines.national.store import NATIONAL, PartitionStore

        manifest = PartitionStore(root / "partitions").manifest(NATIONAL, f"{month[:7]}-01")
        figures = manifest.get("suppression", {})
        hidden = manifest.get("hidden_rows")
        suppression = {"seconds": figures.get("seconds"), "method": figures.get("method"),
                       "n_lp_solves": figures.get("n_lp_solves"), "n_complements": figures.get("n_complements"),
                       "n_audit_complements": figures.get("n_audit_complements"), "n_variables": figures.get("n_variables"),
                       "steps_seconds": {"top": figures.get("top", {}).get("seconds"),
                                         "regions": {k: v.get("seconds") for k, v in figures.get("regions", {}).items()},
                                         "audit": figures.get("audit", {}).get("seconds")}}
    return {"workers": n, "success": result.success, "seconds": seconds, "rollup_suppression": suppression,
            "hidden_rows": hidden,
            "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "worker_peak_bytes": sorted(peaks.values()), "run_process_peak_bytes": own[0],
            "icb_step_seconds": sum(v for k, v in steps.items() if k.startswith("icb_month[")),
            "rollup_seconds": steps.get("national_rollup")}


def _cpu_seconds() -> float:
    """User and system CPU of this process and of its children waited for (the roll-up's forked audit)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_rollup(root: Path, month: str, suppression: str | None = None) -> dict:
    """Run the national roll-up and publish (`national_rollup`'s work) in this process; return its time, memory and figures."""
    from pipelines.national.rollup import publish_national, rollup_month

    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(os.getpid()))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, load_before = time.perf_counter(), os.getloadavg()
    cpu_before = _cpu_seconds()
    manifest = rollup_month(str(root / "partitions"), month, suppression=suppression,
                            progress=lambda m: say(f"{time.strftime('%H:%M:%S')} {m}"))
    publish_national(str(root / "partitions"), month, str(root / "national.duckdb"), str(root / "serving"))
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_before
    done.set()
    sampler.join()
    figures = manifest.get("suppression", {})
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_bytes": peak[0], "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "suppression_seconds": figures.get("seconds"), "suppression": {k: figures.get(k) for k in (
                "method", "processes", "n_lp_solves", "n_complements", "n_audit_complements", "n_variables", "n_components",
                "n_lp_models", "largest_lp_model", "n_fallbacks")},
            "hidden_rows": manifest.get("hidden_rows"),
            "suppression_steps_seconds": {"top": figures.get("top", {}).get("seconds"),
                                          "regions": {k: v.get("seconds") for k, v in figures.get("regions", {}).items()},
                                          "audit": figures.get("audit", {}).get("seconds")}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.002)
    parser.add_argument("--icbs", default="all")
    parser.add_argument("--month", default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/core20-national-bench"))
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--rollup-suppression", default=None, help="with --rollup-once: rollup.SUPPRESSION_METHODS (default: the roll-up's)")
    parser.add_argument("--rollup-once", action="store_true",
                        help="run the ICB months alone with each number of workers, and time the roll-up once, on the "
                             "first run's partitions (it is one step, the same work whatever the workers)")
    args = parser.parse_args()
    from pipelines import synthetic
    from pipelines.national.synth import generate_national
    from reference_data.loader import resolve_reference_dir

    month = date.fromisoformat(f"{args.month}-01") if args.month else synthetic.default_reporting_month()
    extracts = args.work / f"extracts-{args.scale}-{args.icbs.replace(',', '_')}"
    started = time.perf_counter()
    if not extracts.exists():
        say(f"generating the national extract at scale {args.scale} ...")
        plan = generate_national(extracts, reporting_month=month, scale=args.scale, icbs=args.icbs, seed=args.seed,
                                 progress=say)
        n_patients, n_icbs = int(plan["n_patients"].sum()), plan.height
    else:
        n_patients = n_icbs = 0
        for icb in extracts.iterdir():
            manifest = json.loads((icb / f"{month:%Y-%m}" / "extract.json").read_text())
            n_patients += manifest["n_patients"]
            n_icbs += 1
    generate_seconds = time.perf_counter() - started
    reference_dir = resolve_reference_dir(None)
    # The reference-only warehouse every partition starts from is built once per machine,
    # before any timing, so neither run pays for it.
    from pipelines.national.partition import reference_template

    reference_template(args.work / "scratch" / "core20-national", None)
    say(f"{n_patients:,} patients in {n_icbs} ICBs; floor ...")
    floors = [floor_seconds(extracts, f"{month:%Y-%m}", reference_dir)]
    say(f"floor (wall, cpu): {floors[0]}")
    runs = []
    for n in [int(x) for x in args.workers.split(",")]:
        say(f"national month with {n} worker(s) ...")
        runs.append(run_with_workers(n, args.work, extracts, f"{month:%Y-%m}", rollup=not args.rollup_once))
        say(f"  {runs[-1]['seconds']:.0f} s, success={runs[-1]['success']}")
        say(json.dumps(runs[-1]))  # each run as it ends: a run cut short still leaves the ones before
    floors.append(floor_seconds(extracts, f"{month:%Y-%m}", reference_dir))
    say(f"floor (wall, cpu) before and after: {floors}")
    floor = statistics.median([f[0] for f in floors])
    rollup = None
    if args.rollup_once and runs and runs[0]["success"]:
        say("the roll-up, once, on the first run's partitions ...")
        rollup = time_rollup(args.work / f"workers-{runs[0]['workers']}", f"{month:%Y-%m}", args.rollup_suppression)
        say(json.dumps(rollup))
    report = {"rollup_once": rollup, "n_patients": n_patients, "n_icbs": n_icbs, "month": f"{month:%Y-%m}", "scale": args.scale,
              "generate_seconds": generate_seconds, "floor_seconds": floor, "floor_runs": floors, "runs": runs}
    for run in runs:
        if rollup is not None:
            # The roll-up is one step after the ICB months whatever the number of workers.
            run["seconds_with_rollup"] = run["seconds"] + rollup["seconds"]
        run["ratio_to_floor"] = run["seconds"] / floor if floor else None
        run["seconds_per_million_patients"] = run["seconds"] / n_patients * 1e6
        # One worker's step time is the serial work; the full England month at that rate on W workers:
        run["projected_england_worker_hours"] = run["icb_step_seconds"] / n_patients * ENGLAND_PATIENTS / 3600
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
