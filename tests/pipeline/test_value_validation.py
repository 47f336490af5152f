"""NaN, infinity and out-of-range values in `value` are quarantined under a named rule and
change no published figure (issue 15: a NaN QRISK score used to grow the CVD-risk cohort).

A good September extract is run as supplied, then with extra QRISK readings added for
patients whose latest score is under the cohort's 10% threshold: readings of NaN, +infinity,
1e400 (infinity once read) and 140 (no risk is above 100%), dated after every earlier
reading so each would be the patient's latest. The month publishes the same figures as the
clean extract. A control adds the same readings with a plausible high score (25%): the
figures then move, so the comparison can tell.
"""

from __future__ import annotations

import datetime as dt
import shutil

import polars as pl
import pytest

from pipeline_helpers import core20_in_process
from pipelines.warehouse import connect
from reference_data.loader import read_codelist

MONTH = "2026-09"
PUBLISHED = ("gap_table", "inequality_table", "deprivation_quality", "spc_series")
BAD_VALUES = ["NaN", "inf", "1e400", "140"]


def _low_risk_patients(events: pl.DataFrame) -> list[str]:
    qrisk = set(read_codelist("qriskscore_cod")["code"].to_list())
    latest = (events.filter(pl.col("code").is_in(list(qrisk)) & pl.col("value").is_not_null())
              .sort("event_date").group_by("patient_id").agg(pl.col("value").last()))
    return latest.filter(pl.col("value") < 10)["patient_id"].sort().to_list()


def _add_readings(folder, values: list[str]) -> int:
    """Write events.csv = the extract's events + one QRISK reading per low-risk patient, cycling `values`."""
    events = pl.read_parquet(folder / "events.parquet")
    patients = _low_risk_patients(events)
    assert len(patients) >= 20, "the extract needs low-risk QRISK patients for this test to mean anything"
    day = dt.date(2026, 9, 29)  # inside the month, after any earlier reading
    added = pl.DataFrame({
        "patient_id": patients, "code": [read_codelist("qriskscore_cod")["code"][0]] * len(patients),
        "event_date": [day] * len(patients), "value": [values[i % len(values)] for i in range(len(patients))]})
    text = events.with_columns(pl.col("value").cast(pl.String))
    pl.concat([text, added.select(text.columns)]).write_csv(folder / "events.csv")
    (folder / "events.parquet").unlink()
    return len(patients)


def _published(warehouse) -> dict[str, list[tuple]]:
    """Return the month's rows of each published figures table, run ids left out (they differ by run)."""
    with connect(warehouse, read_only=True) as con:
        tables = {}
        for table in PUBLISHED:
            columns = ['"' + r[0] + '"' for r in con.execute(f"DESCRIBE published.{table}").fetchall() if r[0] != "run_id"]
            tables[table] = con.execute(
                f"SELECT {', '.join(columns)} FROM published.{table} WHERE reporting_month = DATE '{MONTH}-01' "
                "ORDER BY ALL").fetchall()
        return tables


def _run(extracts, warehouse) -> str:
    code, output = core20_in_process("run", "--extract", str(extracts), "--month", MONTH, "--warehouse", str(warehouse))
    assert code == 0, output
    return output


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, clean_extracts, base_warehouse):
    root = tmp_path_factory.mktemp("clean")
    shutil.copytree(clean_extracts / MONTH, root / "extracts" / MONTH)
    shutil.copy(base_warehouse, root / "w.duckdb")
    _run(root / "extracts", root / "w.duckdb")
    return _published(root / "w.duckdb")


def test_non_finite_and_out_of_range_values_are_quarantined_and_change_no_published_figure(
        clean_run, september, warehouse):
    n = _add_readings(september / MONTH, BAD_VALUES)
    output = _run(september, warehouse)
    assert "Traceback" not in output
    assert _published(warehouse) == clean_run
    with connect(warehouse, read_only=True) as con:
        counts = dict(con.execute(
            "SELECT rule, count(*) FROM staging.quarantine WHERE reporting_month = DATE '2026-09-01' "
            "AND source_table = 'events' GROUP BY rule").fetchall())
    per_value = [sum(1 for i in range(n) if i % len(BAD_VALUES) == k) for k in range(len(BAD_VALUES))]
    assert counts.get("value_not_finite") == per_value[0] + per_value[1] + per_value[2]
    assert counts.get("qrisk_score_out_of_range") == per_value[3]


def test_control_plausible_readings_do_move_the_published_figures(clean_run, september, warehouse):
    _add_readings(september / MONTH, ["25"])
    _run(september, warehouse)
    assert _published(warehouse)["gap_table"] != clean_run["gap_table"]
