"""Spec: which extract rows are quarantined, under which rule, as literal tables.

Each test reads: rows of a supplier's file -> the shipped input-contract suites
(expectations/staging.*.json) and the contract's own rules -> the rows set aside with the
rule that caught each, and the rows staged. The blood-pressure codelists are stood in for
by one systolic and one diastolic code, the QRISK score codelist by two of its codes. The reporting month is October 2026 (R = 2026-10-31).
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from pipelines.gates import load_suite, suite_path, validate
from pipelines.quality import input_contract_outcome
from pipelines.segmentation.extract import read_extract, stage_extract

MONTH = dt.date(2026, 10, 1)
PARAMS = {"reference_date": dt.date(2026, 10, 31), "sex_codes": ["M", "F", "I", "U"],
          "systolic_codes": ["271649006"], "diastolic_codes": ["271650006"],
          "qrisk_codes": ["1085871000000105", "718087004"]}

HEADER = "patient_id,practice_code,postcode,date_of_birth,sex,registration_start_date,registration_end_date\n"

# row: (patient row, the rule expected to catch it, or None when it is staged)
PATIENT_ROWS = [
    ("ok1,C84001,NG7 2UH,1980-05-17,F,2010-01-01,", None),
    ("ok1,C84001,NG7 2UH,1980-05-17,F,2010-01-01,", "exact duplicate: dropped and counted, not quarantined"),
    ("twice,C84001,NG7 2UH,1970-01-01,M,2010-01-01,", "patient_id_duplicated"),
    ("twice,C84001,NG7 2UH,1971-01-01,M,2010-01-01,", "patient_id_duplicated"),
    (",C84001,NG7 2UH,1980-05-17,F,2010-01-01,", "patient_id_missing"),
    ("p_pc,C8400,NG7 2UH,1980-05-17,F,2010-01-01,", "practice_code_malformed"),
    ("p_pc2,c84 001,NG7 2UH,1980-05-17,F,2010-01-01,", None),  # case and spaces are normalised, not defects
    ("p_sex,C84001,NG7 2UH,1980-05-17,Q,2010-01-01,", "sex_code_unknown"),
    ("p_nodob,C84001,NG7 2UH,,F,2010-01-01,", "date_of_birth_missing"),
    ("p_old,C84001,NG7 2UH,1850-01-01,F,2010-01-01,", "date_of_birth_implausible"),
    ("p_unborn,C84001,NG7 2UH,2026-11-05,F,2010-01-01,", "date_of_birth_implausible"),
    ("p_text,C84001,NG7 2UH,17/05/1980,F,2010-01-01,", "date_of_birth_unreadable"),
    ("p_inv,C84001,NG7 2UH,1980-05-17,F,2010-01-01,2009-01-01", "registration_ends_before_start"),
    ("p_nostart,C84001,NG7 2UH,1980-05-17,F,,", "registration_start_date_missing"),
    ("p_left,C84001,NG7 2UH,1980-05-17,F,2010-01-01,2020-01-01", None),  # not registered: excluded, not a defect
    ("p_blankpc,C84001,,1980-05-17,M,2010-01-01,", None),  # a blank postcode is reported, not quarantined
]

EVENT_ROWS = [
    ("ok1,271649006,2026-10-01,130", None),
    ("ok1,271649006,2026-10-01,130", "exact duplicate: dropped and counted, not quarantined"),
    ("ok1,27164900X,2026-10-01,", "code_malformed"),
    ("ok1,12345,2026-10-01,", "code_malformed"),
    ("ok1,271649006,2026-11-01,130", "event_date_after_month_end"),
    ("ok1,271649006,1899-12-31,130", "event_date_before_1900"),
    ("ok1,271649006,2026-10-02,300", "systolic_bp_implausible"),
    ("ok1,271649006,2026-10-03,260", None),  # the bounds themselves are plausible
    ("ok1,271650006,2026-10-01,250", "diastolic_bp_implausible"),
    ("ok1,271650006,2026-10-04,", None),  # a reading without a value is not a BP-range defect
    ("ok1,1091811000000102,2026-05-01,999", None),  # not a BP code: no range applies
    (",271649006,2026-10-01,120", "patient_id_missing"),
    ("ok1,271649006,not a date,120", "event_date_unreadable"),
    ("ok1,271649006,2026-10-05,high", "value_unreadable"),
    ("ok1,1091811000000102,2026-10-06,NaN", "value_not_finite"),  # on any code: NaN is no measurement
    ("ok1,271649006,2026-10-06,inf", "value_not_finite"),  # the contract's rule comes before the BP range
    ("ok1,271649006,2026-10-07,1e400", "value_not_finite"),  # overflows to infinity when read
    ("ok1,1091811000000102,2026-10-08,-inf", "value_not_finite"),
    ("ok1,1085871000000105,2026-10-01,12.5", None),
    ("ok1,1085871000000105,2026-10-02,100", None),  # a risk of 100% is a risk
    ("ok1,1085871000000105,2026-10-03,140", "qrisk_score_out_of_range"),
    ("ok1,718087004,2026-10-04,-1", "qrisk_score_out_of_range"),
    ("p_left,271649006,2026-10-01,120", None),  # staged only if the patient is in the month's population
]


def _extract(tmp_path):
    folder = tmp_path / "extract"
    folder.mkdir()
    (folder / "patients.csv").write_text(HEADER + "\n".join(r for r, _ in PATIENT_ROWS) + "\n")
    (folder / "events.csv").write_text("patient_id,code,event_date,value\n" + "\n".join(r for r, _ in EVENT_ROWS) + "\n")
    return read_extract(folder)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    patient_suite = load_suite(suite_path("staging.patients"), PARAMS)
    event_suite = load_suite(suite_path("staging.events"), PARAMS)
    raw = _extract(tmp_path_factory.mktemp("q"))
    result = stage_extract(raw, MONTH, patient_rules=patient_suite.row_rules(), event_rules=event_suite.row_rules())
    return result, patient_suite, event_suite


def expected_quarantine(rows, table):
    return [(table, number, rule) for number, (_, rule) in enumerate(rows, start=1)
            if rule is not None and not rule.startswith("exact duplicate")]


def test_each_defective_patient_row_is_quarantined_under_its_rule(staged):
    result, _, _ = staged
    got = result.quarantine.filter(source_table="patients").select("source_table", "row_number", "rule").rows()
    assert got == expected_quarantine(PATIENT_ROWS, "patients")
    assert sorted(result.patients["patient_id"]) == ["ok1", "p_blankpc", "p_pc2"]
    assert result.counts["n_duplicate_patient_rows"] == 1
    assert result.counts["n_not_registered_at_month_end"] == 1


def test_each_defective_event_row_is_quarantined_under_its_rule(staged):
    result, _, _ = staged
    got = result.quarantine.filter(source_table="events").select("source_table", "row_number", "rule").rows()
    assert got == expected_quarantine(EVENT_ROWS, "events")
    kept = result.events.select("code", "event_date", "value").rows()
    assert kept == [
        ("271649006", dt.date(2026, 10, 1), 130.0),
        ("271649006", dt.date(2026, 10, 3), 260.0),
        ("271650006", dt.date(2026, 10, 4), None),
        ("1091811000000102", dt.date(2026, 5, 1), 999.0),
        ("1085871000000105", dt.date(2026, 10, 1), 12.5),
        ("1085871000000105", dt.date(2026, 10, 2), 100.0),
    ]
    assert result.counts["n_duplicate_event_rows"] == 1
    assert result.counts["n_events_not_in_population"] == 1


def test_quarantine_rows_name_file_row_and_column_and_keep_the_row_as_supplied(staged):
    result, _, _ = staged
    row = result.quarantine.filter(rule="date_of_birth_unreadable").row(0, named=True)
    assert (row["source_file"], row["column"], row["patient_id"]) == ("patients.csv", "date_of_birth", "p_text")
    assert '"date_of_birth":"17/05/1980"' in row["record"]


def test_the_gate_blocks_only_past_the_threshold(staged):
    result, patient_suite, _ = staged
    split = result.patient_split
    staged_gate = validate(result.patients, patient_suite.without_quarantine_rules())
    assert staged_gate.success, staged_gate.summary()
    n = split.quarantined.height
    assert n == 11 and split.n_rows == len(PATIENT_ROWS) - 1  # the exact repeat is not a row of its own
    at_limit = input_contract_outcome("patients", "patients.csv", split, staged_gate, threshold=n / split.n_rows)
    assert at_limit.passed
    above = input_contract_outcome("patients", "patients.csv", split, staged_gate, threshold=n / split.n_rows - 0.01)
    assert not above.passed
    assert "above the" in above.summary and "date_of_birth_implausible 2" in above.summary
    rows = {(r.kind, r.name): r for r in above.rows}
    assert rows[("quarantine_share", "patients")].passed is False
    assert rows[("quarantine_rule", "patient_id_duplicated")].n == 2


def test_without_suite_rules_the_contract_still_quarantines_unreadable_and_missing_values(tmp_path):
    result = stage_extract(_extract(tmp_path), MONTH)
    rules = set(result.quarantine["rule"])
    assert rules == {"patient_id_missing", "date_of_birth_unreadable", "registration_start_date_missing",
                     "event_date_unreadable", "value_unreadable", "value_not_finite"}
    assert pl.Series(result.events["event_date"]).max() <= dt.date(2026, 10, 31)
