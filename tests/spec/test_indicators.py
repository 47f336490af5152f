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
    "systolic_blood_pressure_qof": frozenset({"SYS", "HOME_SYS", "MAX_SYS"}),
    "diastolic_blood_pressure_qof": frozenset({"DIA", "ABPM_DIA"}),
    # The parts of the QOF lists the BP reading rule reads (reference_data/manifest.yaml):
    # clinic readings, and home / daytime-ambulatory averages; MAX_SYS stands for the
    # minimum / maximum / night / 24-hour codes that are in neither part.
    "bp_systolic_clinic": frozenset({"SYS"}),
    "bp_diastolic_clinic": frozenset({"DIA"}),
    "bp_systolic_out_of_office": frozenset({"HOME_SYS"}),
    "bp_diastolic_out_of_office": frozenset({"ABPM_DIA"}),
    "homebp_diastolic_average": frozenset({"HOME_DIA"}),
    "cholesterol_tests": frozenset({"CHOL"}),
    "hba1c_tests": frozenset({"HBA1C"}),
    "ifcchbam_cod": frozenset({"HBA1C_IFCC"}),
    "lsmok_cod": frozenset({"SMOKER"}),
    "exsmok_cod": frozenset({"EX_SMOKER"}),
    "bmival_cod": frozenset({"BMI"}), "bmiobese_cod": frozenset({"OBESE"}), "bmi_stage": frozenset({"BMI_STAGE"}),
    "weight_snomed": frozenset({"WEIGHT"}), "alcohol_consumption_gmsde": frozenset({"ALCOHOL"}),
    "smoking_never": frozenset({"NEVER_SMOKED", "NON_SMOKER"}), "smoking_ex": frozenset({"EX_SMOKER", "STOPPED_SMOKING"}),
    "smoking_current": frozenset({"SMOKER", "CURRENT_SMOKER_REVIEW"}), "lithium": frozenset({"LITHIUM"}),
    "ld_cod_20241205": frozenset({"LD", "LD_2024"}),
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
    for code in ("BP", "CHOL", "HBA1C", "SMOKER", "BMI", "ALCOHOL"):
        if code == "BP" and skip != "BP":  # a BP reading is a valid same-day pair
            rows += [f"{patient_id} | SYS | {day} | 120", f"{patient_id} | DIA | {day} | 80"]
        elif code == "BMI" and skip != "BMI":
            rows.append(f"{patient_id} | BMI | {day} | 27.5")
        elif code != skip:
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
        missing_bmi       | 1980-01-01
        missing_alcohol   | 1980-01-01
        lithium_only      | 1980-01-01
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
                smi_events("missing_bmi", "2024-10-10", skip="BMI"),
                smi_events("missing_alcohol", "2024-10-10", skip="ALCOHOL"),
                # On the SMI register through lithium in the last 6 months alone (QOF MH).
                smi_events("lithium_only", "2024-10-10").replace("lithium_only | SMI_DX | 2015-01-01 |",
                                                                 "lithium_only | LITHIUM | 2025-01-15 |"),
                """
                ifcc_and_sys_only | SMI_DX     | 2015-01-01 |
                ifcc_and_sys_only | SYS        | 2024-06-01 | 120
                ifcc_and_sys_only | DIA        | 2024-06-01 | 80
                ifcc_and_sys_only | CHOL       | 2024-06-01 |
                ifcc_and_sys_only | HBA1C_IFCC | 2024-06-01 | 40
                ifcc_and_sys_only | NEVER_SMOKED | 2024-06-01 |
                ifcc_and_sys_only | WEIGHT     | 2024-06-01 | 70
                ifcc_and_sys_only | ALCOHOL    | 2024-06-01 |
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
        lithium_only      | true
        missing_alcohol   | false
        missing_bmi       | false
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


def test_hypertension_treated_to_target_valid_same_day_pair(defs):
    # CVDPREVENT's rule: the latest day with a valid same-day systolic + diastolic pair
    # decides; on that day the lowest systolic and the lowest diastolic; systolic < 50 or
    # diastolic < 20 is ignored. Under 80: at or below 140/90; 80+ (age at R): 150/90.
    # Home / daytime-ambulatory averages: 5 mmHg lower (135/85, 145/85 at 80+), paired only
    # with their own kind. R = 2025-03-31; every patient is on the register.
    patients = table(
        """
        patient_id               | date_of_birth
        exactly_140_90           | 1960-01-01
        sys_141                  | 1960-01-01
        dia_91                   | 1960-01-01
        two_readings_a_day       | 1960-01-01
        lowest_of_each_that_day  | 1960-01-01
        different_day_readings   | 1960-01-01
        older_low_newer_high     | 1960-01-01
        invalid_sys_later        | 1960-01-01
        invalid_dia_later        | 1960-01-01
        invalid_only             | 1960-01-01
        invalid_beside_valid     | 1960-01-01
        at_validity_floor        | 1960-01-01
        home_137_84              | 1960-01-01
        home_135_85              | 1960-01-01
        ambulatory_134_80        | 1960-01-01
        home_sys_clinic_dia      | 1960-01-01
        home_and_clinic_same_day | 1960-01-01
        maximum_is_no_reading    | 1960-01-01
        aged_79_at_month_end     | 1945-04-01
        aged_80_at_month_end     | 1945-03-31
        aged_80_151              | 1945-03-31
        aged_80_home_146_84      | 1945-03-31
        aged_80_home_145_85      | 1945-03-31
        no_reading               | 1960-01-01
        reading_too_old          | 1960-01-01
        reading_after_R          | 1960-01-01
        no_value                 | 1960-01-01
        """,
        PATIENT_SCHEMA,
    )
    events = table(
        """
        patient_id               | code     | event_date | value
        exactly_140_90           | SYS      | 2025-01-10 | 140
        exactly_140_90           | DIA      | 2025-01-10 | 90
        sys_141                  | SYS      | 2025-01-10 | 141
        sys_141                  | DIA      | 2025-01-10 | 80
        dia_91                   | SYS      | 2025-01-10 | 120
        dia_91                   | DIA      | 2025-01-10 | 91
        two_readings_a_day       | SYS      | 2025-01-10 | 162
        two_readings_a_day       | DIA      | 2025-01-10 | 95
        two_readings_a_day       | SYS      | 2025-01-10 | 138
        two_readings_a_day       | DIA      | 2025-01-10 | 88
        lowest_of_each_that_day  | SYS      | 2025-01-10 | 150
        lowest_of_each_that_day  | DIA      | 2025-01-10 | 70
        lowest_of_each_that_day  | SYS      | 2025-01-10 | 130
        lowest_of_each_that_day  | DIA      | 2025-01-10 | 95
        different_day_readings   | SYS      | 2024-12-01 | 150
        different_day_readings   | DIA      | 2024-12-01 | 85
        different_day_readings   | SYS      | 2025-02-01 | 130
        different_day_readings   | DIA      | 2025-02-02 | 80
        older_low_newer_high     | SYS      | 2024-06-01 | 120
        older_low_newer_high     | DIA      | 2024-06-01 | 70
        older_low_newer_high     | SYS      | 2025-02-01 | 145
        older_low_newer_high     | DIA      | 2025-02-01 | 85
        invalid_sys_later        | SYS      | 2024-10-01 | 150
        invalid_sys_later        | DIA      | 2024-10-01 | 95
        invalid_sys_later        | SYS      | 2025-02-01 | 49
        invalid_sys_later        | DIA      | 2025-02-01 | 70
        invalid_dia_later        | SYS      | 2024-10-01 | 150
        invalid_dia_later        | DIA      | 2024-10-01 | 95
        invalid_dia_later        | SYS      | 2025-02-01 | 120
        invalid_dia_later        | DIA      | 2025-02-01 | 19
        invalid_only             | SYS      | 2025-02-01 | 40
        invalid_only             | DIA      | 2025-02-01 | 10
        invalid_beside_valid     | SYS      | 2025-02-01 | 45
        invalid_beside_valid     | SYS      | 2025-02-01 | 139
        invalid_beside_valid     | DIA      | 2025-02-01 | 89
        at_validity_floor        | SYS      | 2025-02-01 | 50
        at_validity_floor        | DIA      | 2025-02-01 | 20
        home_137_84              | HOME_SYS | 2025-02-01 | 137
        home_137_84              | HOME_DIA | 2025-02-01 | 84
        home_135_85              | HOME_SYS | 2025-02-01 | 135
        home_135_85              | HOME_DIA | 2025-02-01 | 85
        ambulatory_134_80        | HOME_SYS | 2025-02-01 | 134
        ambulatory_134_80        | ABPM_DIA | 2025-02-01 | 80
        home_sys_clinic_dia      | HOME_SYS | 2025-02-01 | 130
        home_sys_clinic_dia      | DIA      | 2025-02-01 | 80
        home_and_clinic_same_day | SYS      | 2025-02-01 | 138
        home_and_clinic_same_day | DIA      | 2025-02-01 | 88
        home_and_clinic_same_day | HOME_SYS | 2025-02-01 | 137
        home_and_clinic_same_day | HOME_DIA | 2025-02-01 | 84
        maximum_is_no_reading    | SYS      | 2024-12-01 | 130
        maximum_is_no_reading    | DIA      | 2024-12-01 | 80
        maximum_is_no_reading    | MAX_SYS  | 2025-02-01 | 180
        maximum_is_no_reading    | DIA      | 2025-02-01 | 95
        aged_79_at_month_end     | SYS      | 2025-01-10 | 145
        aged_79_at_month_end     | DIA      | 2025-01-10 | 85
        aged_80_at_month_end     | SYS      | 2025-01-10 | 145
        aged_80_at_month_end     | DIA      | 2025-01-10 | 85
        aged_80_151              | SYS      | 2025-01-10 | 151
        aged_80_151              | DIA      | 2025-01-10 | 85
        aged_80_home_146_84      | HOME_SYS | 2025-01-10 | 146
        aged_80_home_146_84      | HOME_DIA | 2025-01-10 | 84
        aged_80_home_145_85      | HOME_SYS | 2025-01-10 | 145
        aged_80_home_145_85      | HOME_DIA | 2025-01-10 | 85
        reading_too_old          | SYS      | 2024-03-31 | 120
        reading_too_old          | DIA      | 2024-03-31 | 70
        reading_after_R          | SYS      | 2025-04-01 | 120
        reading_after_R          | DIA      | 2025-04-01 | 70
        reading_after_R          | SYS      | 2024-05-01 | 160
        reading_after_R          | DIA      | 2024-05-01 | 95
        no_value                 | SYS      | 2025-01-10 |
        no_value                 | DIA      | 2025-01-10 |
        """,
        EVENT_SCHEMA,
    )
    on_register = pl.DataFrame(
        {"patient_id": patients["patient_id"], "code": "HYP", "event_date": date(2010, 1, 1), "value": None},
        schema=EVENT_SCHEMA,
    )
    expected = table(
        """
        patient_id               | is_numerator
        aged_79_at_month_end     | false
        aged_80_151              | false
        aged_80_at_month_end     | true
        aged_80_home_145_85      | true
        aged_80_home_146_84      | false
        ambulatory_134_80        | true
        at_validity_floor        | true
        dia_91                   | false
        different_day_readings   | false
        exactly_140_90           | true
        home_135_85              | true
        home_137_84              | false
        home_and_clinic_same_day | true
        home_sys_clinic_dia      | false
        invalid_beside_valid     | true
        invalid_dia_later        | false
        invalid_only             | false
        invalid_sys_later        | false
        lowest_of_each_that_day  | true
        maximum_is_no_reading    | true
        no_reading               | false
        no_value                 | false
        older_low_newer_high     | false
        reading_after_R          | false
        reading_too_old          | false
        sys_141                  | false
        two_readings_a_day       | true
        """,
        RESULT_SCHEMA,
    )
    result = run(defs, "hypertension_treated_to_target", patients, pl.concat([on_register, events]))
    assert_frame_equal(result, expected)


def test_bp_case_finding_counts_a_valid_pair_in_five_years(defs):
    # The same reading rule: a same-day valid pair of one kind, home readings included; a
    # lone systolic, a BP_COD code without values, an invalid pair or a maximum are not readings.
    patients = table(
        """
        patient_id           | date_of_birth
        clinic_pair          | 1970-01-01
        home_pair            | 1970-01-01
        first_day_of_window  | 1970-01-01
        day_before_window    | 1970-01-01
        lone_systolic        | 1970-01-01
        bp_code_no_values    | 1970-01-01
        invalid_pair         | 1970-01-01
        maximum_only         | 1970-01-01
        on_register          | 1970-01-01
        aged_39              | 1985-04-01
        """,
        PATIENT_SCHEMA,
    )
    events = table(
        """
        patient_id          | code     | event_date | value
        clinic_pair         | SYS      | 2023-06-01 | 150
        clinic_pair         | DIA      | 2023-06-01 | 95
        home_pair           | HOME_SYS | 2022-06-01 | 128
        home_pair           | HOME_DIA | 2022-06-01 | 80
        first_day_of_window | SYS      | 2020-04-01 | 120
        first_day_of_window | DIA      | 2020-04-01 | 80
        day_before_window   | SYS      | 2020-03-31 | 120
        day_before_window   | DIA      | 2020-03-31 | 80
        lone_systolic       | SYS      | 2024-06-01 | 120
        bp_code_no_values   | BP       | 2024-06-01 |
        invalid_pair        | SYS      | 2024-06-01 | 12
        invalid_pair        | DIA      | 2024-06-01 | 8
        maximum_only        | MAX_SYS  | 2024-06-01 | 160
        maximum_only        | DIA      | 2024-06-01 | 90
        on_register         | HYP      | 2010-01-01 |
        on_register         | SYS      | 2024-06-01 | 120
        on_register         | DIA      | 2024-06-01 | 80
        aged_39             | SYS      | 2024-06-01 | 120
        aged_39             | DIA      | 2024-06-01 | 80
        """,
        EVENT_SCHEMA,
    )
    expected = table(
        """
        patient_id          | is_numerator
        bp_code_no_values   | false
        clinic_pair         | true
        day_before_window   | false
        first_day_of_window | true
        home_pair           | true
        invalid_pair        | false
        lone_systolic       | false
        maximum_only        | false
        """,
        RESULT_SCHEMA,
    )
    assert_frame_equal(run(defs, "bp_case_finding", patients, events), expected)


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
    assert "all six components" in smi["title"] and "pulse not checked" in smi["title"]
    assert smi["target"] == pytest.approx(0.60)
    assert [c.split(":")[0] for c in smi["unavailable_components"]] == ["pulse"]
    # "upper bound" / "lower bound" are claims: the SMI check is neither, and says so.
    assert "upper bound" not in smi["title"].lower()
    assert "neither an upper nor a lower bound" in defs.indicators["smi_health_check"].description
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


# Issue 14 point 9: every indicator whose rule changed names its national source and lists
# its deviations in its own description; "upper bound" / "lower bound" are claims, and no
# description makes one (the SMI check says it is neither).
CHANGED_IN_ISSUE_14 = {
    "hypertension_treated_to_target": "CVDPREVENT",
    "bp_case_finding": "NICE NG136",
    "smi_health_check": "NHS England",
    "smi_hc_blood_pressure": "NHS England",
    "smi_hc_smoking": "NHS England",
    "smi_hc_bmi": "NHS England",
    "smi_hc_alcohol": "NHS England",
    "smoking_status_recorded": "QOF SMOK002",
    "cyp_diabetes_care_processes": "NICE indicator IND48",
    "cyp_epilepsy_review": "Core20PLUS5 CYP",
}


@pytest.mark.parametrize(("indicator_id", "national_source"), sorted(CHANGED_IN_ISSUE_14.items()))
def test_a_changed_indicator_names_its_source_and_its_deviations(defs, indicator_id, national_source):
    definition = defs.indicators[indicator_id]
    assert national_source in definition.source
    text = " ".join(definition.description.split())
    if indicator_id not in ("smi_hc_smoking", "smi_hc_bmi", "smi_hc_alcohol"):
        assert "Deviation" in text, indicator_id
    else:  # a component: what the collection accepts that this does not is named instead
        assert any(word in text for word in ("do not count", "has no shared codelist", "state no status")), indicator_id
    assert definition.version >= (1 if indicator_id == "cyp_epilepsy_review" else 2)  # new in issue 14


def test_no_title_or_description_claims_a_bound(defs):
    for kind in ("register", "cohort", "indicator"):
        for definition_id, definition in defs.store(kind).items():
            for text in (definition.title, " ".join(definition.description.split())):
                lowered = text.lower().replace("neither an upper nor a lower bound", "")
                assert "upper bound" not in lowered and "lower bound" not in lowered, (kind, definition_id)
