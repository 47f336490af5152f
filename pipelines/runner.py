"""Run the Dagster jobs in-process for the CLI and explain the outcome to an analyst."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dagster as dg

from pipelines.jobs import MONTHLY_JOB, REFERENCE_JOB
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
    # With DAGSTER_HOME set (make run sets it), CLI runs join the UI's persistent run history.
    if dagster_home() is not None:
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


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
    result = defs.resolve_job_def(REFERENCE_JOB).execute_in_process(
        instance=_instance(), asset_selection=stale, raise_on_error=False, run_config=QUIET_LOGS
    )
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


def run_month(defs: dg.Definitions, partition_key: str, warehouse: Path) -> int:
    """Run the monthly job for one partition, print the outcome and return an exit code."""
    job = defs.resolve_job_def(MONTHLY_JOB)
    n_steps = len(job.graph.node_dict)
    _say(f"running {partition_key[:7]} ({n_steps} steps) ...")
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=_instance(), partition_key=partition_key, raise_on_error=False,
        run_config=progress_run_config(n_steps),
    )
    elapsed = time.perf_counter() - started
    if not result.success:
        blocked = blocked_gates(result)
        if blocked:
            print(f"core20 run: {partition_key[:7]} NOT published — a data-quality gate blocked it. "
                  "The previously published tables are unchanged.", file=sys.stderr)
            for line in blocked:
                print(f"  {line}", file=sys.stderr)
            print(f"  every gate's result: core20 quality --month {partition_key[:7]} --warehouse {warehouse}", file=sys.stderr)
            return EXIT_BLOCKED
        print(f"core20 run: {partition_key[:7]} NOT published (the previously published tables are unchanged): "
              f"{failure_message(result)}", file=sys.stderr)
        return EXIT_ERROR
    _say(f"  published {partition_key[:7]} in {elapsed:.0f} s")
    print_summary(warehouse, partition_key)
    print_outputs(result)
    return EXIT_OK


def print_outputs(result: dg.ExecuteInProcessResult) -> None:
    """Print where the run's files for people went (every materialisation that records a path)."""
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        path = materialization.metadata.get("path")
        if path is not None:
            _say(f"{materialization.asset_key.to_user_string()}: {path.value}")


def run_months(defs: dg.Definitions, partition_keys: list[str], warehouse: Path) -> int:
    """Run a backfill: each month in turn, carrying on past a month that fails.

    Months are independent partitions, so one blocked month does not stop the others (as
    in a backfill launched from the UI). Returns 1 if any month could not run, else 2 if a
    gate blocked any, else 0, after a line per month.
    """
    outcomes = {}
    for number, key in enumerate(partition_keys, start=1):
        _say(f"\n[month {number}/{len(partition_keys)}] {key[:7]}")
        outcomes[key] = run_month(defs, key, warehouse)
    words = {EXIT_OK: "published", EXIT_BLOCKED: "blocked by a gate (published tables unchanged)", EXIT_ERROR: "failed"}
    _say(f"\nbackfill {partition_keys[0][:7]} to {partition_keys[-1][:7]}:")
    for key, code in outcomes.items():
        _say(f"  {key[:7]}  {words[code]}")
    codes = set(outcomes.values())
    return EXIT_ERROR if EXIT_ERROR in codes else EXIT_BLOCKED if EXIT_BLOCKED in codes else EXIT_OK


