"""Measure the monthly run against its floor at ICS scale, and write the README's performance figures.

    make bench                                    # 1,000,000 and 5,000,000 patients, under the heavy lock
    make bench BENCH_SIZES=100000                 # a quick run
    make bench BENCH_ARGS=--update-readme         # also rewrite the README's performance block
    flock /tmp/core20-heavy.lock .venv/bin/python scripts/benchmark.py --sizes 1000000,5000000 [--keep] [--update-readme]

For each size, in one sitting: generate an extract (`core20 synth`), time the *floor* - one
DuckDB query that reads the whole extract once, joins postcode -> LSOA 2011 -> IMD 2019
decile (the reference files themselves) and counts patients and events per IMD quintile -
then run the month with `core20 run` in its own process and report its time, the ratio
of the two, the peak memory of the whole process tree and a per-step table.

Everything about the month is read from outside the engine, so the script keeps working
when the engine's internals or its step names change:

- the month runs as the analyst runs it (`core20 run`), in a child process with its own
  DAGSTER_HOME; its steps, their timings and the run's own duration are read back from
  that instance's event log, whatever the steps are called;
- memory is the resident set of the child *and all its descendants*, sampled from /proc
  every 0.2 s (and per step, between its start and end events), and the kernel's own
  peak for the child (wait4's ru_maxrss); the larger is reported;
- a month that dies is reported, not raised: the exit code or signal, the step that was
  running (a step started with no end event), the peak memory so far. A run whose process
  tree passes `--memory-cap-gib` (default 75% of the machine's memory) is stopped by the
  benchmark before the kernel's out-of-memory killer picks a victim on a shared machine.

Timings are measured here and never asserted in tests. Generated extracts and warehouses
are deleted after each size unless `--keep`. Patient data never reaches the output: steps,
seconds, bytes and the command's exit status only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIB = 2**30
BEGIN, END = "<!-- bench:start -->", "<!-- bench:end -->"
# Disk a size needs while it runs (extract, warehouse, DuckDB spill, serving snapshot), per
# patient: 0.43 GiB were left after a 1,000,000-patient month (about 460 bytes a patient;
# make bench on 2026-12-06), tripled for the spill files a month deletes before it ends.
BYTES_PER_PATIENT = 1_500
# The floor runs this many times before the month and this many after it, so that its
# median sees the machine as the month did (other work on a shared machine comes and goes).
FLOOR_BEFORE, FLOOR_AFTER = 3, 2
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- the floor ---------------------------------------------------------------------------

FLOOR_SQL = """
with patients as (
    select patient_id, upper(replace(postcode, ' ', '')) as postcode_key
    from read_parquet('{patients}')
),
lookup as (
    select replace(pcds, ' ', '') as postcode_key, lsoa11cd from read_parquet('{lookup}')
),
imd as (
    select "LSOA code (2011)" as lsoa11cd,
           "Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)" as decile
    from read_csv('{imd}', header = true)
),
events as (
    select patient_id, count(*) as n_events from read_parquet('{events}') group by patient_id
)
select ceil(imd.decile / 2) as imd_quintile, count(*) as n_patients, coalesce(sum(events.n_events), 0) as n_events
from patients
left join lookup using (postcode_key)
left join imd using (lsoa11cd)
left join events using (patient_id)
group by all
order by 1
"""

FLOOR_SCRIPT = """
import json, sys, time, duckdb
sql, repeats = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.sql("set enable_progress_bar = false")  # the bar would go to stdout, and costs time
seconds, cpu = [], []
for _ in range(repeats):
    started, started_cpu = time.perf_counter(), time.process_time()
    rows = con.sql(sql).fetchall()
    seconds.append(time.perf_counter() - started)
    cpu.append(time.process_time() - started_cpu)
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "n_patients": sum(r[1] for r in rows),
                  "n_events": int(sum(r[2] for r in rows)), "duckdb": duckdb.__version__}))
"""


def floor_sql(extract: Path, reference_dir: Path) -> str:
    """Return the one-pass query over an extract, reading the reference files named in the manifest."""
    sys.path.insert(0, str(REPO))
    from reference_data import loader

    return FLOOR_SQL.format(
        patients=extract / "patients.parquet",
        events=extract / "events.parquet",
        lookup=loader.verified_path("postcode_lsoa11", reference_dir),
        imd=loader.verified_path("imd2019_lsoa11", reference_dir),
    )


# --- a child process, measured ---------------------------------------------------------------

def tree_rss(root: int) -> int:
    """Return the resident bytes of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total


