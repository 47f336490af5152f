"""Locks that keep one writer per warehouse and let a crashed run be told from a running one.

Two kinds of lock file, both taken with flock(2), which the kernel releases when the
process holding it ends — however it ends, SIGKILL and the out-of-memory killer included.
So a lock that can be taken means its holder is gone; nothing has to be cleaned up first.

- **The writer lock** `<warehouse>.lock`, beside the warehouse file. Every run that writes
  the warehouse holds it for the whole run: `core20 run` from the command line (around all
  its months) and a run the Dagster daemon launched (from its start to its end, taken by
  the IO manager). A second writer waits for it, saying who holds it, up to a configurable
  time (`--wait SECONDS`, `CORE20_RUN_WAIT_SECONDS`, default one hour; 0 refuses at once),
  so two runs on one warehouse publish one after the other instead of both failing on
  DuckDB's file lock. The file records its holder (process id, what it is doing, since
  when) for that message; it never holds patient data.
- **The run lock** `$DAGSTER_HOME/core20_runs/<run id>.lock`, held by the process executing
  that run. A run Dagster still calls STARTED whose lock can be taken was orphaned: its
  process was killed before it could record an outcome. `sweep_orphans` marks such runs
  FAILURE (tag `core20/orphaned`), which frees the one-at-a-time queue, lets the schedule
  ask for the month again, and tells the sensor to retry it under a new run key. Every
  `core20` command and every schedule and sensor tick sweeps first. Dagster's own run
  monitoring (instance/dagster.yaml) covers runs that never got past STARTING; the default run
  launcher has no health check for a STARTED run worker, which is what this adds.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

WAIT_ENV = "CORE20_RUN_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 3600
ORPHAN_TAG = "core20/orphaned"
# On a run that failed for a reason that says nothing about its data (orphaned by a kill, or
# timed out waiting for the warehouse): the schedule and the sensor try such a month again.
RETRYABLE_TAG = "core20/retryable"
RUN_LOCKS = "core20_runs"
# A STARTED run with no lock file at all (a run from before these locks, or one killed in
# the moment between Dagster marking it STARTED and its lock being taken) counts as orphaned
# only after this long: a live run takes its lock within a second or two of starting.
NO_LOCK_GRACE_SECONDS = 120
_POLL_SECONDS = 0.5


class WarehouseBusy(RuntimeError):
    """Another run kept the warehouse for longer than this one was prepared to wait."""


def wait_seconds(value: float | None = None) -> float:
    """Return how long a run waits for another run's writer lock: `value`, else $CORE20_RUN_WAIT_SECONDS, else 3600.

    Examples:
        >>> wait_seconds(0)
        0.0
        >>> os.environ[WAIT_ENV] = "90"; wait_seconds(); del os.environ[WAIT_ENV]
        90.0
    """
    if value is not None:
        chosen, source = value, "--wait"
    else:
        chosen, source = os.environ.get(WAIT_ENV) or DEFAULT_WAIT_SECONDS, WAIT_ENV
    try:
        seconds = float(chosen)
    except ValueError:
        raise ValueError(f"{source} must be a number of seconds (0 = refuse at once); got {chosen!r}") from None
    if seconds < 0:
        raise ValueError(f"{source} must be 0 or more seconds; got {chosen!r}")
    return seconds


def lock_path(warehouse: Path) -> Path:
    """Return the writer-lock file of a warehouse: `<warehouse file>.lock` beside it."""
    return warehouse.with_name(warehouse.name + ".lock")


def _open_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


def _holder(path: Path) -> str:
    """Return who holds a lock, from what it wrote into the file (or a plain phrase)."""
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        record = {}
    if not record:
        return "another process"
    return f"{record.get('what', 'a run')} (process {record.get('pid')}, since {record.get('since', '?')})"


def _write_holder(fd: int, what: str) -> None:
    record = {"pid": os.getpid(), "what": what, "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


# Writer locks this process holds: path -> [fd, depth]. A process that already holds a
# warehouse's lock (the CLI around a backfill) passes straight through when the IO manager
# of each run asks for it again: flock would otherwise block on our own second descriptor.
_held: dict[str, list[int]] = {}


def acquire_writer(warehouse: Path, what: str, *, wait: float | None = None,
                   say: Callable[[str], None] | None = None) -> None:
    """Take the writer lock of `warehouse` for this process, waiting up to `wait` seconds.

    Raises:
        WarehouseBusy: the lock stayed held for `wait` seconds (0: it was held now); the
            message names the warehouse, the holder and how to wait longer.
    """
    path = lock_path(Path(warehouse))
    key = str(path)
    if key in _held:
        _held[key][1] += 1
        return
    seconds = wait_seconds(wait)
    fd = _open_lock(path)
    try:
        if not _try_lock(fd):
            holder = _holder(path)
            if seconds == 0:
                raise WarehouseBusy(
                    f"the warehouse {warehouse} is being written by {holder}; refused at once because the wait is 0 "
                    f"(--wait SECONDS or {WAIT_ENV} to queue behind it)."
                )
            (say or _stderr)(f"waiting for the warehouse {warehouse}: it is being written by {holder}. This run "
                             f"starts when that one ends (waiting up to {seconds:.0f} s; --wait or {WAIT_ENV}).")
            deadline = time.monotonic() + seconds
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"the warehouse {warehouse} was still being written by {_holder(path)} after {seconds:.0f} s "
                        f"of waiting; nothing was run. Run again later, or wait longer with --wait SECONDS "
                        f"(or {WAIT_ENV})."
                    )
                time.sleep(_POLL_SECONDS)
            (say or _stderr)("  the other run has finished; starting")
        _write_holder(fd, what)
    except BaseException:
        os.close(fd)
        raise
    _held[key] = [fd, 1]


def release_writer(warehouse: Path) -> None:
    """Release one hold of the writer lock (the lock itself when the last hold ends)."""
    key = str(lock_path(Path(warehouse)))
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[key]
    fd = entry[0]
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def writer(warehouse: Path, what: str, *, wait: float | None = None,
           say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the writer lock of `warehouse` for the block (see `acquire_writer`)."""
    acquire_writer(warehouse, what, wait=wait, say=say)
    try:
        yield
    finally:
        release_writer(warehouse)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- run locks and the orphan sweep ---------------------------------------------------------


