"""Run the Dagster jobs in-process for the CLI and explain the outcome to an analyst."""

from __future__ import annotations

import gc
import os
import re
import sys
import time
from pathlib import Path

import dagster as dg

from pipelines import settings_file
from pipelines.jobs import MONTHLY_JOB, REFERENCE_JOB
from pipelines.progress import close_all as close_progress
from pipelines.progress import progress_run_config
from pipelines.warehouse import built_pins, connect, table_exists

from pipelines.cli import EXIT_BLOCKED, EXIT_ERROR, EXIT_OK
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class InstanceError(RuntimeError):
    """$DAGSTER_HOME cannot hold the run history; the message says why and what is expected."""


def dagster_home() -> Path | None:
    """Return $DAGSTER_HOME made absolute and created, or None when it is not set.

    Dagster insists on an absolute path to an existing folder and otherwise stops with a
    traceback; an analyst who writes `DAGSTER_HOME=dagster_home` means the folder of that
    name here, so a relative path is resolved against the working directory (and the
    environment updated, so Dagster sees the same folder).
    """
    value = os.environ.get("DAGSTER_HOME")
    if not value:
        return None
    home = Path(value).expanduser()
    if not home.is_absolute():
        home = home.resolve()
        _say(f"DAGSTER_HOME is relative ({value!r}): using {home}")
    if home.exists() and not home.is_dir():
        raise InstanceError(f"DAGSTER_HOME {home} is a file; expected a folder for the run history (or unset DAGSTER_HOME).")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InstanceError(f"DAGSTER_HOME {home} cannot be created ({error.strerror}); expected a writable folder.") from None
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _instance() -> dg.DagsterInstance:
    """Return the command's Dagster instance: $DAGSTER_HOME's, opened once per command, else an ephemeral one.

    With DAGSTER_HOME set (make run sets it), CLI runs join the UI's persistent run history.
    Opening the instance (its storages and their schema checks) costs about 0.7 s of CPU, so the
    sweep for orphaned runs, the reference build and the months of one command share it;
    `close_instances` disposes of it when the command ends.
    """
    home = dagster_home()
    if home is None:
        return dg.DagsterInstance.ephemeral()
    _unsynced_run_logs()
    if str(home) not in _OPEN_INSTANCES:
        _OPEN_INSTANCES[str(home)] = dg.DagsterInstance.get()
    return _OPEN_INSTANCES[str(home)]


_OPEN_INSTANCES: dict[str, dg.DagsterInstance] = {}


def close_instances() -> None:
    """Dispose of the instances `_instance` opened and close the SQLite connections a run kept open."""
    _close_kept()
    while _OPEN_INSTANCES:
        _, instance = _OPEN_INSTANCES.popitem()
        instance.dispose()


RUN_LOG_SYNC_ENV = "CORE20_RUN_LOG_SYNC"
_RUN_SHARD = re.compile(r"[/\\]history[/\\]runs[/\\](?!index\.db$)[^/\\]+\.db$")
# The instance's shared SQLite files: the cross-run event index, the run storage and the schedule storage.
_SHARED_DB = re.compile(r"[/\\](history[/\\]runs[/\\]index|history[/\\]runs|schedules[/\\]schedules)\.db$")


def _unsynced_run_logs() -> None:
    """Let SQLite skip fsync on each run's own event-log file (DAGSTER_HOME/history/runs/<run id>.db),
    and sync the instance's shared files only at checkpoints.

    Dagster's SQLite storage opens, commits and closes the run's file for every event (a
    month logs about 230); with fsync each costs 14-20 ms on this project's machine, 4-6 s of
    a demo month that otherwise takes about 10. With `synchronous = OFF` an application
    crash (a killed run) loses nothing; only an operating-system crash or power cut right
    after the run can leave that one run's log file damaged (its history in the UI), never
    the warehouse, the index of runs or another run's log. CORE20_RUN_LOG_SYNC=full keeps fsync.

    The shared files (the event index every asset event and check is copied into, the run
    storage, the schedule storage) are in SQLite's write-ahead-log mode: there a connection
    gets `synchronous = NORMAL`, which SQLite documents as safe from corruption in WAL mode
    (a power cut can lose the last commits, never damage the file), and the run keeps one
    connection of its own open to each (`_keep_open`), so that closing Dagster's
    per-event connection is no longer the last close, which checkpoints the log into the file
    and deletes it (three fsyncs, of the log, the file and the folder). A demo month made
    about 1,000 such fsyncs on these files; the log is checkpointed when it grows past
    SQLite's threshold and when the run's own connection closes at its end.
    """
    global _SYNC_LISTENING
    if _SYNC_LISTENING or os.environ.get(RUN_LOG_SYNC_ENV, "").lower() == "full":
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _no_fsync(dbapi_connection, _record) -> None:
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            files = [row[2] for row in dbapi_connection.execute("pragma database_list").fetchall()]
            file = files[0] if files else ""
            if file and _RUN_SHARD.search(file):
                dbapi_connection.execute("pragma synchronous = OFF")
            elif file and _SHARED_DB.search(file):
                # Only in WAL mode (a file Dagster is still creating is not yet): NORMAL is unsafe in rollback mode.
                if dbapi_connection.execute("pragma journal_mode").fetchall()[0][0].lower() == "wal":
                    dbapi_connection.execute("pragma synchronous = NORMAL")
                    _keep_open(file)

    _SYNC_LISTENING = True


