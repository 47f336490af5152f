"""Great Expectations gates: loud on mistakes in a suite, silent about patient values."""

import datetime as dt
import json

import polars as pl
import pytest

from pipelines import gates
from pipelines.gates import SuiteError, gx_raw_results, load_suite, run_suite, validate
from pipelines.quality import gate_outcome

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
SECRETS = ("secret-id", "Q", "bad", "2030", "-4", "1980", "1990")

# Every placeholder a shipped suite uses, with a value of the right kind.
PARAMS = {
    "reference_date": dt.date(2026, 10, 31), "unpublishable_counts": [1, 2], "sex_codes": ["M", "F", "I", "U"],
    "systolic_codes": ["271649006"], "diastolic_codes": ["271650006"],
    "qrisk_codes": ["1085871000000105"], "match_methods": ["postcode_lookup"],
}

CHECKS = [
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "patient_id"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "practice_code", "regex": "^[A-Z][0-9A-Z][0-9]{4}$"}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "sex", "value_set": ["M", "F", "I", "U"]}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 0, "max_value": 115}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "date_of_birth", "max_value": "$reference_date"}},
]


def suite_file(tmp_path, expectations, **top):
    path = tmp_path / "s.json"
    expectations = [{"meta": {"why": "a reason"}, **e} for e in expectations]
    path.write_text(json.dumps({"name": "s", **top, "expectations": expectations}))
    return path


def test_every_shipped_suite_loads_with_gx_models_and_says_why():
    paths = sorted(gates.EXPECTATIONS_DIR.glob("*.json"))
    assert {p.stem for p in paths} >= {"staging.patients", "staging.events", "population.patient_deprivation",
                                       "cohorts.register_membership", "audit.gap_table", "audit.indicator_catalogue"}
    for path in paths:
        suite = load_suite(path, PARAMS)
        assert len(suite.expectations) == len(json.loads(path.read_text())["expectations"])
        assert all(e.why for e in suite.expectations)


def test_misspelled_expectation_type_fails_loudly(tmp_path):
    path = suite_file(tmp_path, [{"type": "expect_column_values_to_not_be_nul", "kwargs": {"column": "x"}}])
    with pytest.raises(SuiteError, match=r"s.json: expectation #1: unknown expectation type 'expect_column_values_to_not_be_nul'"):
        load_suite(path)


def test_misspelled_argument_fails_loudly(tmp_path):
    path = suite_file(tmp_path, [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "sex", "value_sett": ["M"]}}])
    with pytest.raises(SuiteError, match=r"expectation #1 \(expect_column_values_to_be_in_set\): invalid arguments"):
        load_suite(path)


def test_misspelled_meta_key_or_missing_reason_fails_loudly(tmp_path):
    path = suite_file(tmp_path, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"},
                                  "meta": {"why": "w", "quarantin": "x_missing"}}])
    with pytest.raises(SuiteError, match=r"meta must say 'why' \(and may name a 'quarantine' rule\); found \['quarantin', 'why'\]"):
        load_suite(path)
    path = suite_file(tmp_path, [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "meta": {}}])
    with pytest.raises(SuiteError, match=r"meta must say 'why'"):
        load_suite(path)


def test_unknown_parameter_fails(tmp_path):
    path = suite_file(tmp_path, [{"type": "expect_column_max_to_be_between", "kwargs": {"column": "age", "max_value": "$nope"}}])
    with pytest.raises(SuiteError, match=r"parameter '\$nope' is not supplied"):
        load_suite(path, {})


def test_polars_engine_refuses_what_it_cannot_evaluate_exactly(tmp_path):
    path = suite_file(tmp_path, [{"type": "expect_column_mean_to_be_between", "kwargs": {"column": "age", "min_value": 1}}],
                      engine="polars")
    with pytest.raises(SuiteError, match=r"expect_column_mean_to_be_between is not supported by the polars engine"):
        load_suite(path)
    path = suite_file(tmp_path, [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1},
                                  "meta": {"why": "w", "quarantine": "rows"}}])
    with pytest.raises(SuiteError, match=r"a table-level expectation cannot quarantine rows"):
        load_suite(path)


@pytest.mark.parametrize("engine", ["great_expectations", "polars"])
def test_both_engines_fail_bad_rows_and_report_counts_only(tmp_path, engine):
    suite = load_suite(suite_file(tmp_path, CHECKS, engine=engine), PARAMS)
    result = validate(PATIENTS, suite)
    assert not result.success and result.engine == engine
    failed = {(o.expectation, o.column): o.counts["unexpected_count"] for o in result.failures}
    assert failed == {
        ("expect_column_values_to_be_unique", "patient_id"): 2,
        ("expect_column_values_to_match_regex", "practice_code"): 1,
        ("expect_column_values_to_be_in_set", "sex"): 1,
        ("expect_column_values_to_be_between", "age"): 1,
        ("expect_column_values_to_be_between", "date_of_birth"): 1,
    }
    # Everything a result carries is a count or share: no value from the frame survives.
    text = result.summary() + json.dumps(gate_outcome(result).metadata()) + repr(result.outcomes)
    for secret in SECRETS:
        assert secret not in text.replace("Q)", "")


def test_gx_is_asked_for_results_without_any_row_value(tmp_path):
    suite = load_suite(suite_file(tmp_path, CHECKS), PARAMS)
    raw = json.dumps(gx_raw_results(PATIENTS, suite).to_json_dict(), default=str)
    assert '"unexpected_count": 2' in raw  # the results are there ...
    for secret in ("secret-id", '"Q"', '"bad"', "2030-01-01", "1980-05-17"):  # ... but no value of any row
        assert secret not in raw


def test_shipped_staging_suite_quarantine_rules_and_invariants_split_as_declared():
    suite = load_suite(gates.suite_path("staging.patients"), PARAMS)
    rules = [rule.name for rule in suite.row_rules()]
    assert rules == ["patient_id_duplicated", "practice_code_malformed", "sex_code_unknown", "date_of_birth_missing",
                     "date_of_birth_implausible", "registration_ends_before_start"]
    invariants = suite.without_quarantine_rules()
    assert invariants.engine == "polars" and not invariants.quarantine_rules()
    good = PATIENTS.head(2).with_columns(pl.Series("patient_id", ["a", "b"]))
    assert validate(good, invariants).success
    assert not validate(PATIENTS, invariants).success  # the duplicated id


def test_run_suite_measures_its_own_time_and_a_missing_column_fails_its_expectation():
    good = PATIENTS.head(2).with_columns(pl.Series("patient_id", ["a", "b"]))
    result = run_suite(good.with_columns(registration_end_date=pl.lit(None, pl.Date)), "staging.patients", PARAMS)
    assert result.success, result.summary()
    assert result.seconds > 0
    result = run_suite(good, "staging.patients", PARAMS)
    assert [(o.column, o.why) for o in result.failures] == [
        ("registration_end_date,registration_start_date", "the table has no column(s) ['registration_end_date']")]
