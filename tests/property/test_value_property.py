"""Any number in an event's `value` is either a plausible measurement, kept as supplied, or
quarantined under the rule that names why — whatever the supplier sends, in either file type.

Random values (NaN, both infinities, huge and tiny numbers, negatives, the range bounds) on
systolic, diastolic, QRISK and other codes go through the real staging path: a CSV (values
read from text, where `1e400` overflows to infinity) and a typed Parquet file (checked in
DuckDB). The expected rule for each row is written out here from the contract and
expectations/staging.events.json, not computed by the project's own rules. Raise the number
of examples with CORE20_HYPOTHESIS_EXAMPLES (default 50).
"""

from __future__ import annotations

import datetime as dt
import math
import os

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.gates import load_suite, suite_path
from pipelines.segmentation.extract import read_extract, stage_extract

EXAMPLES = settings(
    max_examples=int(os.environ.get("CORE20_HYPOTHESIS_EXAMPLES", "50")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MONTH = dt.date(2026, 10, 1)
SYSTOLIC, DIASTOLIC, QRISK, OTHER = "271649006", "271650006", "1085871000000105", "1091811000000102"
PARAMS = {"reference_date": dt.date(2026, 10, 31), "sex_codes": ["M", "F", "I", "U"],
          "systolic_codes": [SYSTOLIC], "diastolic_codes": [DIASTOLIC], "qrisk_codes": [QRISK]}
PATIENTS = ("patient_id,practice_code,postcode,date_of_birth,sex,registration_start_date,registration_end_date\n"
            "p1,C84001,NG7 2UH,1960-05-17,F,2010-01-01,\n")

# The plausible range of each code's value (bounds included), from the shipped suite.
RANGES = {SYSTOLIC: (50, 260), DIASTOLIC: (0, 200), QRISK: (0, 100), OTHER: (-math.inf, math.inf)}
RULES = {SYSTOLIC: "systolic_bp_implausible", DIASTOLIC: "diastolic_bp_implausible", QRISK: "qrisk_score_out_of_range"}

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 49.999, 50.0, 100.0, 100.001, 200.0,
                     260.0, 260.5, 1e300, -1e-300]),
    st.none(),
)


def expected_rule(code: str, value: float | None) -> str | None:
    if value is None:
        return None  # a code without a value is no range defect
    if not math.isfinite(value):
        return "value_not_finite"
    low, high = RANGES[code]
    return None if low <= value <= high else RULES[code]


def _stage(folder):
    suite = load_suite(suite_path("staging.events"), PARAMS)
    return stage_extract(read_extract(folder), MONTH, event_rules=suite.row_rules())


@EXAMPLES
@given(rows=st.lists(st.tuples(st.sampled_from(list(RANGES)), values), min_size=1, max_size=12),
       as_parquet=st.booleans())
def test_every_value_is_kept_as_supplied_or_quarantined_under_its_rule(tmp_path_factory, rows, as_parquet):
    folder = tmp_path_factory.mktemp("values")
    (folder / "patients.csv").write_text(PATIENTS)
    # One event per day, so no two rows are exact repeats of each other.
    events = pl.DataFrame({"patient_id": ["p1"] * len(rows), "code": [c for c, _ in rows],
                           "event_date": [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(len(rows))],
                           "value": [v for _, v in rows]}, schema={"patient_id": pl.String, "code": pl.String,
                                                                     "event_date": pl.Date, "value": pl.Float64})
    if as_parquet:
        events.write_parquet(folder / "events.parquet")
    else:
        # Text as a supplier's export writes it: repr() gives 'nan', 'inf', '-inf' and exponents.
        text = ["patient_id,code,event_date,value"] + [
            f"p1,{code},{(dt.date(2026, 1, 1) + dt.timedelta(days=i)).isoformat()},{'' if v is None else repr(v)}"
            for i, (code, v) in enumerate(rows)]
        (folder / "events.csv").write_text("\n".join(text) + "\n")

    result = _stage(folder)

    expected = [(i + 1, expected_rule(code, v)) for i, (code, v) in enumerate(rows)]
    got = dict(result.quarantine.filter(source_table="events").select("row_number", "rule").iter_rows())
    assert got == {row: rule for row, rule in expected if rule is not None}
    kept = result.events.sort("event_date")["value"].to_list()
    want = [v for (code, v), (_, rule) in zip(rows, expected) if rule is None]
    assert kept == want  # the kept values are exactly as supplied (None stays None)
    assert all(v is None or math.isfinite(v) for v in kept)
