"""Each kind of malformed input, fed to `core20 run`: exit code 1, a message naming the file and the
column or line and what was expected, and the published tables exactly as they were.

Every bad extract is made by altering a good generated one (September 2026) after October
has been published into the warehouse.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from malformed_corpus import CORPUS
from pipeline_helpers import core20_in_process, published_state
from pipelines.definitions import build_definitions
from pipelines.jobs import MONTHLY_JOB
from pipelines.runner import QUIET_LOGS


def _patients(folder) -> pl.DataFrame:
    return pl.read_parquet(folder / "patients.parquet")


def missing_file(folder):
    (folder / "events.parquet").unlink()
    return ["events", "has no 'events' file: expected one of events.parquet, events.csv, events.csv.gz"]


def empty_file(folder):
    (folder / "patients.parquet").unlink()
    (folder / "patients.csv").write_bytes(b"")
    return ["patients.csv: the file is empty (0 bytes); expected a header line naming the columns, then one line per row"]


def wrong_delimiter(folder):
    _patients(folder).write_csv(folder / "patients.csv", separator=";")
    (folder / "patients.parquet").unlink()
    return ["patients.csv: line 1 (the header) splits into a single column with the delimiter ','",
            "set `delimiter: ';'` under options: in column_mapping.yaml"]


def missing_column(folder):
    _patients(folder).drop("sex").write_csv(folder / "patients.csv")
    (folder / "patients.parquet").unlink()
    return ["patients.csv: required column(s) ['sex'] are missing; the file's columns are ['patient_id', 'practice_code'",
            "Expected the contract's names"]


def misnamed_column(folder):
    _patients(folder).rename({"patient_id": "PatientID"}).write_parquet(folder / "patients.parquet")
    return ["patients.parquet: required column(s) ['patient_id'] are missing",
            "The file has 'PatientID': add `patient_id: PatientID` under patients: in column_mapping.yaml"]


def wrong_type_csv_dates(folder):
    _patients(folder).with_columns(pl.col("date_of_birth").dt.strftime("%d/%m/%Y")).write_csv(folder / "patients.csv")
    (folder / "patients.parquet").unlink()
    return ["patients.csv: column 'date_of_birth' should hold dates in the form %Y-%m-%d, but none of its 2000 "
            "non-blank value(s) can be read as such (the first is on line 2)", "Set options.date_format"]


def wrong_type_parquet(folder):
    events = pl.read_parquet(folder / "events.parquet")
    events.with_columns(pl.col("event_date").cast(pl.Int64) * 7).write_parquet(folder / "events.parquet")
    return ["events.parquet: column 'event_date' should hold dates in the form %Y-%m-%d, but none of its",
            "the file stores it as Int64"]


def bad_encoding(folder):
    data = _patients(folder).write_csv().encode()
    lines = data.split(b"\n")
    lines[9] = lines[9].replace(b",", b",\xe9", 1)  # one Latin-1 byte on line 10, as a non-UTF-8 export leaves
    (folder / "patients.csv").write_bytes(b"\n".join(lines))
    (folder / "patients.parquet").unlink()
    return ["patients.csv: line 10 is not valid UTF-8 text; expected the whole file in UTF-8"]


def truncated_parquet(folder):
    data = (folder / "events.parquet").read_bytes()
    (folder / "events.parquet").write_bytes(data[: len(data) // 2])
    return ["events.parquet: could not be read as Parquet (", "expected a complete Parquet file",
            "cut short in transfer"]


def mapping_is_a_list(folder):
    (folder / "column_mapping.yaml").write_text("- patient_id\n- code\n")
    return ["column_mapping.yaml: must be a mapping with the sections patients:, events: and options:; found a list"]


def mapping_sends_two_columns_to_one_header(folder):
    (folder / "column_mapping.yaml").write_text("patients:\n  patient_id: patient_id\n  practice_code: patient_id\n")
    return ["column_mapping.yaml: section 'patients' maps 2 contract columns (patient_id, practice_code) to the same "
            "header 'patient_id'"]


def table_is_a_folder(folder):
    (folder / "events.parquet").unlink()
    (folder / "events.parquet").mkdir()
    return ["events.parquet: is a folder, not a file; expected the 'events' table as one file"]


KINDS = [missing_file, empty_file, wrong_delimiter, missing_column, misnamed_column, wrong_type_csv_dates,
         wrong_type_parquet, bad_encoding, truncated_parquet, mapping_is_a_list, mapping_sends_two_columns_to_one_header,
         table_is_a_folder]


# The first kinds, and the corpus of tests/pipeline/malformed_corpus.py (mapping file, files, shapes, feeds).
ALL_KINDS = KINDS + [case for case in CORPUS if case.__name__ not in {k.__name__ for k in KINDS}]


@pytest.mark.parametrize("make_malformed", ALL_KINDS, ids=[k.__name__ for k in ALL_KINDS])
def test_malformed_input_is_refused_with_a_clear_message_and_nothing_published(make_malformed, september, warehouse):
    folder = september / "2026-09"
    patient_ids = _patients(folder)["patient_id"].head(50).to_list()
    expected = make_malformed(folder)
    before = published_state(warehouse)
    code, output = core20_in_process("run", "--extract", str(september), "--month", "2026-09", "--warehouse", str(warehouse))
    assert code == 1, output
    assert "2026-09 NOT published (the previously published tables are unchanged)" in output
    for phrase in expected:
        assert phrase in output, (phrase, output)
    assert "Traceback" not in output and "Error:" not in output.replace("ExtractError", ""), output
    assert not any(raw in output for raw in ("InvalidOperationError", "IsADirectoryError", "AttributeError", "TypeError",
                                             "KeyError", "ComputeError", "Errno")), output
    assert published_state(warehouse) == before
    assert not any(pid in output for pid in patient_ids)


def test_a_missing_month_folder_is_named(september, warehouse):
    before = published_state(warehouse)
    code, output = core20_in_process("run", "--extract", str(september), "--month", "2026-08", "--warehouse", str(warehouse))
    assert code == 1
    assert f"no extract for 2026-08: expected a folder {september / '2026-08'} holding patients and events files" in output
    assert published_state(warehouse) == before


def test_the_dagster_ui_shows_the_same_message_as_the_step_failure(september, warehouse):
    folder = september / "2026-09"
    wrong_delimiter(folder)
    _, cli_output = core20_in_process("run", "--extract", str(september), "--month", "2026-09", "--warehouse", str(warehouse))
    defs = build_definitions(warehouse=str(warehouse), extracts=str(september))
    result = defs.resolve_job_def(MONTHLY_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key="2026-09-01", raise_on_error=False, run_config=QUIET_LOGS,
    )
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["staging_extract"]
    shown = failures[0].event_specific_data.user_failure_data
    assert shown.description in cli_output
    assert shown.description.startswith(f"{folder / 'patients.csv'}: line 1 (the header)")
    assert {k: v.value for k, v in shown.metadata.items()} == {"file": "patients.csv", "line": 1}
    materialised = {e.asset_key.path[0] for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert not materialised & {"staging", "population", "cohorts", "published"}  # nothing downstream of the extract ran