def month_summary(warehouse: Path, partition_key: str) -> dict:
    """Return the headline figures for a published month (aggregates only)."""
    from datetime import date

    month = date.fromisoformat(partition_key)
    with connect(warehouse, read_only=True) as con:
        settings_vintage = con.execute(
            "select imd_vintage from published.gap_table where reporting_month = ? and breakdown = 'overall' limit 1",
            [month],
        ).fetchall()
        vintage = settings_vintage[0][0] if settings_vintage else "IMD2025"
        column = "imd2019_decile" if vintage == "IMD2019" else "imd2025_decile"
        method = column.replace("decile", "method")
        n, matched, core20, english_valid, english_matched = con.execute(
            f"""
            select count(*),
                   count({column}),
                   count(*) filter (where {column} <= 2),
                   count(*) filter (where {method} not in ('outside_england', 'invalid_postcode', 'blank')),
                   count({column}) filter (where {method} not in ('outside_england', 'invalid_postcode', 'blank'))
            from population.patient_deprivation where reporting_month = ?
            """,
            [month],
        ).fetchall()[0]
        gaps = con.execute(
            """
            select indicator_id, "group", numerator, denominator, rate, rate_lower, rate_upper,
                   gap, gap_lower, gap_upper, comparison
            from published.gap_table
            where reporting_month = ? and breakdown = 'core20' and imd_vintage = ? and "group" in ('core20', 'rest')
            order by indicator_id, "group"
            """,
            [month, vintage],
        ).fetchall()
        has_catalogue = table_exists(con, "published", "indicator_catalogue")
        titles = (
            dict(con.execute(
                "select indicator_id, title from published.indicator_catalogue where reporting_month = ?", [month]
            ).fetchall())
            if has_catalogue
            else {}
        )
    indicators: dict[str, dict] = {}
    for row in gaps:
        indicator, group = row[0], row[1]
        indicators.setdefault(indicator, {"title": titles.get(indicator, indicator)})[group] = {
            "numerator": row[2], "denominator": row[3], "rate": row[4], "rate_lower": row[5], "rate_upper": row[6],
            "gap": row[7], "gap_lower": row[8], "gap_upper": row[9], "comparison": row[10],
        }
    return {
        "month": partition_key[:7], "imd_vintage": vintage, "n_patients": n, "n_matched": matched, "n_core20": core20,
        "n_english_valid": english_valid, "n_english_matched": english_matched, "indicators": indicators,
    }


def _pct(value: float | None) -> str:
    return "suppressed" if value is None else f"{100 * value:.1f}%"


def print_summary(warehouse: Path, partition_key: str) -> None:
    """Print the month's headline figures for an analyst."""
    s = month_summary(warehouse, partition_key)
    n = max(s["n_patients"], 1)
    _say(f"\n{s['month']} — {s['n_patients']:,} registered patients")
    _say(f"  matched to a national {s['imd_vintage']} decile: {s['n_matched'] / n:.1%} of all patients; "
         f"{s['n_english_matched'] / max(s['n_english_valid'], 1):.1%} of those with a valid English postcode")
    _say(f"  Core20 (national deciles 1-2): {s['n_core20'] / max(s['n_matched'], 1):.1%} of matched patients")
    for indicator, figures in sorted(s["indicators"].items()):
        core, rest = figures.get("core20", {}), figures.get("rest", {})
        _say(f"  {figures['title']}")
        _say(f"    Core20 {_pct(core.get('rate'))} ({core.get('numerator')}/{core.get('denominator')})"
             f"  vs rest {_pct(rest.get('rate'))} ({rest.get('numerator')}/{rest.get('denominator')})")
        if core.get("gap") is not None:
            _say(f"    gap {100 * core['gap']:+.1f} points (95% CI {100 * core['gap_lower']:+.1f} to "
                 f"{100 * core['gap_upper']:+.1f}): Core20 {core['comparison']}")
    _say(quality_line(warehouse, partition_key))
    with connect(warehouse, read_only=True) as con:
        tables = [row[0] for row in con.execute(
            "select table_name from information_schema.tables where table_schema = 'published' order by 1"
        ).fetchall()]
    _say(f"\nwarehouse: {warehouse}  (published: {', '.join(tables)})")


def quality_line(warehouse: Path, partition_key: str) -> str:
    """Return the month's data-quality headline: gates passed, rows quarantined, warnings."""
    from datetime import date

    from pipelines import quality

    rows = quality.history(warehouse).filter(reporting_month=date.fromisoformat(partition_key))
    quarantined = {r["name"]: r["n"] for r in rows.filter(kind="quarantine_share").iter_rows(named=True)}
    expectations = rows.filter(kind="expectation")
    warnings = expectations.filter(passed=False, severity="WARN").height
    return (f"  data quality: {expectations.filter(passed=True).height} of {expectations.height} expectations met"
            f"{f' ({warnings} cohort-sanity warning(s))' if warnings else ''}; quarantined rows: "
            f"{quarantined.get('patients', 0):,} patients, {quarantined.get('events', 0):,} events "
            f"(details: core20 quality --month {partition_key[:7]})")
