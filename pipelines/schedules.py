"""When the monthly job starts by itself: a schedule for the previous month and a sensor on new extracts.

The two work together. On the configured day of each month the schedule asks for the
previous month; if that month's extract has not arrived yet it skips, and the sensor starts
the run when the folder appears. A re-sent extract (same month, different files) changes
the folder's fingerprint, so the sensor re-runs exactly that month; the warehouse replaces
only that month's rows, and the serving export and report follow.

Run keys make both idempotent: Dagster never launches two runs with the same key, so a
sensor tick that sees the same folder again, or a schedule tick evaluated twice, does
nothing. Runs are queued one at a time by `instance/dagster.yaml` (`max_concurrent_runs: 1`)
because DuckDB allows one writer per file.

A crash never wedges them. Each tick first sweeps runs left STARTED by a process that no
longer exists (`pipelines/runlock.py`) and marks them FAILURE with the tag
`core20/orphaned`. A month whose run was orphaned is asked for again under a new run key
(`...:retry1`, `...:retry2`, ...), up to `CORE20_MAX_CRASH_RETRIES` times (default 3) for the
same extract files, so a month that kills its process every time (e.g. out of memory) stops
being retried and waits for a person. A run that timed out waiting for another run's hold
on the warehouse is retried the same way. Only those are retried: a month blocked by a
data-quality gate, or refused for a bad extract, failed on its data and would fail the same
way again, so it keeps its run key and runs again only when the extract is re-sent.
"""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Optional

import dagster as dg

from pipelines import settings_file
from pipelines.jobs import monthly_job
from pipelines.partitions import MONTHLY, month_key
from pipelines.resources import ExtractSource
from pipelines.runlock import crash_attempts, sweep_orphans
from pipelines.segmentation.extract import SUFFIXES

RUN_DAY_ENV = "CORE20_RUN_DAY"
SETTLE_ENV = "CORE20_EXTRACT_SETTLE_SECONDS"
DEFAULT_RUN_DAY = 5
DEFAULT_SETTLE_SECONDS = 120
EXTRACT_TABLES = ("patients", "events")
FINGERPRINT_TAG = "core20/extract_fingerprint"
MAX_RETRIES_ENV = "CORE20_MAX_CRASH_RETRIES"
DEFAULT_MAX_RETRIES = 3


def retry_suffix(instance: dg.DagsterInstance, partition_key: str, fingerprint: str) -> str | None:
    """Return the run-key suffix for the next attempt at a month, or None when crashes used up its retries.

    The first attempt has no suffix; after n orphaned runs of the same extract files the
    next is `:retry<n>`, a key Dagster has not used, so it launches.
    """
    crashes = crash_attempts(instance, partition_key, {FINGERPRINT_TAG: fingerprint})
    if crashes > int(os.environ.get(MAX_RETRIES_ENV) or DEFAULT_MAX_RETRIES):
        return None
    return f":retry{crashes}" if crashes else ""


def _gave_up(partition_key: str) -> str:
    return (f"{partition_key[:7]}: its run crashed (process killed) more than ${MAX_RETRIES_ENV} "
            f"(default {DEFAULT_MAX_RETRIES}) times on these extract files; not retried again. Look at the runs' "
            f"logs, then run it by hand: core20 run --month {partition_key[:7]}")


class OperationsSettings(dg.ConfigurableResource):
    """When scheduled runs start and when an arriving extract counts as complete.

    Attributes:
        run_day: day of the month (1-28) the schedule runs the previous month
            (default $CORE20_RUN_DAY, else core20.toml, else 5: extracts usually land in the first working days).
        settle_seconds: an extract folder is only run once none of its files has changed for
            this long, so a copy still in progress is not read half-written
            (default $CORE20_EXTRACT_SETTLE_SECONDS, else core20.toml, else 120).
    """

    run_day: Optional[int] = None
    settle_seconds: Optional[int] = None

    def day(self) -> int:
        """Return the configured run day, checked to be a day every month has."""
        value, source = settings_file.resolve("schedule.run_day", self.run_day)
        try:
            day = int(value) if value is not None else DEFAULT_RUN_DAY
        except ValueError:
            raise ValueError(f"{RUN_DAY_ENV} (run_day) must be a day from 1 to 28 that every month has; got {value!r}") from None
        if not 1 <= day <= 28:
            raise ValueError(f"{RUN_DAY_ENV} (run_day) must be a day from 1 to 28 that every month has; got {day}")
        return day

    def settle(self) -> int:
        """Return the settle time in seconds."""
        value, _ = settings_file.resolve("schedule.settle_seconds", self.settle_seconds)
        try:
            return int(value) if value is not None else DEFAULT_SETTLE_SECONDS
        except ValueError:
            raise ValueError(f"{SETTLE_ENV} (settle_seconds) must be a whole number of seconds; got {value!r}") from None


def previous_month(today: date) -> date:
    """Return the first day of the month before `today`'s month.

    Examples:
        >>> previous_month(date(2026, 11, 5))
        datetime.date(2026, 10, 1)
        >>> previous_month(date(2027, 1, 31))
        datetime.date(2026, 12, 1)
    """
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


def extract_files(folder: Path) -> list[Path]:
    """Return the patients and events files of an extract folder (empty unless both are there)."""
    found = [folder / f"{table}{suffix}" for table in EXTRACT_TABLES for suffix in SUFFIXES
             if (folder / f"{table}{suffix}").is_file()]
    tables = {p.name.split(".")[0] for p in found}
    return sorted(found) if tables == set(EXTRACT_TABLES) else []