def run_lock_dir(instance) -> Path | None:
    """Return the folder of run locks for a persistent Dagster instance (None for an ephemeral one)."""
    root = getattr(instance, "root_directory", None)
    if instance.is_ephemeral or not root:
        return None
    return Path(root) / RUN_LOCKS


_run_locks: dict[str, int] = {}


def hold_run(instance, run_id: str, what: str) -> None:
    """Take the run lock of `run_id` in this process (held until `release_run` or the process ends)."""
    folder = run_lock_dir(instance)
    if folder is None or run_id in _run_locks:
        return
    fd = _open_lock(folder / f"{run_id}.lock")
    if not _try_lock(fd):  # cannot happen for a fresh run id; never wait on it
        os.close(fd)
        return
    _write_holder(fd, what)
    _run_locks[run_id] = fd


def release_run(instance, run_id: str) -> None:
    """Release the run lock of `run_id` and remove its file (the run is over)."""
    fd = _run_locks.pop(run_id, None)
    if fd is None:
        return
    folder = run_lock_dir(instance)
    try:
        if folder is not None:
            (folder / f"{run_id}.lock").unlink(missing_ok=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


ORPHAN_MESSAGE = (
    "core20: this run was left STARTED by a process that ended without recording an outcome (killed, out of "
    "memory, or the machine restarted); marked FAILURE at {when} by a startup check so the queue, the schedule "
    "and the extract sensor can run the month again. A run changes the published tables only in its final "
    "publish transaction."
)


def _orphaned(instance, run, folder: Path) -> bool:
    """Return whether a STARTED run has no live process (its lock can be taken, checked twice)."""
    from dagster import DagsterRunStatus

    if run.run_id in _run_locks:
        return False
    path = folder / f"{run.run_id}.lock"
    if not path.exists():
        record = instance.get_run_record_by_id(run.run_id)
        started = (record.start_time or record.create_timestamp.timestamp()) if record else time.time()
        return time.time() - started > NO_LOCK_GRACE_SECONDS
    fd = os.open(path, os.O_RDWR)
    try:
        if not _try_lock(fd):
            return False
        # A run whose process has just finished releases its lock a moment before Dagster
        # records SUCCESS or FAILURE: look again after a pause before calling it orphaned.
        fcntl.flock(fd, fcntl.LOCK_UN)
        time.sleep(1.0)
        again = instance.get_run_by_id(run.run_id)
        return again is not None and again.status == DagsterRunStatus.STARTED and _try_lock(fd)
    finally:
        os.close(fd)


def sweep_orphans(instance, say: Callable[[str], None] | None = None) -> list[str]:
    """Mark every orphaned STARTED run FAILURE (tagged `core20/orphaned`); return their run ids.

    Runs of an ephemeral instance are never swept (they die with their process).
    """
    from dagster import DagsterRunStatus, RunsFilter

    folder = run_lock_dir(instance)
    if folder is None:
        return []
    swept = []
    for run in instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        if not _orphaned(instance, run, folder):
            continue
        instance.add_run_tags(run.run_id, {ORPHAN_TAG: "true", RETRYABLE_TAG: "true"})
        instance.report_run_failed(run, ORPHAN_MESSAGE.format(when=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")))
        (folder / f"{run.run_id}.lock").unlink(missing_ok=True)
        month = run.tags.get("dagster/partition", "")[:7]
        if say is not None:
            say(f"core20: run {run.run_id[:8]}{f' ({month})' if month else ''} had been left STARTED by a process "
                "that no longer exists; marked FAILURE so the month can run again")
        swept.append(run.run_id)
    return swept


def crash_attempts(instance, partition_key: str, tags: dict[str, str]) -> int:
    """Return how many runs of this month with these tags (e.g. the same extract fingerprint) failed retryably:
    orphaned by a kill, or timed out waiting for the warehouse."""
    from dagster import DagsterRunStatus, RunsFilter

    runs = instance.get_runs(filters=RunsFilter(
        tags={"dagster/partition": partition_key, RETRYABLE_TAG: "true", **tags}, statuses=[DagsterRunStatus.FAILURE]))
    return len(runs)


def start_run(context, warehouse: Path) -> None:
    """At the start of a Dagster run that writes `warehouse`: take its run lock, then the writer lock.

    Called by the IO manager as the run's resources are set up, in the process executing
    the run (the CLI's own process, or the run worker the daemon launched).
    """
    run = context.run
    if run is None:
        return
    month = run.tags.get("dagster/partition", "")[:7]
    what = f"Dagster run {run.run_id[:8]} of {run.job_name}{f' for {month}' if month else ''}"
    hold_run(context.instance, run.run_id, what)
    try:
        acquire_writer(Path(warehouse), what, say=context.log.warning if context.log else None)
    except WarehouseBusy:
        context.instance.add_run_tags(run.run_id, {RETRYABLE_TAG: "true"})  # nothing wrong with its data
        release_run(context.instance, run.run_id)
        raise
    # Before anything else: a publication a killed run left half done is finished or undone,
    # so the warehouse, the serving snapshot and the report agree (pipelines/publish_journal.py).
    from pipelines.publish_journal import recover

    def say(message: str) -> None:
        _stderr(f"core20: {message}")  # the person who started the run sees it, as well as the run's log
        if context.log:
            context.log.warning(message)

    recover(Path(warehouse), say=say)
    from pipelines.warehouse import hold

    hold(warehouse)  # one open database for the run's many connections (pipelines/warehouse.py)
    from pipelines.limits import start_memory_watchdog

    instance, run_id = context.instance, run.run_id

    def record_failure(message: str) -> None:
        current = instance.get_run_by_id(run_id)
        if current is not None and not current.is_finished:
            instance.report_run_failed(current, message)

    start_memory_watchdog(record_failure)


def end_run(context, warehouse: Path) -> None:
    """At the end of a run: refresh the readers' copy of the quality history, release what `start_run` took."""
    run = context.run
    if run is None:
        return
    from pipelines.warehouse import let_go

    try:
        write_quality_copy(Path(warehouse))
    except Exception as error:  # noqa: BLE001 - a stale copy for readers must never fail the run
        if context.log:
            context.log.warning(f"the readers' copy of the data-quality history was not refreshed: {error}")
    finally:
        let_go(warehouse)  # closed (and checkpointed) before another writer may take the file
    release_writer(Path(warehouse))
    release_run(context.instance, run.run_id)


# --- another process holding the DuckDB file itself ----------------------------------------
# pipelines/warehouse.py `connect` waits for it ($CORE20_WAREHOUSE_LOCK_SECONDS, else the run
# wait above), says once whom it waits for, and raises WarehouseBusy past the wait.


def _pid_in(error: Exception) -> str:
    import re

    found = re.search(r"\(PID (\d+)\)", str(error))
    return f"process {found.group(1)}" if found else "another process"


# --- what readers read while a run holds the warehouse --------------------------------------


def quality_copy_path(warehouse: Path) -> Path:
    """Return the readers' copy of `audit.data_quality`: `<warehouse file>.quality.parquet` beside it."""
    return warehouse.with_name(warehouse.name + ".quality.parquet")


def write_quality_copy(warehouse: Path) -> Path | None:
    """Write the data-quality history as `core20 quality` prints it (counts disclosure-controlled) beside the warehouse.

    Written at the end of every run, to a temporary name and renamed into place, so
    `core20 quality` can answer while a later run holds the warehouse instead of making
    that run wait or fail.
    """
    from pipelines import quality

    rows = quality.controlled_history(warehouse)  # empty when there is no warehouse or no gate has run
    if rows.is_empty():
        return None
    target = quality_copy_path(warehouse)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    rows.write_parquet(partial)
    os.replace(partial, target)
    return target


def writer_busy(warehouse: Path) -> str | None:
    """Return who holds the writer lock of `warehouse` when another process does, else None."""
    path = lock_path(Path(warehouse))
    if str(path) in _held or not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        if _try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _holder(path)
    finally:
        os.close(fd)
