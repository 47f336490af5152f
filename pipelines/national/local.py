"""A one-machine Celery cluster for the national job: a Redis broker and N worker processes.

Used by the distributed test, the benchmark and `core20 national --workers N`. In
production the broker and workers are long-lived services (deploy/), not this.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class ClusterError(RuntimeError):
    """The broker or a worker could not be started; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(f"{what} exited with code {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise ClusterError(f"{what} did not listen on port {port} within {seconds} s")


def _wait_for_workers(broker: str, n: int, seconds: float = 90) -> None:
    from celery import Celery

    app = Celery(broker=broker)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0) or []) >= n:
            return
    raise ClusterError(f"fewer than {n} Celery workers answered the broker within {seconds} s")


@contextmanager
def local_cluster(n_workers: int, env: dict, log_dir: Path) -> Iterator[dict]:
    """Start redis-server on a free loopback port and `n_workers` solo-pool workers; stop them on exit.

    Yields a dict with the `env` the job must run with (broker URLs set) and the worker
    `pids` (a solo-pool worker runs each step in its own process, so a step's pid names
    its worker).

    Raises:
        ClusterError: redis-server is not installed (`make redis` installs Debian's) or a
            process did not start.
    """
    redis = shutil.which("redis-server")
    if redis is None:
        raise ClusterError("redis-server is not installed: `make redis` installs Debian's package (or put redis-server on PATH)")
    port = free_port()
    env = {**env, "CORE20_CELERY_BROKER": f"redis://127.0.0.1:{port}/0", "CORE20_CELERY_BACKEND": f"redis://127.0.0.1:{port}/1"}
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    try:
        broker = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(broker)
        _wait_for_port(port, broker, "redis-server")
        celery = str(Path(sys.executable).with_name("celery"))
        workers = []
        for i in range(1, n_workers + 1):
            log = open(log_dir / f"worker{i}.log", "w")
            worker = subprocess.Popen(
                [celery, "-A", "pipelines.national.celery_app", "worker", "-Q", "dagster", "--pool", "solo",
                 "-n", f"core20-{i}@%h", "--loglevel", "WARNING"], env={**os.environ, **env}, stdout=log, stderr=log)
            processes.append(worker)
            workers.append(worker)
        _wait_for_workers(env["CORE20_CELERY_BROKER"], n_workers)
        yield {"env": env, "pids": [w.pid for w in workers], "logs": [log_dir / f"worker{i}.log" for i in range(1, n_workers + 1)]}
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def run_national_month(month: str, env: dict, *, rollup: bool = True):
    """Run the national job for `month` with `env` applied (broker, CORE20_NATIONAL_*, DAGSTER_HOME); return the result and its events.

    `rollup=False` runs the ICB months only (the benchmark times the roll-up on its own).
    """
    import dagster as dg

    from pipelines.national.engine import national_month_job_from_env

    settings = Path(env["DAGSTER_HOME"]) / "dagster.yaml" if "DAGSTER_HOME" in env else None
    if settings is not None and not settings.exists():
        settings.write_text("telemetry:\n  enabled: false\n")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with dg.DagsterInstance.get() as instance:
            # The partition tag is how a partitioned run names its partition (as the UI's launcher does).
            result = dg.execute_job(dg.reconstructable(national_month_job_from_env), instance=instance,
                                    tags={"dagster/partition": f"{month[:7]}-01"}, raise_on_error=False,
                                    op_selection=None if rollup else ["national_icbs", "icb_month"])
            return result, list(instance.all_logs(result.run_id))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