_KEPT_OPEN: dict = {}


def _keep_open(file: str) -> None:
    """Hold a connection of this process to a shared WAL-mode SQLite file until `_close_kept`."""
    if file in _KEPT_OPEN:
        return
    import sqlite3

    con = sqlite3.connect(file, timeout=30, check_same_thread=False)
    con.execute("select count(*) from sqlite_master").fetchall()  # opens the file and its WAL index
    _KEPT_OPEN[file] = con


def _close_kept() -> None:
    """Close the connections `_keep_open` holds: the last close checkpoints each file's log."""
    while _KEPT_OPEN:
        _, con = _KEPT_OPEN.popitem()
        con.close()


_SYNC_LISTENING = False


def sweep_orphaned_runs() -> list[str]:
    """Mark runs of $DAGSTER_HOME left STARTED by a process that no longer exists FAILURE; return their ids."""
    from pipelines.runlock import sweep_orphans

    if dagster_home() is None:
        return []
    return sweep_orphans(_instance(), say=_say)


def _say(message: str) -> None:
    print(message, flush=True)


def stale_reference_assets(defs: dg.Definitions, warehouse: Path) -> list[dg.AssetKey]:
    """Return the reference assets whose table is missing or was built from other pinned files."""
    built: dict[str, str] = {}
    if warehouse.exists():
        with connect(warehouse, read_only=True) as con:
            built = built_pins(con)
    stale = []
    for spec in defs.resolve_all_asset_specs():
        if spec.group_name != "reference":
            continue
        table = f"{spec.key.path[0]}.{spec.key.path[-1]}"
        if built.get(table) != spec.metadata.get("reference_pin"):
            stale.append(spec.key)
    return stale


def ensure_reference(defs: dg.Definitions, warehouse: Path) -> int:
    """Build the reference tables that are missing or stale; return an exit code."""
    stale = stale_reference_assets(defs, warehouse)
    if not stale:
        return EXIT_OK
    _say(
        f"loading {len(stale)} reference table(s) into {warehouse} "
        "(once per reference-data version; the spatial postcode lookup takes longest)"
    )
    started = time.perf_counter()
    try:
        result = defs.resolve_job_def(REFERENCE_JOB).execute_in_process(
            instance=_instance(), asset_selection=stale, raise_on_error=False, run_config=progress_run_config(len(stale))
        )
    finally:
        close_progress()
        _close_kept()
    if not result.success:
        print(f"core20 run: reference data could not be loaded: {failure_message(result)}", file=sys.stderr)
        return EXIT_ERROR
    _say(f"  reference data ready ({time.perf_counter() - started:.0f} s)")
    return EXIT_OK


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """Return the analyst-facing reason a run failed: the failed gate, or the step's error."""
    blocked = blocked_gates(result)
    if blocked:
        return "; ".join(blocked)
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            # A dg.Failure raised on purpose (bad extract, refused publication) carries the
            # analyst-facing paragraph as its description: the same text the UI shows.
            user_failure = event.event_specific_data.user_failure_data
            if user_failure is not None and user_failure.description:
                return user_failure.description
            error = event.event_specific_data.error
            # The user-facing error is the innermost cause (e.g. ExtractError), not Dagster's wrapper.
            while error.cause is not None:
                error = error.cause
            return f"step {event.step_key} failed: {error.message.strip()}"
    return "the run failed without a step failure (see the Dagster UI for the run)"


def blocked_gates(result: dg.ExecuteInProcessResult) -> list[str]:
    """Return a description of every failed blocking check in a run (counts only, no values)."""
    failures = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        if evaluation.passed:
            continue
        summary = evaluation.metadata.get("summary")
        text = summary.value if summary is not None else ""
        failures.append(f"gate {evaluation.asset_key.to_user_string()}:{evaluation.check_name} blocked — {text}")
    return failures


