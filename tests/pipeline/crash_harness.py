"""Kill a sensor-launched monthly run with SIGKILL and see what the next tick does.

Used by test_crash_recovery.py and, for more trials, by `python tests/pipeline/crash_harness.py`.
The run is executed the way the daemon's run worker executes it (in its own process, in the
instance under DAGSTER_HOME, carrying the sensor's run key and tags).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[2]

WORKER = """
import json, sys
import dagster as dg
from pipelines.definitions import build_definitions
warehouse, extracts, key, tags = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
defs = build_definitions(warehouse=warehouse, extracts=extracts)
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_job_def("monthly").execute_in_process(
        instance=instance, partition_key=key, tags=tags, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
    print("SUCCESS" if result.success else "FAILURE", flush=True)
"""


def make_home(folder: Path) -> Path:
    """Return a DAGSTER_HOME holding the project's dagster.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "instance" / "dagster.yaml", folder / "dagster.yaml")
    return folder


def sense(instance: dg.DagsterInstance, extracts: Path):
    from pipelines.resources import ExtractSource
    from pipelines.schedules import OperationsSettings, new_extract_sensor

    with dg.build_sensor_context(instance=instance, resources={
        "operations": OperationsSettings(settle_seconds=0), "extracts": ExtractSource(root=str(extracts))}) as context:
        return new_extract_sensor(context)


def schedule(instance: dg.DagsterInstance, extracts: Path, day: dt.datetime):
    from pipelines.resources import ExtractSource
    from pipelines.schedules import OperationsSettings, monthly_schedule

    with dg.build_schedule_context(scheduled_execution_time=day, instance=instance, resources={
        "operations": OperationsSettings(run_day=5), "extracts": ExtractSource(root=str(extracts))}) as context:
        return monthly_schedule(context)


def request_tags(request: dg.RunRequest, sensor: str = "new_extract") -> dict[str, str]:
    """Return the tags the daemon gives a run it launches for `request`."""
    return {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": sensor,
            "dagster/partition": request.partition_key}


def start_worker(home: Path, warehouse: Path, extracts: Path, request: dg.RunRequest) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(warehouse), str(extracts), request.partition_key,
                             json.dumps(request_tags(request))], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lock_held(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def kill_when_running(worker: subprocess.Popen, home: Path, delay: float, timeout: float = 120) -> str:
    """SIGKILL the worker `delay` seconds after its run lock is held; return the killed run's id."""
    locks = home / "core20_runs"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = [p for p in locks.glob("*.lock") if _lock_held(p)] if locks.is_dir() else []
        if held:
            time.sleep(delay)
            assert worker.poll() is None, f"the run ended before the kill: {worker.communicate()}"
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            return held[0].stem
        assert worker.poll() is None, f"the run worker ended early: {worker.communicate()}"
        time.sleep(0.05)
    worker.kill()
    raise AssertionError("the run never took its lock")


def trial(home: Path, warehouse: Path, extracts: Path, delay: float) -> dict:
    """One kill: launch the sensor's run, SIGKILL it, then tick the sensor and the schedule.

    Returns what was seen (the killed run's status before and after the tick, the requests).
    """
    from pipelines.runlock import ORPHAN_TAG

    with dg.DagsterInstance.from_config(str(home)) as instance:
        first = sense(instance, extracts)[0]
    worker = start_worker(home, warehouse, extracts, first)
    killed = kill_when_running(worker, home, delay)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        before = instance.get_run_by_id(killed).status
        requests = sense(instance, extracts)
        after = instance.get_run_by_id(killed)
        used_keys = {r.tags.get("dagster/run_key") for r in instance.get_runs()}
        scheduled = schedule(instance, extracts, dt.datetime(2026, 10, 6, 6))
    return {"killed": killed, "killed_key": first.run_key, "before": before, "after": after.status,
            "orphan_tag": after.tags.get(ORPHAN_TAG), "requests": requests, "used_keys": used_keys,
            "scheduled": scheduled}


if __name__ == "__main__":  # more trials than the test: python tests/pipeline/crash_harness.py N
    import tempfile

    sys.path.insert(0, str(REPO / "tests" / "pipeline"))
    from pipeline_helpers import core20_in_process, generate_months

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    root = Path(tempfile.mkdtemp(prefix="core20-kills-"))
    generate_months(root / "extracts", ("2026-10", "2026-09"), n_patients=2000, seed=5)
    code, output = core20_in_process("run", "--extract", str(root / "extracts"), "--month", "2026-10",
                                     "--warehouse", str(root / "w.duckdb"))
    assert code == 0, output
    shutil.rmtree(root / "extracts" / "2026-10")
    stamp = time.time() - 3600
    for f in (root / "extracts" / "2026-09").iterdir():
        os.utime(f, (stamp, stamp))
    launched = 0
    for number in range(n):
        home = make_home(root / f"home{number}")
        seen = trial(home, root / "w.duckdb", root / "extracts", delay=0.5 * number)
        ok = (seen["before"] == dg.DagsterRunStatus.STARTED and seen["after"] == dg.DagsterRunStatus.FAILURE
              and len(seen["requests"]) == 1 and seen["requests"][0].run_key not in seen["used_keys"]
              and isinstance(seen["scheduled"], dg.RunRequest))
        launched += ok
        print(f"kill {number + 1} at +{0.5 * number:.1f} s: left {seen['before'].value}, swept to "
              f"{seen['after'].value}; next sensor key {seen['requests'][0].run_key.rsplit(':', 1)[-1] if seen['requests'] else None}"
              f"; {'OK' if ok else 'NOT OK'}", flush=True)
    print(f"{launched} of {n} killed runs were swept and their month requested again")
    shutil.rmtree(root)