def extract_fingerprint(folder: Path) -> str:
    """Return a short fingerprint of an extract folder: file names, sizes and modification times.

    A re-sent extract (new files for the same month) gets a new fingerprint, so the sensor
    runs the month again; the same files seen again get the same one. Contents are not read:
    hashing a 25-million-row extract on every sensor tick would cost more than the run.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "patients.csv").write_text("patient_id\\n"); _ = (folder / "events.csv").write_text("code\\n")
        >>> first = extract_fingerprint(folder)
        >>> first == extract_fingerprint(folder), len(first)
        (True, 16)
        >>> _ = (folder / "events.csv").write_text("code\\n123456\\n")
        >>> first == extract_fingerprint(folder)
        False
    """
    digest = hashlib.sha256()
    for path in extract_files(folder):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def ready_extracts(source: ExtractSource, *, now: float, settle_seconds: int) -> list[tuple[str, str]]:
    """Return (partition key, fingerprint) for every complete, settled extract of a runnable month.

    A folder is skipped while a file is younger than `settle_seconds` (still being copied),
    when patients or events is missing, and when its month is not complete yet.
    """
    runnable = set(MONTHLY.get_partition_keys())
    ready = []
    for name in source.months_available():
        folder = source.root_path() / name
        files = extract_files(folder)
        if not files or now - max(p.stat().st_mtime for p in files) < settle_seconds:
            continue
        key = f"{name}-01"
        if key in runnable:
            ready.append((key, extract_fingerprint(folder)))
    return ready


def already_run(instance: dg.DagsterInstance, partition_key: str, fingerprint: str) -> bool:
    """Return whether a run of this month from these extract files is queued, running or succeeded.

    The sensor and the schedule have their own run keys, so this stops the schedule from
    repeating a month the sensor has already run.
    """
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            tags={"dagster/partition": partition_key, FINGERPRINT_TAG: fingerprint},
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                      dg.DagsterRunStatus.SUCCESS],
        ),
        limit=1,
    )
    return bool(runs)


@dg.schedule(
    cron_schedule="0 6 * * *",
    job=monthly_job,
    name="monthly_previous_month",
    execution_timezone="Europe/London",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=(
        "Every morning at 06:00 (London) checks whether today is the configured run day "
        f"(${RUN_DAY_ENV}, default {DEFAULT_RUN_DAY}); on that day runs the previous month once its extract is present."
    ),
)
def monthly_schedule(context: dg.ScheduleEvaluationContext, operations: OperationsSettings, extracts: ExtractSource):
    # The cron fires daily and the day test happens here, so the run day is configuration
    # (read when the tick is evaluated) rather than code baked into the cron string.
    sweep_orphans(context.instance, say=context.log.warning)
    today = context.scheduled_execution_time.date()
    if today.day < operations.day():
        return dg.SkipReason(f"runs on day {operations.day()} of the month; today is day {today.day}")
    month = previous_month(today)
    folder = extracts.root_path() / month.strftime("%Y-%m")
    key = month_key(month)
    fingerprint = extract_fingerprint(folder) if extract_files(folder) else ""
    # After the run day the schedule only steps in to retry a month whose run crashed.
    if today.day > operations.day() and not (fingerprint and crash_attempts(context.instance, key, {FINGERPRINT_TAG: fingerprint})):
        return dg.SkipReason(f"runs on day {operations.day()} of the month; today is day {today.day}")
    if not fingerprint:
        return dg.SkipReason(f"no extract for {month:%Y-%m} in {extracts.root_path()} yet; the extract sensor will start the run when it arrives")
    if already_run(context.instance, key, fingerprint):
        return dg.SkipReason(f"{month:%Y-%m} has already run from these extract files")
    suffix = retry_suffix(context.instance, key, fingerprint)
    if suffix is None:
        return dg.SkipReason(_gave_up(key))
    return dg.RunRequest(run_key=f"schedule:{key}:{fingerprint}{suffix}", partition_key=key,
                         tags={"core20/trigger": "schedule", FINGERPRINT_TAG: fingerprint})


@dg.sensor(
    job=monthly_job,
    name="new_extract",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Starts the month's run when a new (or re-sent) YYYY-MM extract folder has settled in the extracts root.",
)
def new_extract_sensor(context: dg.SensorEvaluationContext, operations: OperationsSettings, extracts: ExtractSource):
    sweep_orphans(context.instance, say=context.log.warning)
    ready = ready_extracts(extracts, now=datetime.now().timestamp(), settle_seconds=operations.settle())
    if not ready:
        return dg.SkipReason(f"no complete extract folders under {extracts.root_path()}")
    # The run key includes the fingerprint: the same files never run twice, re-sent files do;
    # and the number of crashed attempts, so a month whose run was orphaned runs again.
    requests, gave_up = [], []
    for key, fingerprint in ready:
        suffix = retry_suffix(context.instance, key, fingerprint)
        if suffix is None:
            gave_up.append(_gave_up(key))
            continue
        requests.append(dg.RunRequest(run_key=f"extract:{key}:{fingerprint}{suffix}", partition_key=key,
                                      tags={"core20/trigger": "new_extract", FINGERPRINT_TAG: fingerprint}))
    return requests or dg.SkipReason("; ".join(gave_up))


SCHEDULES = [monthly_schedule]
SENSORS = [new_extract_sensor]