@dataclass
class Measured:
    """What one child process did: exit, time, memory (sampled over time) and its output files."""

    command: list[str]
    returncode: int | None = None
    signal_name: str | None = None
    stopped_by_cap: bool = False
    wall_seconds: float = 0.0
    started_at: float = 0.0
    peak_bytes: int = 0
    maxrss_bytes: int = 0
    cpu_seconds: float = 0.0  # user + system time of the child and its waited-for descendants
    samples: list[tuple[float, int]] = field(default_factory=list)
    stdout: Path | None = None
    stderr: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def peak(self) -> int:
        return max(self.peak_bytes, self.maxrss_bytes)

    def peak_between(self, start: float, end: float, interval: float = 0.2) -> int | None:
        """Return the peak sampled from `start` to `end`, widened by one sampling interval so
        that a step shorter than the interval still gets the samples at its edges."""
        inside = [rss for t, rss in self.samples if start - interval <= t <= end + interval]
        return max(inside) if inside else None

    def outcome(self) -> str:
        if self.ok:
            return "completed"
        if self.stopped_by_cap:
            return "stopped by the benchmark: memory cap reached"
        if self.signal_name:
            hint = " (the kernel's out-of-memory killer sends this)" if self.signal_name == "SIGKILL" else ""
            return f"killed by {self.signal_name}{hint}"
        return f"exit code {self.returncode}"


def measure(command: list[str], *, env: dict, log_prefix: Path, cap_bytes: int, interval: float = 0.2) -> Measured:
    """Run a command in its own session and measure it; never raise for the child's failure."""
    out = Measured(command=command, stdout=log_prefix.with_suffix(".out"), stderr=log_prefix.with_suffix(".err"))
    with open(out.stdout, "wb") as stdout, open(out.stderr, "wb") as stderr:
        out.started_at = time.time()
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, start_new_session=True, cwd=REPO)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss = tree_rss(child.pid)
                out.samples.append((time.time(), rss))
                out.peak_bytes = max(out.peak_bytes, rss)
                if rss > cap_bytes and not out.stopped_by_cap:
                    out.stopped_by_cap = True
                    try:
                        os.killpg(child.pid, signal.SIGKILL)  # the child's own session: nothing else
                    except ProcessLookupError:
                        pass
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 rather than Popen.wait: it also returns the kernel's peak resident set.
        _, status, usage = os.wait4(child.pid, 0)
        out.wall_seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        child.returncode = out.returncode = os.waitstatus_to_exitcode(status)
    if out.returncode < 0:
        out.signal_name = signal.Signals(-out.returncode).name
    out.maxrss_bytes = usage.ru_maxrss * 1024  # Linux reports KiB
    out.cpu_seconds = usage.ru_utime + usage.ru_stime
    return out


def tail(path: Path | None, lines: int = 3) -> str:
    """Return the last lines of a child's stderr (the CLI's messages carry no patient values)."""
    if path is None or not path.exists():
        return ""
    return tail_text(path.read_text(encoding="utf-8", errors="replace"), lines)


def tail_text(text: str, lines: int = 3) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# --- reading the month back from its Dagster instance ------------------------------------------

@dataclass
class Step:
    key: str
    seconds: float | None  # None: started and never ended (the process died in it)
    status: str  # success, failure, died
    peak_bytes: int | None = None


@dataclass
class RunRecord:
    run_seconds: float | None = None
    status: str = "unknown"
    steps: list[Step] = field(default_factory=list)
    gate_seconds: float | None = None


