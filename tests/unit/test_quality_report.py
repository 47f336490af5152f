"""`core20 quality --month`: a check's result and its severity are never confused."""

import datetime as dt

import polars as pl

from pipelines import quality
from pipelines.quality import CheckOutcome, QualityRow


def test_the_month_report_writes_result_and_role_in_words():
    month = dt.date(2026, 10, 1)
    expectation = QualityRow("expectation", "expect_column_values_to_not_be_null", "patient_id", True, 0, 100, 0.0)
    failing = QualityRow("expectation", "expect_column_mean_to_be_between", "age", False, 1, 100, 0.01)
    frame = pl.concat([
        quality.outcome_frame(CheckOutcome(True, "", [expectation]), month, "staging/patients", "input_contract", "r"),
        quality.outcome_frame(CheckOutcome(False, "", [failing], severity="WARN"), month, "cohorts/x", "sanity", "r"),
        quality.outcome_frame(CheckOutcome(False, "", [failing]), month, "audit/gap_table", "gate", "r"),
    ])
    text = quality.report(frame, month)
    assert "staging/patients:input_contract passed [blocking gate]" in text
    assert "cohorts/x:sanity FAILED [warning only: publication not blocked]" in text
    assert "audit/gap_table:gate FAILED [blocking gate: publication blocked]" in text
    assert "(ERROR)" not in text and "(WARN)" not in text