def run_month(defs: dg.Definitions, partition_key: str, warehouse: Path, after=None) -> int:
    """Run the monthly job for one partition, print the outcome and return an exit code.

    `after(warehouse, partition_key)` runs once the month is published (the restricted
    case-finding lists, when switched on).
    """
    job = defs.resolve_job_def(MONTHLY_JOB)
    n_steps = len(job.graph.node_dict)
    _say(f"running {partition_key[:7]} ({n_steps} steps) ...")
    started = time.perf_counter()
    # The objects made so far (imported modules, the definitions) live for the whole command:
    # frozen, they are left out of the garbage collector's full passes during the run, which
    # otherwise walked them all again (a demo month's full passes: 0.46 s of CPU, 0.22 s frozen).
    gc.freeze()
    try:
        result = job.execute_in_process(
            instance=_instance(), partition_key=partition_key, raise_on_error=False,
            run_config=progress_run_config(n_steps),
        )
    finally:
        gc.unfreeze()
        close_progress()
        _close_kept()
    elapsed = time.perf_counter() - started
    if not result.success:
        blocked = blocked_gates(result)
        if blocked:
            print(f"core20 run: {partition_key[:7]} NOT published — a data-quality gate blocked it. "
                  "The previously published tables are unchanged.", file=sys.stderr)
            for line in blocked:
                print(f"  {line}", file=sys.stderr)
            print(f"  every gate's result: {settings_file.hint('quality', warehouse, month=partition_key[:7])}", file=sys.stderr)
            return EXIT_BLOCKED
        print(f"core20 run: {partition_key[:7]} NOT published (the previously published tables are unchanged): "
              f"{failure_message(result)}", file=sys.stderr)
        return EXIT_ERROR
    _say(f"  published {partition_key[:7]} in {elapsed:.0f} s")
    print_summary(warehouse, partition_key)
    print_outputs(result)
    if after is not None:
        after(warehouse, partition_key)
    return EXIT_OK


def print_outputs(result: dg.ExecuteInProcessResult) -> None:
    """Print where the run's files for people went (every materialisation that records a path)."""
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        path = materialization.metadata.get("path")
        if path is not None:
            _say(f"{materialization.asset_key.to_user_string()}: {path.value}")


def run_months(defs: dg.Definitions, partition_keys: list[str], warehouse: Path, after=None) -> int:
    """Run a backfill: each month in turn, carrying on past a month that fails.

    Months are independent partitions, so one blocked month does not stop the others (as
    in a backfill launched from the UI). Returns 1 if any month could not run, else 2 if a
    gate blocked any, else 0, after a line per month.
    """
    outcomes = {}
    for number, key in enumerate(partition_keys, start=1):
        _say(f"\n[month {number}/{len(partition_keys)}] {key[:7]}")
        outcomes[key] = run_month(defs, key, warehouse, after=after)
    words = {EXIT_OK: "published", EXIT_BLOCKED: "blocked by a gate (published tables unchanged)", EXIT_ERROR: "failed"}
    _say(f"\nbackfill {partition_keys[0][:7]} to {partition_keys[-1][:7]}:")
    for key, code in outcomes.items():
        _say(f"  {key[:7]}  {words[code]}")
    codes = set(outcomes.values())
    return EXIT_ERROR if EXIT_ERROR in codes else EXIT_BLOCKED if EXIT_BLOCKED in codes else EXIT_OK


MATCH_RATE_DEFINITION = ("patients with a national decile / patients with an address IMD can apply to "
                         "(every registered patient except blank postcodes and addresses outside England)")


def month_summary(warehouse: Path, partition_key: str, *, source: str = "published") -> dict:
    """Return the headline figures of a month from its published tables only (aggregates only).

    Every number comes from a published, disclosure-controlled table, so the summary can never
    show a count the tables hide. `source` names a schema (or attached catalog.schema) holding
    the tables in the published layout (the disclosure audit points it at the candidates).
    """
    from datetime import date

    month = date.fromisoformat(partition_key)
    with connect(warehouse, read_only=True) as con:
        return summary_from(con, month, source)


