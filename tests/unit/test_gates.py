"""Great Expectations gates: loud on mistakes in a suite, silent about patient values."""

import datetime as dt
import json

import polars as pl
import pytest

from pipelines import gates
from pipelines.gates import SuiteError, load_suite, run_suite

PATIENTS = pl.DataFrame(
    {
        "patient_id": ["secret-id-1", "secret-id-2", "secret-id-2"],
        "practice_code": ["C84001", "C84001", "bad"],
        "sex": ["F", "M", "Q"],
        "postcode_status": ["valid", "valid", "blank"],
        "date_of_birth": [dt.date(1980, 5, 17), dt.date(1990, 1, 2), dt.date(2030, 1, 1)],
        "age": [46, 36, -4],
        "registration_start_date": [dt.date(2010, 1, 1)] * 3,
    }
)


def suite_file(tmp_path, expectations, **top):
    path = tmp_path / "s.json"
    expectations = [{"meta": {"why": "a reason"}, **e} for e in expectations]
    path.write_text(json.dumps({"name": "s", **top, "expectations": expectations}))
    return path


def test_shipped_suites_load():
    for path in sorted(gates.EXPECTATIONS_DIR.glob("*.json")):
        suite = load_suite(path, {"reference_date": dt.date(2026, 10, 31), "unpublishable_counts": [1, 2]})
        assert len(suite.expectations) == len(json.loads(path.read_text())["expectations"])


def test_misspelled_expectation_type_fails_loudly(tmp_path):
    path = suite_file(tmp_path, [{"type": "expect_column_values_to_not_be_nul", "kwargs": {"column": "x"}}])
    with pytest.raises(SuiteError, match=r"s.json: expectation #1: unknown expectation type 'expect_column_values_to_not_be_nul'"):
        load_suite(path)


def test_misspelled_argument_fails_loudly(tmp_path):
    path = suite_file(tmp_path, [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "sex", "value_sett": ["M"]}}])
    with pytest.raises(SuiteError, match=r"expectation #1 \(expect_column_values_to_be_in_set\): invalid arguments"):
        load_suite(path)


def test_unknown_parameter_fails(tmp_path):
    path = suite_file(tmp_path, [{"type": "expect_column_max_to_be_between", "kwargs": {"column": "age", "max_value": "$nope"}}])
    with pytest.raises(SuiteError, match=r"parameter '\$nope' is not supplied"):
        load_suite(path, {})


def test_staging_suite_fails_bad_rows_and_reports_counts_only():
    result = run_suite(PATIENTS, "staging.patients", {"reference_date": dt.date(2026, 10, 31)})
    assert not result.success
    failed = {(o.expectation, o.column) for o in result.failures}
    assert ("expect_column_values_to_be_unique", "patient_id") in failed
    assert ("expect_column_values_to_be_in_set", "sex") in failed
    assert ("expect_column_values_to_match_regex", "practice_code") in failed
    assert ("expect_column_values_to_be_between", "age") in failed
    # Everything a result carries is a count or share: no value from the frame survives.
    text = result.summary() + json.dumps(result.metadata()) + repr(result.outcomes)
    for secret in ("secret-id", "Q", "bad", "2030", "-4"):
        assert secret not in text.replace("Q)", "")


def test_staging_suite_passes_good_rows():
    good = PATIENTS.head(2).with_columns(pl.Series("patient_id", ["a", "b"]))
    result = run_suite(good, "staging.patients", {"reference_date": dt.date(2026, 10, 31)})
    assert result.success, result.summary()
