"""Quarantine, its threshold, warnings, the data-quality history and write-audit-publish, through `core20`.

October 2026 is already published in each test's warehouse; September is altered and run.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from pipeline_helpers import core20_in_process, published_state
from pipelines.definitions import build_definitions
from pipelines.jobs import MONTHLY_JOB
from pipelines.publication import PUBLISHED_TABLES, published_key
from pipelines.runner import QUIET_LOGS
from pipelines.warehouse import connect, read_table
from reference_data.loader import read_codelist

SEP = dt.date(2026, 9, 1)


def run_september(extracts, warehouse, *extra):
    return core20_in_process("run", "--extract", str(extracts), "--month", "2026-09", "--warehouse", str(warehouse), *extra)


def table(warehouse, schema, name) -> pl.DataFrame:
    with connect(warehouse, read_only=True) as con:
        return read_table(con, schema, name)


def spoil(folder, *, n_old_dob=0, n_bad_sex=0, n_bad_code=0):
    """Give the first rows impossible dates of birth, the next ones an unknown sex code, and some events a bad code."""
    patients = pl.read_parquet(folder / "patients.parquet")
    row = pl.int_range(pl.len())
    patients.with_columns(
        pl.when(row < n_old_dob).then(pl.lit(dt.date(1850, 1, 1))).otherwise("date_of_birth").alias("date_of_birth"),
        pl.when((row >= n_old_dob) & (row < n_old_dob + n_bad_sex)).then(pl.lit("X")).otherwise("sex").alias("sex"),
    ).write_parquet(folder / "patients.parquet")
    events = pl.read_parquet(folder / "events.parquet")
    events.with_columns(
        pl.when(pl.int_range(pl.len()) < n_bad_code).then(pl.lit("abc")).otherwise("code").alias("code")
    ).write_parquet(folder / "events.parquet")


def test_a_few_bad_rows_are_quarantined_with_their_rules_and_the_month_publishes(september, warehouse):
    spoil(september / "2026-09", n_old_dob=3, n_bad_sex=5, n_bad_code=4)
    code, output = run_september(september, warehouse)
    assert code == 0, output
    quarantine = table(warehouse, "staging", "quarantine").filter(reporting_month=SEP)
    counts = dict(quarantine.group_by("rule").len().iter_rows())
    # The generator itself writes a few systolic readings below 50 (rows that are no valid BP
    # reading, issue 14), which staging quarantines; every other quarantined row is ours.
    generated = counts.pop("systolic_bp_implausible", 0)
    assert counts == {"date_of_birth_implausible": 3, "sex_code_unknown": 5, "code_malformed": 4}
    # Printed under the disclosure profile: 8 quarantined patient rows show as 10; event rows
    # are suppressed when 1-7, else rounded to 5.
    n_events = 4 + generated
    shown = "suppressed events" if n_events <= 7 else f"{5 * round(n_events / 5):,} events"
    assert f"quarantined rows: 10 patients, {shown}" in output
    assert set(quarantine["source_file"]) == {"patients.parquet", "events.parquet"}
    assert set(table(warehouse, "published", "gap_table")["reporting_month"]) == {SEP, dt.date(2026, 10, 1)}
    # The month's quality rows are published with it, under the disclosure profile: the exact
    # history stays private, the published counts are rounded to 5 or suppressed (never 1-7).
    history = table(warehouse, "audit", "data_quality").filter(reporting_month=SEP)
    published = table(warehouse, "published", "data_quality").filter(reporting_month=SEP)
    assert "run_id" not in published.columns  # so that a re-run publishes identical rows
    shown = pl.concat([published["n"], published["n_total"]]).drop_nulls()
    assert shown.len() > 0 and (shown % 5 == 0).all() and not shown.is_between(1, 7).any()
    quarantined = published.filter(kind="quarantine_rule", name="date_of_birth_implausible")
    assert quarantined["n"].to_list() == [None]  # 3 rows: suppressed, and its complement with it
    assert published.filter(kind="match_method").is_empty()  # published in deprivation_quality instead
    rules = {r["name"]: r["n"] for r in history.filter(kind="quarantine_rule").iter_rows(named=True) if r["n"]}
    assert rules == {**counts, **({"systolic_bp_implausible": generated} if generated else {})}
    assert history.filter(kind="match_rate", name="IMD2025")["passed"].to_list() == [True]


def test_too_much_quarantine_blocks_says_why_keeps_history_and_a_raised_threshold_publishes(september, warehouse):
    spoil(september / "2026-09", n_old_dob=100)  # 5% of 2,000 patients
    before = published_state(warehouse)
    code, output = run_september(september, warehouse)
    assert code == 2, output
    assert "2026-09 NOT published — a data-quality gate blocked it. The previously published tables are unchanged." in output
    assert ("gate staging/patients:input_contract blocked — 100 of the 2,000 distinct rows of patients.parquet (5.0%) "
            "were quarantined, above the 1.0% threshold: date_of_birth_implausible 100.") in output
    assert published_state(warehouse) == before
    # The blocked month is in the history with the failed measure, and `core20 quality` shows it.
    history = table(warehouse, "audit", "data_quality").filter(reporting_month=SEP)
    failed = history.filter(passed=False).select("asset", "kind", "name").rows()
    assert failed == [("staging/patients", "quarantine_share", "patients")]
    code, report = core20_in_process("quality", "--warehouse", str(warehouse))
    # Only the staging gates ran: the indicator catalogue says which indicators the month's
    # feeds make available, so its gate waits for staging too.
    assert code == 0 and "2026-09  1/2" in report
    code, detail = core20_in_process("quality", "--warehouse", str(warehouse), "--month", "2026-09")
    assert "staging/patients:input_contract FAILED [blocking gate: publication blocked]" in detail
    assert "FAIL quarantine_share: patients 100 of 2,000 (5.00%) threshold 0.01" in detail

    code, output = run_september(september, warehouse, "--max-quarantine-share", "0.06")
    assert code == 0, output
    assert set(table(warehouse, "published", "gap_table")["reporting_month"]) == {SEP, dt.date(2026, 10, 1)}


def test_a_cohort_sanity_warning_is_reported_but_does_not_block(september, warehouse):
    folder = september / "2026-09"
    epilepsy = read_codelist("epil_cod")["code"].to_list()
    events = pl.read_parquet(folder / "events.parquet")
    events.filter(~pl.col("code").is_in(epilepsy)).write_parquet(folder / "events.parquet")
    code, output = run_september(september, warehouse)
    assert code == 0, output
    assert "(1 cohort-sanity warning(s))" in output
    warned = table(warehouse, "audit", "data_quality").filter(reporting_month=SEP, passed=False)
    assert warned.select("check_name", "column", "severity").rows() == [("register_prevalence", "epilepsy_register", "WARN")]


def test_publish_refuses_unless_the_candidates_were_gated_in_the_same_run(warehouse, clean_extracts):
    # The publish step alone (its published tables, the serving snapshot and the report, which
    # it puts in place together), without the candidates' gates or the disclosure audit in the run.
    from assets.publish import REPORT, SERVING

    before = published_state(warehouse)
    defs = build_definitions(warehouse=str(warehouse), extracts=str(clean_extracts))
    result = defs.resolve_job_def(MONTHLY_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key="2026-10-01", raise_on_error=False, run_config=QUIET_LOGS,
        asset_selection=[*[published_key(t) for t in PUBLISHED_TABLES], SERVING, REPORT],
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data
    assert failure.user_failure_data.description.startswith("nothing published (the published tables are unchanged): ")
    assert "audit/gap_table has no passing blocking gate in this run" in failure.user_failure_data.description
    assert "audit/disclosure has no passing disclosure audit in this run" in failure.user_failure_data.description
    assert published_state(warehouse) == before
