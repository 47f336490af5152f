"""No expectation result, check metadata, log line or published row carries a patient id, postcode or date of birth.

A month with quarantined rows is published and a month with too many is blocked, so that
every gate has failing rows to talk about. Everything the runs say is then searched for
every patient id, postcode (as supplied and normalised) and date of birth in the extract:
Python logging at DEBUG from every library (Dagster, Great Expectations, ...), what the
processes printed, every event of the Dagster runs (check results and their metadata,
materialisation metadata, failures) as stored, the data-quality history and every
published table. The private layer (staging, the quarantine) is meant to hold them and is
not searched.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil

import dagster as dg
import polars as pl
from dagster._serdes import serialize_value

from pipelines.definitions import build_definitions
from pipelines.jobs import MONTHLY_JOB
from pipelines.segmentation.codes import normalise_postcode
from pipelines.warehouse import connect, read_table
from test_quality_gates import spoil

DEBUG_LOGS = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}


def secrets_of(folder) -> set[str]:
    patients = pl.read_parquet(folder / "patients.parquet")
    postcodes = patients.select(
        pl.col("postcode").str.strip_chars().alias("raw"), normalise_postcode(pl.col("postcode")).alias("canonical")
    )
    dates = patients["date_of_birth"].drop_nulls()
    # Dates the runs legitimately print (partition keys, today's timestamps) cannot be told apart
    # from a birthday on the same day; no other date of birth may appear.
    dates = dates.filter(dates < dt.date(2026, 8, 1))
    values = set(patients["patient_id"].to_list()) | set(dates.cast(pl.String).to_list())
    values |= {p for p in postcodes["raw"].drop_nulls().to_list() + postcodes["canonical"].drop_nulls().to_list() if len(p) >= 5}
    return values


def test_no_result_metadata_log_or_published_row_holds_a_patient_value(september, warehouse, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    blocked_root = tmp_path / "blocked"
    spoil(september / "2026-09", n_old_dob=3, n_bad_sex=5, n_bad_code=4)
    shutil.copytree(september / "2026-09", blocked_root / "2026-09")
    spoil(blocked_root / "2026-09", n_old_dob=300, n_bad_code=900)
    secrets = secrets_of(september / "2026-09") | secrets_of(blocked_root / "2026-09")
    assert len(secrets) > 4_000

    instance = dg.DagsterInstance.ephemeral()
    outcomes = []
    for root in (blocked_root, september):
        defs = build_definitions(warehouse=str(warehouse), extracts=str(root))
        result = defs.resolve_job_def(MONTHLY_JOB).execute_in_process(
            instance=instance, partition_key="2026-09-01", raise_on_error=False, run_config=DEBUG_LOGS,
        )
        outcomes.append(result.success)
    assert outcomes == [False, True]  # the first was blocked by its gates, the second published

    said = [caplog.text, *capfd.readouterr()]
    for run in instance.get_runs():
        said += [serialize_value(entry) for entry in instance.all_logs(run.run_id)]
    checks = [e for run in instance.get_runs() for e in instance.all_logs(run.run_id)
              if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert any(not e.dagster_event.event_specific_data.passed for e in checks)  # there were failures to describe
    with connect(warehouse, read_only=True) as con:
        tables = [("audit", "data_quality")] + [("published", t) for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'published'").fetchall()]
        said += [read_table(con, *t).write_ndjson() for t in tables]
    text = "\n".join(said)
    assert "input_contract" in text and "date_of_birth_implausible" in text
    # A value leaks where it stands apart from longer numbers: the digits of a published
    # rate (a gap_lower of -0.12345609...) are not the junk postcode "12345" someone typed.
    leaked = sorted(value for value in secrets if value in text and re.search(rf"(?<![0-9]){re.escape(value)}(?![0-9])", text))
    assert leaked == []