def summary_from(con, month, source: str = "published") -> dict:
    """Return the headline figures of `month` from the tables in schema `source` of an open connection."""
    gap_columns = {r[0] for r in con.execute(
        f"select column_name from (describe select * from {source}.gap_table)").fetchall()}
    settings_vintage = con.execute(
        f"select imd_vintage from {source}.gap_table where reporting_month = ? and breakdown = 'overall' limit 1",
        [month],
    ).fetchall()
    vintage = settings_vintage[0][0] if settings_vintage else "IMD2025"
    quality = con.execute(
        f"select n_patients, n_matched, match_rate from {source}.deprivation_quality "
        "where reporting_month = ? and imd_vintage = ? and practice_code = 'ALL'", [month, vintage]).fetchall()
    n_patients, n_matched, match_rate = quality[0] if quality else (None, None, None)
    units = ", multiplier, value_type" if {"multiplier", "value_type"} <= gap_columns else ", null, null"
    gaps = con.execute(
        f"""
        select indicator_id, "group", numerator, denominator, rate, rate_lower, rate_upper,
               gap, gap_lower, gap_upper, comparison{units}
        from {source}.gap_table
        where reporting_month = ? and breakdown = 'core20' and imd_vintage = ? and "group" in ('core20', 'rest')
        order by indicator_id, "group"
        """,
        [month, vintage],
    ).fetchall()
    titles = dict(con.execute(
        f"select indicator_id, title from {source}.indicator_catalogue where reporting_month = ?", [month]).fetchall())
    indicators: dict[str, dict] = {}
    for row in gaps:
        indicator, group = row[0], row[1]
        entry = indicators.setdefault(indicator, {"title": titles.get(indicator, indicator), "multiplier": row[11],
                                                  "value_type": row[12]})
        entry[group] = {
            "numerator": row[2], "denominator": row[3], "rate": row[4], "rate_lower": row[5], "rate_upper": row[6],
            "gap": row[7], "gap_lower": row[8], "gap_upper": row[9], "comparison": row[10],
        }
    return {"month": month.isoformat()[:7], "imd_vintage": vintage, "n_patients": n_patients, "n_matched": n_matched,
            "match_rate": match_rate, "indicators": indicators}


def _count(value) -> str:
    return "suppressed" if value is None else f"{value:,}"


def rate_text(value: float | None, multiplier: float | None, value_type: str | None) -> str:
    """Return a published rate in its own unit: a percentage for proportions, 'per N' for rates.

    Examples:
        >>> rate_text(0.5904, 1, "proportion"), rate_text(5930.8, 100000, "rate"), rate_text(None, 1, "proportion")
        ('59.0%', '5,930.8 per 100,000', 'suppressed')
    """
    from pipelines.report.charts import Unit

    return Unit(value_type or "proportion", int(multiplier or 1)).text(value)


def gap_text(gap: float, multiplier: float | None, value_type: str | None) -> str:
    """Return a gap in its unit: percentage points for proportions, 'per N' for rates.

    Examples:
        >>> gap_text(-0.075, 1, "proportion"), gap_text(-120.0, 100000, "rate")
        ('-7.5 points', '-120.0 per 100,000')
    """
    if value_type == "rate":
        return f"{gap:+,.1f} per {int(multiplier or 1):,}"
    return f"{100 * gap:+.1f} points"


def summary_text(s: dict, quality_text: str = "") -> str:
    """Return the month's run summary as printed (every figure from the published tables)."""
    lines = [f"\n{s['month']} — {_count(s['n_patients'])} registered patients"]
    rate = "suppressed" if s["match_rate"] is None else f"{s['match_rate']:.1%}"
    lines.append(f"  match rate ({s['imd_vintage']}): {rate} — {MATCH_RATE_DEFINITION}")
    for indicator, figures in sorted(s["indicators"].items()):
        core, rest = figures.get("core20", {}), figures.get("rest", {})
        m, vt = figures.get("multiplier"), figures.get("value_type")
        lines.append(f"  {figures['title']}")
        lines.append(f"    Core20 {rate_text(core.get('rate'), m, vt)} ({_count(core.get('numerator'))}/{_count(core.get('denominator'))})"
                     f"  vs rest {rate_text(rest.get('rate'), m, vt)} ({_count(rest.get('numerator'))}/{_count(rest.get('denominator'))})")
        if core.get("gap") is not None:
            interval = f"{gap_text(core['gap_lower'], m, vt)} to {gap_text(core['gap_upper'], m, vt)}"
            lines.append(f"    gap {gap_text(core['gap'], m, vt)} (95% CI {interval}): Core20 {core['comparison']}")
    if quality_text:
        lines.append(quality_text)
    return "\n".join(lines)


def print_summary(warehouse: Path, partition_key: str) -> None:
    """Print the month's headline figures for an analyst."""
    _say(summary_text(month_summary(warehouse, partition_key), quality_line(warehouse, partition_key)))
    with connect(warehouse, read_only=True) as con:
        tables = [row[0] for row in con.execute(
            "select table_name from information_schema.tables where table_schema = 'published' order by 1"
        ).fetchall()]
    _say(f"\nwarehouse: {warehouse}  (published: {', '.join(tables)})")


def quality_line(warehouse: Path, partition_key: str) -> str:
    """Return the month's data-quality headline: gates passed, rows quarantined (controlled counts)."""
    from datetime import date

    from pipelines import quality

    month = date.fromisoformat(partition_key)
    with connect(warehouse, read_only=True) as con:
        from pipelines.publication import month_profile

        profile = month_profile(con, month)
    rows = quality.controlled_rows(quality.history(warehouse).filter(reporting_month=month), profile)
    return quality.headline(rows, partition_key[:7], settings_file.hint('quality', warehouse, month=partition_key[:7]))
