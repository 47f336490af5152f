"""Spec: the shipped indicators, window edges and age boundaries, as literal tables.

R = 2025-03-31, so "within 12 months" is 2024-04-01 .. 2025-03-31 inclusive. Codes are
made-up readable strings in small codelists built here.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.segmentation.cohorts import evaluate_indicators, indicator_catalogue, window_start
from pipelines.segmentation.definitions import load_definitions, parse_definitions, DEFINITIONS_DIR

R = date(2025, 3, 31)

CODELISTS = {
    "mh_cod": frozenset({"SMI_DX"}),
    "smhres": frozenset({"SMI_RES"}),
    "hyp_cod": frozenset({"HYP"}),
    "hypres_cod": frozenset({"HYP_RES"}),
    "bp_cod": frozenset({"BP"}),
    "systolic_blood_pressure_qof": frozenset({"SYS"}),
    "diastolic_blood_pressure_qof": frozenset({"DIA"}),
    "cholesterol_tests": frozenset({"CHOL"}),
    "hba1c_tests": frozenset({"HBA1C"}),
    "ifcchbam_cod": frozenset({"HBA1C_IFCC"}),
    "lsmok_cod": frozenset({"SMOKER"}),
    "exsmok_cod": frozenset({"EX_SMOKER"}),
}

PATIENT_SCHEMA = {"patient_id": pl.String, "date_of_birth": pl.Date}
EVENT_SCHEMA = {"patient_id": pl.String, "code": pl.String, "event_date": pl.Date, "value": pl.Float64}
RESULT_SCHEMA = {"patient_id": pl.String, "is_numerator": pl.Boolean}


def table(text: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Return a frame from a literal '|' table; blank cells are nulls, dates are ISO."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("|")]
    rows = [[cell.strip() or None for cell in line.split("|")] for line in lines[1:]]
    raw = pl.DataFrame(rows, schema={h: pl.String for h in header}, orient="row")
    return raw.select(
        pl.col(name).str.to_date()
        if dtype == pl.Date
        else (pl.col(name) == "true")
        if dtype == pl.Boolean
        else pl.col(name).cast(dtype)
        for name, dtype in schema.items()
    )


@pytest.fixture(scope="module")
def defs():
    return load_definitions()


def run(defs, indicator_id: str, patients: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    result = evaluate_indicators(
        defs, patients.lazy(), events.lazy(), pl.LazyFrame(), CODELISTS, R, indicator_ids=[indicator_id]
    ).collect()
    assert set(result["indicator_id"]) <= {indicator_id}
    return result.select("patient_id", "is_numerator").sort("patient_id")


@pytest.mark.parametrize(
    ("reference_date", "months", "first_day"),
    [
        (date(2025, 3, 31), 12, date(2024, 4, 1)),
        (date(2024, 2, 29), 12, date(2023, 3, 1)),  # leap-day R: Feb 28 + 1 day
        (date(2025, 2, 28), 12, date(2024, 2, 29)),
        (date(2025, 3, 31), 1, date(2025, 3, 1)),
        (date(2025, 4, 30), 2, date(2025, 3, 1)),
        (date(2025, 3, 31), 60, date(2020, 4, 1)),
    ],
)
def test_window_is_r_minus_n_months_plus_one_day(reference_date, months, first_day):
    assert window_start(reference_date, months) == first_day


def smi_events(patient_id: str, day: str, skip: str = "") -> str:
    """Return literal event rows for an SMI patient with every available component on `day`."""
    rows = [f"{patient_id} | SMI_DX | 2015-01-01 |"]
    for code in ("BP", "CHOL", "HBA1C", "SMOKER"):
        if code != skip:
            rows.append(f"{patient_id} | {code} | {day} |")
    return "\n".join(rows)


def test_smi_health_check_window_edges_and_components(defs):
    patients = table(
        """
        patient_id        | date_of_birth
        all_on_first_day  | 1980-01-01
        all_day_before    | 1980-01-01
        all_on_R          | 1980-01-01
        all_after_R       | 1980-01-01
        missing_lipids    | 1980-01-01
        ifcc_and_sys_only | 1980-01-01
        no_checks         | 1980-01-01
        """,
        PATIENT_SCHEMA,
    )
    events = table(
        "patient_id | code | event_date | value\n"
        + "\n".join(
            [
                smi_events("all_on_first_day", "2024-04-01"),
                smi_events("all_day_before", "2024-03-31"),
                smi_events("all_on_R", "2025-03-31"),
                smi_events("all_after_R", "2025-04-01"),
                smi_events("missing_lipids", "2024-10-10", skip="CHOL"),
                """
                ifcc_and_sys_only | SMI_DX     | 2015-01-01 |
                ifcc_and_sys_only | SYS        | 2024-06-01 | 120
                ifcc_and_sys_only | CHOL       | 2024-06-01 |
                ifcc_and_sys_only | HBA1C_IFCC | 2024-06-01 | 40
                ifcc_and_sys_only | EX_SMOKER  | 2024-06-01 |
                no_checks         | SMI_DX     | 2015-01-01 |
                """,
            ]
        ),
        EVENT_SCHEMA,
    )
    expected = table(
        """
        patient_id        | is_numerator
        all_after_R       | false
        all_day_before    | false
        all_on_R          | true
        all_on_first_day  | true
        ifcc_and_sys_only | true
        missing_lipids    | false
        no_checks         | false
        """,
        RESULT_SCHEMA,
    )
    assert_frame_equal(run(defs, "smi_health_check", patients, events), expected)


def test_smi_health_check_denominator_is_18_plus_on_r(defs):
    # Born 2007-03-31: 18 on R itself. Born 2007-04-01: still 17 on R.
    patients = table(
        """
        patient_id  | date_of_birth
        turns_18_R  | 2007-03-31
        still_17    | 2007-04-01
        not_smi     | 1980-01-01
        resolved    | 1980-01-01
        """,
        PATIENT_SCHEMA,
    )
    events = table(
        """
        patient_id | code    | event_date | value
        turns_18_R | SMI_DX  | 2024-01-01 |
        still_17   | SMI_DX  | 2024-01-01 |
        resolved   | SMI_DX  | 2020-01-01 |
        resolved   | SMI_RES | 2021-01-01 |
        """,
        EVENT_SCHEMA,
    )
    expected = table(
        """
        patient_id | is_numerator
        turns_18_R | false
        """,
        RESULT_SCHEMA,
    )
    assert_frame_equal(run(defs, "smi_health_check", patients, events), expected)


def test_hypertension_treated_to_target_latest_lowest_and_thresholds(defs):
    # Under 80: controlled at <= 140/90; 80+: <= 150/90. Latest reading = lowest value on
    # the latest date with a reading, systolic and diastolic separately.
    patients = table(
        """
        patient_id         | date_of_birth
        exactly_140_90     | 1960-01-01
        sys_141            | 1960-01-01
        dia_91             | 1960-01-01
        lowest_on_latest   | 1960-01-01
        older_low_newer_hi | 1960-01-01
        split_dates        | 1960-01-01
        no_reading         | 1960-01-01
        reading_too_old    | 1960-01-01
        reading_after_R    | 1960-01-01
        aged_79_145        | 1945-04-01
        aged_80_145        | 1945-03-31
        aged_80_151        | 1945-03-31
        no_value           | 1960-01-01
        """,
        PATIENT_SCHEMA,
    )
    events = table(
        """
        patient_id         | code | event_date | value
        exactly_140_90     | SYS  | 2025-01-10 | 140
        exactly_140_90     | DIA  | 2025-01-10 | 90
        sys_141            | SYS  | 2025-01-10 | 141
        sys_141            | DIA  | 2025-01-10 | 80
        dia_91             | SYS  | 2025-01-10 | 120
        dia_91             | DIA  | 2025-01-10 | 91
        lowest_on_latest   | SYS  | 2025-01-10 | 162
        lowest_on_latest   | SYS  | 2025-01-10 | 138
        lowest_on_latest   | DIA  | 2025-01-10 | 95
        lowest_on_latest   | DIA  | 2025-01-10 | 88
        older_low_newer_hi | SYS  | 2024-06-01 | 120
        older_low_newer_hi | DIA  | 2024-06-01 | 70
        older_low_newer_hi | SYS  | 2025-02-01 | 145
        older_low_newer_hi | DIA  | 2025-02-01 | 85
        split_dates        | SYS  | 2024-12-01 | 150
        split_dates        | SYS  | 2025-02-01 | 130
        split_dates        | DIA  | 2024-12-01 | 85
        reading_too_old    | SYS  | 2024-03-31 | 120
        reading_too_old    | DIA  | 2024-03-31 | 70
        reading_after_R    | SYS  | 2025-04-01 | 120
        reading_after_R    | DIA  | 2025-04-01 | 70
        reading_after_R    | SYS  | 2024-05-01 | 160
        reading_after_R    | DIA  | 2024-05-01 | 95
        aged_79_145        | SYS  | 2025-01-10 | 145
        aged_79_145        | DIA  | 2025-01-10 | 85
        aged_80_145        | SYS  | 2025-01-10 | 145
        aged_80_145        | DIA  | 2025-01-10 | 85
        aged_80_151        | SYS  | 2025-01-10 | 151
        aged_80_151        | DIA  | 2025-01-10 | 85
        no_value           | SYS  | 2025-01-10 |
        no_value           | DIA  | 2025-01-10 |
        """,
        EVENT_SCHEMA,
    )
    on_register = pl.DataFrame(
        {"patient_id": patients["patient_id"], "code": "HYP", "event_date": date(2010, 1, 1), "value": None},
        schema=EVENT_SCHEMA,
    )
    expected = table(
        """
        patient_id         | is_numerator
        aged_79_145        | false
        aged_80_145        | true
        aged_80_151        | false
        dia_91             | false
        exactly_140_90     | true
        lowest_on_latest   | true
        no_reading         | false
        no_value           | false
        older_low_newer_hi | false
        reading_after_R    | false
        reading_too_old    | false
        split_dates        | true
        sys_141            | false
        """,
        RESULT_SCHEMA,
    )
    result = run(defs, "hypertension_treated_to_target", patients, pl.concat([on_register, events]))
    assert_frame_equal(result, expected)


def test_numerator_only_counts_inside_the_denominator(defs):
    patients = table(
        """
        patient_id      | date_of_birth
        controlled_off  | 1960-01-01
        """,
        PATIENT_SCHEMA,
    )
    events = table(
        """
        patient_id     | code    | event_date | value
        controlled_off | HYP     | 2010-01-01 |
        controlled_off | HYP_RES | 2010-01-01 |
        controlled_off | SYS     | 2025-01-10 | 120
        controlled_off | DIA     | 2025-01-10 | 70
        """,
        EVENT_SCHEMA,
    )
    assert run(defs, "hypertension_treated_to_target", patients, events).height == 0


def test_catalogue_states_the_caveat_and_hash_tracks_the_rule(defs):
    catalogue = indicator_catalogue(defs)
    smi = catalogue.filter(pl.col("indicator_id") == "smi_health_check").row(0, named=True)
    assert "4 of the 6" in smi["title"]
    assert smi["target"] == pytest.approx(0.60)
    assert [c.split(":")[0] for c in smi["unavailable_components"]] == ["BMI or weight", "alcohol status"]
    hyp = catalogue.filter(pl.col("indicator_id") == "hypertension_treated_to_target").row(0, named=True)
    assert (hyp["direction"], hyp["target"]) == ("higher_is_better", pytest.approx(0.80))

    # Changing a register the indicator uses changes the indicator's hash; reformatting does not.
    texts = {p.name: p.read_text() for p in DEFINITIONS_DIR.glob("*.yaml")}
    reformatted = dict(texts, **{"registers.yaml": texts["registers.yaml"].replace("resolved: [hypres_cod]", "resolved:\n      - hypres_cod")})
    changed = dict(texts, **{"registers.yaml": texts["registers.yaml"].replace("resolved: [hypres_cod]", "resolved: [hypres_cod, bpdec_cod]")})
    assert reformatted != texts and changed != texts

    def hashes(t):
        return dict(indicator_catalogue(parse_definitions(t)).select("indicator_id", "definition_hash").iter_rows())

    assert hashes(reformatted) == hashes(texts)
    assert hashes(changed)["hypertension_treated_to_target"] != hashes(texts)["hypertension_treated_to_target"]
    assert hashes(changed)["smi_health_check"] == hashes(texts)["smi_health_check"]