def read_run(dagster_home: Path, month_run: Measured) -> RunRecord:
    """Return the latest run of an instance: its own duration, status and steps, from the event log."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    record = RunRecord()
    try:
        from pipelines.jobs import MONTHLY_JOB

        only = dg.RunsFilter(job_name=MONTHLY_JOB)
    except ImportError:  # the engine moved its jobs: the latest run is the month's
        only = None
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=only, limit=1)
        if not runs:
            return record
        run = runs[0]
        record.status = run.status.value.lower()
        started: dict[str, float] = {}
        ended: dict[str, tuple[float, str]] = {}
        order: list[str] = []
        run_start = run_end = None
        gate_total, has_gates = 0.0, False
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind, key = event.event_type_value, event.step_key
            if kind in ("RUN_START", "PIPELINE_START"):
                run_start = entry.timestamp
            elif kind in ("RUN_SUCCESS", "RUN_FAILURE", "PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
                run_end = entry.timestamp
            elif kind == "STEP_START" and key:
                started.setdefault(key, entry.timestamp)
                order.append(key)
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and key:
                ended[key] = (entry.timestamp, "success" if kind == "STEP_SUCCESS" else "failure")
            elif kind == "ASSET_CHECK_EVALUATION":
                seconds = event.event_specific_data.metadata.get("gate_seconds")
                if seconds is not None:
                    has_gates, gate_total = True, gate_total + float(seconds.value)
        for key in order:
            if key in ended:
                end, status = ended[key]
                step = Step(key, end - started[key], status)
                step.peak_bytes = month_run.peak_between(started[key], end)
            else:
                step = Step(key, None, "died")
                step.peak_bytes = month_run.peak_between(started[key], month_run.started_at + month_run.wall_seconds)
            record.steps.append(step)
        if run_start is not None:
            # A run that was killed has no end event: it lasted until its process ended.
            record.run_seconds = (run_end if run_end is not None else month_run.started_at + month_run.wall_seconds) - run_start
        record.gate_seconds = gate_total if has_gates else None
    return record


# --- one size ------------------------------------------------------------------------------

@dataclass
class SizeResult:
    n_patients: int
    skipped: str | None = None
    n_events: int | None = None
    extract_bytes: int | None = None
    generate: Measured | None = None
    floor_seconds: list[float] = field(default_factory=list)
    floor_cpu_seconds: list[float] = field(default_factory=list)
    month: Measured | None = None
    run: RunRecord | None = None
    work_bytes: int | None = None

    @property
    def floor(self) -> float | None:
        return statistics.median(self.floor_seconds) if self.floor_seconds else None

    @property
    def floor_cpu(self) -> float | None:
        return statistics.median(self.floor_cpu_seconds) if self.floor_cpu_seconds else None


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def run_size(n: int, args, work: Path, template: Path | None, env: dict, cap: int) -> SizeResult:
    """Generate, floor and month for one size; return what was measured, whatever happened."""
    result = SizeResult(n)
    need, free = n * BYTES_PER_PATIENT, free_bytes(work)
    if free < need:
        result.skipped = f"needs about {need / GIB:.1f} GiB free in {work}, {free / GIB:.1f} GiB available"
        return result
    folder = work / f"n{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    extracts = folder / "extracts"
    say(f"\n{n:,} patients: generating ...")
    result.generate = measure(
        [str(BIN / "core20"), "synth", "--out", str(extracts), "--patients", str(n), "--seed", str(args.seed),
         "--month", args.month, *(["--reference-dir", args.reference_dir] if args.reference_dir else [])],
        env=env, log_prefix=folder / "synth", cap_bytes=cap,
    )
    if not result.generate.ok:
        result.skipped = f"generation failed ({result.generate.outcome()}): {tail(result.generate.stderr)}"
        return result
    extract = extracts / args.month
    manifest = json.loads((extract / "extract.json").read_text())
    result.n_events = manifest["row_counts"]["events"]
    result.extract_bytes = folder_bytes(extract)
    say(f"  generated in {result.generate.wall_seconds:.1f} s ({result.n_events:,} events); floor ...")

    reference_dir = Path(args.reference_dir) if args.reference_dir else None
    sql = floor_sql(extract, reference_dir)
    measure_floor(result, sql, FLOOR_BEFORE, env)
    say(f"  floor {', '.join(f'{s:.2f}' for s in result.floor_seconds)} s; month ...")

    command, home = month_command(folder, extracts, template, args)
    result.month = measure(command, env={**env, "DAGSTER_HOME": str(home)}, log_prefix=folder / "month", cap_bytes=cap)
    result.work_bytes = folder_bytes(folder)
    result.run = read_run(home, result.month)
    measure_floor(result, sql, FLOOR_AFTER, env)
    say(f"  month: {result.month.outcome()}, run {secs(result.run.run_seconds)} "
        f"(wall {result.month.wall_seconds:.1f} s), peak {result.month.peak / GIB:.2f} GiB")
    if not result.month.ok:
        say(f"  its last words: {tail(result.month.stderr)}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def measure_floor(result: SizeResult, sql: str, repeats: int, env: dict) -> None:
    """Run the floor query `repeats` times in a fresh process; add its timings to the result."""
    floor = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, sql, str(repeats)], capture_output=True, text=True, env=env)
    lines = [line for line in floor.stdout.splitlines() if line.startswith("{")]
    if floor.returncode != 0 or not lines:
        say(f"  the floor query failed: {tail_text(floor.stderr, 1) or floor.stdout[-200:]}")
        return
    measured = json.loads(lines[-1])
    result.floor_seconds += measured["seconds"]
    result.floor_cpu_seconds += measured["cpu_seconds"]
    if measured["n_patients"] != result.n_patients or measured["n_events"] != result.n_events:
        say(f"  warning: the floor counted {measured['n_patients']:,} patients and {measured['n_events']:,} events")


WARMUP_PATIENTS = 2_000


def month_command(folder: Path, extracts: Path, template: Path | None, args) -> tuple[list[str], Path]:
    """Return the analyst's `core20 run` for a month in `folder` (its warehouse copied from the template) and its DAGSTER_HOME."""
    warehouse = folder / "warehouse.duckdb"
    if template is not None:
        shutil.copy2(template, warehouse)
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy2(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    command = [str(BIN / "core20"), "run", "--extract", str(extracts), "--month", args.month, "--warehouse", str(warehouse),
               "--serving", str(folder / "serving"), "--reports", str(folder / "reports"),
               *(["--reference-dir", args.reference_dir] if args.reference_dir else [])]
    return command, home


def warm_suites(work: Path, template: Path | None, args, env: dict) -> float | None:
    """Run a small month first, so that every size's month finds the expectation suites validated; return its wall time.

    The first month after a suite file or the GX version changes validates each suite with
    GX's own models (importing GX, seconds and a few hundred MB) and remembers the verdict in
    the cache folder (`CORE20_CACHE_DIR`, `pipelines/gates.py`); every later month skips it.
    Without this, whichever size ran first paid that once-per-suite-version cost and the
    others did not, and the sizes' ratio said more about their order than their patients.
    """
    folder = work / "warmup"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ref = ["--reference-dir", args.reference_dir] if args.reference_dir else []
    started = time.perf_counter()
    made = subprocess.run([str(BIN / "core20"), "synth", "--out", str(folder / "extracts"), "--patients",
                           str(WARMUP_PATIENTS), "--seed", str(args.seed), "--month", args.month, *ref],
                          capture_output=True, text=True, env=env)
    if made.returncode == 0:
        command, home = month_command(folder, folder / "extracts", template, args)
        made = subprocess.run(command, capture_output=True, text=True, env={**env, "DAGSTER_HOME": str(home)})
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    if made.returncode != 0:
        say(f"  the warm-up month failed ({tail_text(made.stderr) or made.returncode}); the first size's month "
            "validates the suites with GX, the others do not")
        return None
    return seconds


def build_template(work: Path, args, env: dict) -> tuple[Path | None, float | None]:
    """Load the reference tables once into a warehouse that every size starts from."""
    # Not "reference.duckdb": DuckDB names the catalog after the file, and a catalog called
    # "reference" makes the schema of the same name ambiguous.
    template = work / "template.duckdb"
    code = (
        "import sys, time; from pathlib import Path\n"
        "from pipelines.definitions import build_definitions\n"
        "from pipelines.runner import ensure_reference\n"
        "w = Path(sys.argv[1]); t = time.perf_counter()\n"
        "code = ensure_reference(build_definitions(warehouse=str(w), reference_dir=sys.argv[2] or None), w)\n"
        "print(time.perf_counter() - t); sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(template), args.reference_dir or ""],
                          capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        say(f"  could not pre-load the reference tables ({tail_text(done.stderr) or done.returncode}); "
            "each month run loads its own (outside the month's own time, inside its wall time)")
        return None, None
    return template, float(done.stdout.strip().splitlines()[-1])


# --- the report ------------------------------------------------------------------------------

def gib(n: int | None) -> str:
    return "—" if n is None else f"{n / GIB:.2f} GiB"


def secs(s: float | None) -> str:
    return "—" if s is None else f"{s:.1f} s" if s >= 1 else f"{s:.2f} s"


def markdown(results: list[SizeResult], *, command: str, reference_seconds: float | None,
             warmup_seconds: float | None = None, started: dt.datetime,
             load: tuple[float, float, float], available: int, commit: str) -> str:
    """Return the performance block: the headline table, the per-step table and how it was measured."""
    head = "| | " + " | ".join(f"{r.n_patients:,} patients" for r in results) + " |"
    rule = "|---|" + "---:|" * len(results)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[str]) -> None:
        rows.append((label, values))

    row("events in the extract", [f"{r.n_events:,}" if r.n_events else "—" for r in results])
    row("generate (`core20 synth`, wall)", [secs(r.generate.wall_seconds) if r.generate else "—" for r in results])
    row("generate, peak memory", [gib(r.generate.peak) if r.generate else "—" for r in results])
    row(f"**floor**: one DuckDB pass over the extract (median of {FLOOR_BEFORE} runs before the month, {FLOOR_AFTER} after)",
        [secs(r.floor) + (f" ({min(r.floor_seconds):.2f}–{max(r.floor_seconds):.2f})" if r.floor_seconds else "") for r in results])
    def month_time(r: SizeResult) -> str:
        if not r.run or r.run.run_seconds is None:
            return "—"
        return secs(r.run.run_seconds) + ("" if r.month.ok else " until it stopped")

    def ratio(r: SizeResult) -> str:
        if not (r.month and r.month.ok and r.run and r.run.run_seconds and r.floor):
            return "—"
        return f"{r.run.run_seconds / r.floor:.0f}× (wall: {r.month.wall_seconds / r.floor:.0f}×)"

    row("**month**: `core20 run`, the run's own time", [month_time(r) for r in results])
    row("month, wall time of the command", [secs(r.month.wall_seconds) if r.month else "—" for r in results])
    row("**month / floor**", [ratio(r) for r in results])
    row("CPU time (user + system): month / floor — less moved by other work on the machine",
        [f"{r.month.cpu_seconds:.0f} s / {r.floor_cpu:.1f} s = {r.month.cpu_seconds / r.floor_cpu:.0f}×"
         if r.month and r.month.ok and r.floor_cpu else "—" for r in results])
    row("**peak memory of the month** (process tree)", [gib(r.month.peak) if r.month else "—" for r in results])
    row("of the month: in data-quality gates (checks' own `gate_seconds`)",
        [secs(r.run.gate_seconds) if r.run and r.run.gate_seconds is not None else "—" for r in results])
    row("outcome", [outcome(r) for r in results])
    row("disk used by the size (extract, warehouse, snapshot)", [gib(r.work_bytes) for r in results])
    lines = [head, rule, *(f"| {label} | " + " | ".join(values) + " |" for label, values in rows)]

    keys: list[str] = []
    for r in results:
        for step in (r.run.steps if r.run else []):
            if step.key not in keys:
                keys.append(step.key)
    if keys:
        lines += ["", "Per step (seconds, and the peak memory of the process tree while the step ran):", "",
                  "| step | " + " | ".join(f"{r.n_patients:,}: s | {r.n_patients:,}: peak" for r in results) + " |",
                  "|---|" + "---:|---:|" * len(results)]
        for key in keys:
            cells = []
            for r in results:
                step = next((s for s in (r.run.steps if r.run else []) if s.key == key), None)
                if step is None:
                    cells += ["—", "—"]
                elif step.status == "died":
                    cells += ["**died here**", gib(step.peak_bytes)]
                else:
                    cells += [secs(step.seconds) + (" (failed)" if step.status == "failure" else ""), gib(step.peak_bytes)]
            lines.append(f"| {key.replace('__', '/')} | " + " | ".join(cells) + " |")
    ref = f" Loading the reference tables into a new warehouse (once per reference-data version, before the months): {secs(reference_seconds)}." if reference_seconds else ""
    if warmup_seconds is not None:
        ref += (f" Before the sizes, a {WARMUP_PATIENTS:,}-patient month ({secs(warmup_seconds)} with its extract) validated "
                "the expectation suites with GX, as the first month after a suite or the GX version changes does; "
                "each size's month then ran as every later month runs.")
    else:
        ref += " No warm-up month ran: the first size's month includes validating the expectation suites with GX."
    lines += [
        "",
        f"Measured {started:%Y-%m-%d} on commit `{commit}` with `{command}` "
        f"({os.cpu_count()} cores, {total_memory() / GIB:.0f} GiB, Python {platform.python_version()}; "
        f"at the start load average {load[0]:.1f}, {available / GIB:.0f} GiB available).{ref} The floor reads the whole extract once and joins "
        "postcode → LSOA 2011 → IMD 2019 decile from the reference files, counting patients and events per "
        "quintile; the month is the analyst's command on the same extract (its own time is the Dagster run's, "
        "from its event log; CPU time is the command's user and system time, start-up included, against the floor "
        "queries'); memory is the resident set of the command and all its descendants, sampled every 0.2 s, or "
        "the kernel's peak for the process if higher. Figures move with the machine's other work: compare ratios "
        "measured in one sitting.",
    ]
    return "\n".join(lines) + "\n"


def outcome(r: SizeResult) -> str:
    if r.skipped:
        return f"not run: {r.skipped}"
    if r.month is None:
        return "—"
    if r.month.ok:
        return "published"
    died = [s.key.replace("__", "/") for s in (r.run.steps if r.run else []) if s.status in ("died", "failure")]
    where = f" in step `{died[-1]}`" if died else ""
    return f"**{r.month.outcome()}**{where} at {gib(r.month.peak)}" + (f": {tail(r.month.stderr, 1)}" if r.month.returncode and r.month.returncode > 0 else "")


def meminfo(field: str) -> int:
    """Return a /proc/meminfo figure in bytes (MemTotal, MemAvailable)."""
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def total_memory() -> int:
    return meminfo("MemTotal")


def update_readme(block: str, readme: Path = REPO / "README.md") -> None:
    """Replace the README's text between the benchmark markers with the new block."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} markers to replace")
    readme.write_text(pattern.sub(lambda _: f"{BEGIN}\n{block}{END}", text), encoding="utf-8")


def say(message: str) -> None:
    print(message, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "1000000,5000000"),
                        help="comma-separated patient counts (default $BENCH_SIZES or 1000000,5000000)")
    parser.add_argument("--seed", type=int, default=20260)
    parser.add_argument("--month", help="reporting month YYYY-MM (default: the last complete month)")
    parser.add_argument("--work", type=Path, help="folder for extracts and warehouses (default: a new folder in the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated extracts, warehouses and logs")
    parser.add_argument("--update-readme", action="store_true", help="replace the README's performance block with the result")
    parser.add_argument("--memory-cap-gib", type=float, default=round(0.75 * total_memory() / GIB, 1),
                        help="stop a run whose process tree passes this (default: 75%% of the machine's memory)")
    parser.add_argument("--reference-dir", help="reference data folder (default $CORE20_REFERENCE_DIR or ../shared/reference_data)")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if not args.month:
        sys.path.insert(0, str(REPO))
        from pipelines.synthetic import default_reporting_month

        args.month = f"{default_reporting_month():%Y-%m}"
    started, load, available = dt.datetime.now(), os.getloadavg(), meminfo("MemAvailable")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    commit += "+uncommitted changes" if dirty else ""
    work = args.work or Path(tempfile.mkdtemp(prefix="core20-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("DAGSTER_HOME", None)
    cap = int(args.memory_cap_gib * GIB)
    say(f"benchmark in {work} (free {free_bytes(work) / GIB:.0f} GiB); sizes {', '.join(f'{n:,}' for n in sizes)}; "
        f"month {args.month}; memory cap {args.memory_cap_gib:.1f} GiB; load average {load[0]:.1f}; "
        f"{available / GIB:.1f} GiB available")
    # The bench's own suite cache: a month here never depends on what the checkout ran before.
    env["CORE20_CACHE_DIR"] = str(work / "cache")
    template, reference_seconds = build_template(work, args, env)
    warmup_seconds = warm_suites(work, template, args, env)
    results = []
    try:
        for n in sizes:
            results.append(run_size(n, args, work, template, env, cap))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    command = "make bench" + (f" BENCH_SIZES={args.sizes}" if args.sizes != "1000000,5000000" else "")
    block = markdown(results, command=command, reference_seconds=reference_seconds, warmup_seconds=warmup_seconds,
                     started=started, load=load,
                     available=available, commit=commit)
    say("\n" + block)
    if args.update_readme:
        update_readme(block)
        say(f"README.md performance block rewritten ({BEGIN} ... {END})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
