"""Spec: every rule of the indicator library and the PLUS cohorts, as literal tables.

Each test reads: input patients / events / feed rows -> the shipped definition (with the
shipped ICS parameters) -> expected rows. R = 2025-03-31, so "within 12 months" starts on
2024-04-01, "within 24 months" on 2023-04-01, "within 5 years" on 2020-04-01 and the
campaign current at R (campaign_from 09-01) on 2024-09-01. Codes are made-up readable
strings in small codelists built here, so the rule is tested, not the shared files.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from literal import table
from polars.testing import assert_frame_equal

from pipelines.segmentation.cohorts import evaluate_cohorts, evaluate_indicators, evaluate_registers
from pipelines.segmentation.definitions import load_definitions

R = date(2025, 3, 31)

CODELISTS = {
    "mh_cod": frozenset({"SMI_DX"}), "smhres": frozenset({"SMI_RES"}),
    "hyp_cod": frozenset({"HYP"}), "hypres_cod": frozenset({"HYP_RES"}),
    "dm_cod": frozenset({"DM"}), "dmres_cod": frozenset({"DM_RES"}),
    "dmtype1_cod": frozenset({"T1"}), "dmtype2_cod": frozenset({"T2"}),
    "copd_cod": frozenset({"COPD"}), "copdres_cod": frozenset({"COPD_RES"}),
    "ast_cod": frozenset({"AST"}), "astres_cod": frozenset({"AST_RES"}),
    "ld_cod": frozenset({"LD"}), "autism_cod": frozenset({"AUT"}),
    "epil_cod": frozenset({"EPI"}), "epilres_cod": frozenset({"EPI_RES"}),
    "bp_cod": frozenset({"BP"}), "systolic_blood_pressure_qof": frozenset({"SYS"}),
    "diastolic_blood_pressure_qof": frozenset({"DIA"}),
    "bp_systolic_clinic": frozenset({"SYS"}), "bp_diastolic_clinic": frozenset({"DIA"}),
    "bp_systolic_out_of_office": frozenset({"HOME_SYS"}), "bp_diastolic_out_of_office": frozenset({"ABPM_DIA"}),
    "homebp_diastolic_average": frozenset({"HOME_DIA"}),
    "cholesterol_tests": frozenset({"CHOL"}), "hba1c_tests": frozenset({"HBA1C"}), "ifcchbam_cod": frozenset({"HBA1C_IFCC"}),
    "lsmok_cod": frozenset({"SMOKER"}), "exsmok_cod": frozenset({"EX_SMOKER"}),
    "qriskscore_cod": frozenset({"QRISK"}), "statin_medication": frozenset({"STATIN"}),
    "flu_cod": frozenset({"FLU"}), "fludrug_cod": frozenset({"FLU_VACCINE"}),
    "pneumococcal_vaccination_gmsde": frozenset({"PNEUMO"}), "pneumococcal_vaccination_dmd": frozenset({"PNEUMO_VACCINE"}),
    "covadm1_5": frozenset({"COVID"}), "covid_vaccination_broad": frozenset({"COVID_BROAD"}),
    "saba_inhalers_resp02": frozenset({"SABA_A", "SABA_B"}), "saba_inhaler_medications": frozenset({"SABA_B", "SABA_C"}),
    "diabetes_cgm_dmd": frozenset({"CGM"}),
    "bmival_cod": frozenset({"BMI"}), "bmiobese_cod": frozenset({"OBESE"}), "bmi_stage": frozenset({"BMI_STAGE"}),
    "weight_snomed": frozenset({"WEIGHT"}), "alcohol_consumption_gmsde": frozenset({"ALCOHOL"}),
    "smoking_never": frozenset({"NEVER_SMOKED", "NON_SMOKER"}), "smoking_ex": frozenset({"EX_SMOKER", "STOPPED_SMOKING"}),
    "smoking_current": frozenset({"SMOKER", "CURRENT_SMOKER_REVIEW"}), "lithium": frozenset({"LITHIUM"}),
    "ld_cod_20241205": frozenset({"LD", "LD_2024"}),
    "epilepsy_review": frozenset({"EPI_REVIEW", "EPI_MED_REVIEW"}),
}

PATIENTS = {"patient_id": pl.String, "date_of_birth": pl.Date}
EVENTS = {"patient_id": pl.String, "code": pl.String, "event_date": pl.Date, "value": pl.Float64}
RESULT = {"patient_id": pl.String, "is_numerator": pl.Boolean}
EMPTY_EVENTS = pl.DataFrame(schema=EVENTS)


@pytest.fixture(scope="module")
def defs():
    return load_definitions()


def run(defs, indicator_id, patients, events, feeds=None) -> pl.DataFrame:
    result = evaluate_indicators(
        defs, patients.lazy(), events.lazy(), None, CODELISTS, R, indicator_ids=[indicator_id],
        feeds={k: v.lazy() for k, v in (feeds or {}).items()},
    ).collect()
    assert set(result["indicator_id"]) <= {indicator_id}
    return result.select("patient_id", "is_numerator").sort("patient_id")


def expect(text: str) -> pl.DataFrame:
    return table(text, RESULT).sort("patient_id")


# --- SMI health-check components -----------------------------------------------------------


def test_smi_components_each_need_their_own_code_in_12_months(defs):
    patients = table(
        """
        patient_id    | date_of_birth
        all_in        | 1980-01-01
        all_too_early | 1980-01-01
        ifcc_and_dia  | 1980-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id    | code       | event_date | value
        all_in        | SMI_DX     | 2015-01-01 |
        all_in        | SYS        | 2024-04-01 | 120
        all_in        | DIA        | 2024-04-01 | 80
        all_in        | CHOL       | 2025-03-31 |
        all_in        | HBA1C      | 2024-06-01 |
        all_in        | SMOKER     | 2024-06-01 |
        all_in        | BMI        | 2024-06-01 | 31.2
        all_in        | ALCOHOL    | 2024-06-01 |
        all_too_early | SMI_DX     | 2015-01-01 |
        all_too_early | SYS        | 2024-03-31 | 120
        all_too_early | DIA        | 2024-03-31 | 80
        all_too_early | CHOL       | 2024-03-31 |
        all_too_early | HBA1C      | 2024-03-31 |
        all_too_early | EX_SMOKER  | 2024-03-31 |
        all_too_early | WEIGHT     | 2024-03-31 | 80
        all_too_early | ALCOHOL    | 2024-03-31 |
        ifcc_and_dia  | SMI_DX     | 2015-01-01 |
        ifcc_and_dia  | DIA        | 2024-06-01 | 80
        ifcc_and_dia  | HBA1C_IFCC | 2024-06-01 | 40
        ifcc_and_dia  | NEVER_SMOKED | 2024-06-01 |
        ifcc_and_dia  | BMI_STAGE  | 2024-06-01 |
        """,
        EVENTS,
    )
    expected = {
        "smi_hc_blood_pressure": ["all_in"],  # a lone diastolic is no reading (valid same-day pair rule)
        "smi_hc_lipids": ["all_in"],
        "smi_hc_glucose": ["all_in", "ifcc_and_dia"],
        "smi_hc_smoking": ["all_in", "ifcc_and_dia"],  # a never-smoked code is a status recorded
        "smi_hc_bmi": ["all_in", "ifcc_and_dia"],  # a BMI category code counts without a value
        "smi_hc_alcohol": ["all_in"],
    }
    for indicator_id, met in expected.items():
        result = run(defs, indicator_id, patients, events)
        assert result["patient_id"].to_list() == ["all_in", "all_too_early", "ifcc_and_dia"], indicator_id
        assert result.filter("is_numerator")["patient_id"].to_list() == met, indicator_id


# --- hypertension case-finding and lipids --------------------------------------------------


def test_bp_case_finding_age_40_not_on_register_bp_in_5_years(defs):
    patients = table(
        """
        patient_id      | date_of_birth
        forty_on_R      | 1985-03-31
        thirty_nine     | 1985-04-01
        bp_first_day    | 1960-01-01
        bp_day_before   | 1960-01-01
        systolic_only   | 1960-01-01
        on_register     | 1960-01-01
        resolved_hyp    | 1960-01-01
        no_reading      | 1960-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id    | code    | event_date | value
        forty_on_R    | SYS     | 2024-01-01 | 130
        forty_on_R    | DIA     | 2024-01-01 | 80
        thirty_nine   | SYS     | 2024-01-01 | 130
        thirty_nine   | DIA     | 2024-01-01 | 80
        bp_first_day  | SYS     | 2020-04-01 | 130
        bp_first_day  | DIA     | 2020-04-01 | 80
        bp_day_before | SYS     | 2020-03-31 | 130
        bp_day_before | DIA     | 2020-03-31 | 80
        systolic_only | SYS     | 2022-01-01 | 130
        on_register   | HYP     | 2019-01-01 |
        on_register   | SYS     | 2024-01-01 | 130
        on_register   | DIA     | 2024-01-01 | 80
        resolved_hyp  | HYP     | 2019-01-01 |
        resolved_hyp  | HYP_RES | 2020-01-01 |
        resolved_hyp  | SYS     | 2024-01-01 | 130
        resolved_hyp  | DIA     | 2024-01-01 | 80
        """,
        EVENTS,
    )
    assert_frame_equal(run(defs, "bp_case_finding", patients, events), expect(
        """
        patient_id    | is_numerator
        bp_day_before | false
        bp_first_day  | true
        forty_on_R    | true
        no_reading    | false
        resolved_hyp  | true
        systolic_only | false
        """
    ))


def test_lipid_statin_cvd_risk_cohort_and_qrisk_value_rule(defs):
    # cvd_risk: 40+ AND (hypertension register OR diabetes register OR latest QRISK in 5
    # years >= 10, the lowest value on the latest date). Numerator: statin in 12 months.
    patients = table(
        """
        patient_id      | date_of_birth
        hyp_statin      | 1960-01-01
        dm_no_statin    | 1960-01-01
        qrisk_10        | 1960-01-01
        qrisk_9_9       | 1960-01-01
        qrisk_fell      | 1960-01-01
        qrisk_too_old   | 1960-01-01
        qrisk_same_day  | 1960-01-01
        hyp_aged_39     | 1985-04-01
        statin_too_old  | 1960-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id     | code   | event_date | value
        hyp_statin     | HYP    | 2015-01-01 |
        hyp_statin     | STATIN | 2025-03-01 |
        dm_no_statin   | DM     | 2015-01-01 |
        qrisk_10       | QRISK  | 2023-01-01 | 10
        qrisk_10       | STATIN | 2024-04-01 |
        qrisk_9_9      | QRISK  | 2023-01-01 | 9.9
        qrisk_fell     | QRISK  | 2021-01-01 | 15
        qrisk_fell     | QRISK  | 2024-01-01 | 8
        qrisk_too_old  | QRISK  | 2020-03-31 | 20
        qrisk_same_day | QRISK  | 2024-01-01 | 12
        qrisk_same_day | QRISK  | 2024-01-01 | 9
        hyp_aged_39    | HYP    | 2020-01-01 |
        statin_too_old | HYP    | 2015-01-01 |
        statin_too_old | STATIN | 2024-03-31 |
        """,
        EVENTS,
    )
    assert_frame_equal(run(defs, "lipid_statin", patients, events), expect(
        """
        patient_id     | is_numerator
        dm_no_statin   | false
        hyp_statin     | true
        qrisk_10       | true
        statin_too_old | false
        """
    ))


# --- COPD vaccinations ----------------------------------------------------------------------


def test_copd_vaccinations_campaign_and_ever_windows(defs):
    patients = table(
        """
        patient_id        | date_of_birth
        flu_campaign_day1 | 1950-01-01
        flu_day_before    | 1950-01-01
        flu_product       | 1950-01-01
        pneumo_1990       | 1950-01-01
        pneumo_after_R    | 1950-01-01
        covid_broad       | 1950-01-01
        not_copd          | 1950-01-01
        copd_resolved     | 1950-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id        | code           | event_date | value
        flu_campaign_day1 | FLU            | 2024-09-01 |
        flu_day_before    | FLU            | 2024-08-31 |
        flu_day_before    | COVID          | 2024-08-31 |
        flu_product       | FLU_VACCINE    | 2025-01-15 |
        flu_product       | PNEUMO_VACCINE | 2018-01-01 |
        pneumo_1990       | PNEUMO         | 1990-06-01 |
        pneumo_1990       | COVID          | 2024-10-01 |
        pneumo_after_R    | PNEUMO         | 2025-04-01 |
        covid_broad       | COVID_BROAD    | 2025-03-31 |
        not_copd          | FLU            | 2024-10-01 |
        copd_resolved     | COPD_RES       | 2021-01-01 |
        copd_resolved     | FLU            | 2024-10-01 |
        """,
        EVENTS,
    )
    on_register = pl.DataFrame(
        {"patient_id": [p for p in patients["patient_id"] if p != "not_copd"], "code": "COPD", "event_date": date(2020, 1, 1)},
        schema_overrides={"event_date": pl.Date},
    ).with_columns(pl.lit(None, dtype=pl.Float64).alias("value"))
    events = pl.concat([on_register, events])
    numerators = {
        "copd_flu_vaccination": ["flu_campaign_day1", "flu_product"],
        "copd_pneumococcal_vaccination": ["flu_product", "pneumo_1990"],
        "copd_covid_vaccination": ["covid_broad", "pneumo_1990"],
    }
    denominator = ["covid_broad", "flu_campaign_day1", "flu_day_before", "flu_product", "pneumo_1990", "pneumo_after_R"]
    for indicator_id, met in numerators.items():
        result = run(defs, indicator_id, patients, events)
        assert result["patient_id"].to_list() == denominator, indicator_id
        assert result.filter("is_numerator")["patient_id"].to_list() == met, indicator_id


# --- smoking ---------------------------------------------------------------------------------


def test_smoking_status_recorded_adults_24_months(defs):
    # A recording measure (DOMAIN.md section 4): any smoking-status code - never, ex or
    # current - counts; a code that states no status (e.g. "thinking about stopping", not
    # in these lists) does not. A never / non-smoker code after an ex-smoker code is still
    # a recorded status.
    patients = table(
        """
        patient_id        | date_of_birth
        adult_on_R        | 2007-03-31
        aged_17           | 2007-04-01
        first_day         | 1970-01-01
        day_before        | 1970-01-01
        ex_smoker         | 1970-01-01
        never_smoked      | 1970-01-01
        non_smoker        | 1970-01-01
        never_after_ex    | 1970-01-01
        current_review    | 1970-01-01
        stopped_smoking   | 1970-01-01
        no_status_code    | 1970-01-01
        never_too_early   | 1970-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id      | code                  | event_date | value
        adult_on_R      | SMOKER                | 2025-03-31 |
        aged_17         | SMOKER                | 2025-01-01 |
        first_day       | SMOKER                | 2023-04-01 |
        day_before      | SMOKER                | 2023-03-31 |
        ex_smoker       | EX_SMOKER             | 2024-01-01 |
        never_smoked    | NEVER_SMOKED          | 2024-01-01 |
        non_smoker      | NON_SMOKER            | 2023-06-01 |
        never_after_ex  | EX_SMOKER             | 2015-01-01 |
        never_after_ex  | NON_SMOKER            | 2024-02-01 |
        current_review  | CURRENT_SMOKER_REVIEW | 2024-02-01 |
        stopped_smoking | STOPPED_SMOKING       | 2024-02-01 |
        no_status_code  | THINKING_OF_STOPPING  | 2024-02-01 |
        never_too_early | NEVER_SMOKED          | 2023-03-31 |
        """,
        EVENTS,
    )
    assert_frame_equal(run(defs, "smoking_status_recorded", patients, events), expect(
        """
        patient_id      | is_numerator
        adult_on_R      | true
        current_review  | true
        day_before      | false
        ex_smoker       | true
        first_day       | true
        never_after_ex  | true
        never_smoked    | true
        never_too_early | false
        no_status_code  | false
        non_smoker      | true
        stopped_smoking | true
        """
    ))


def test_current_smoker_reads_the_latest_status_and_a_later_never_code_is_not_current(defs):
    # The current-smoker rule (smoking_cessation_support's denominator, the focus cohort):
    # the latest status code is a current one; a never / non-smoker code after a current
    # or ex code reads as "ex-smoker" - not current, not never (CODELISTS.md note 6).
    patients = table(
        """
        patient_id           | date_of_birth
        current              | 1970-01-01
        current_then_never   | 1970-01-01
        ex_then_never        | 1970-01-01
        never_then_current   | 1970-01-01
        current_review_code  | 1970-01-01
        same_day_never       | 1970-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id          | code                  | event_date | value
        current             | SMOKER                | 2020-01-01 |
        current_then_never  | SMOKER                | 2019-01-01 |
        current_then_never  | NON_SMOKER            | 2023-01-01 |
        ex_then_never       | EX_SMOKER             | 2019-01-01 |
        ex_then_never       | NEVER_SMOKED          | 2023-01-01 |
        never_then_current  | NEVER_SMOKED          | 2019-01-01 |
        never_then_current  | SMOKER                | 2023-01-01 |
        current_review_code | CURRENT_SMOKER_REVIEW | 2023-01-01 |
        same_day_never      | SMOKER                | 2023-01-01 |
        same_day_never      | NON_SMOKER            | 2023-01-01 |
        """,
        EVENTS,
    )
    rule = defs.indicators["smoking_cessation_support"].denominator.all_of[1]
    cohort_text = "cohorts:\n  - id: current\n    version: 1\n    title: t\n    description: d\n    source: s\n    criteria: "
    import json

    from pipelines.segmentation.definitions import parse_definitions

    local = parse_definitions({"cohorts.yaml": cohort_text + json.dumps(rule.model_dump(mode="json", by_alias=True, exclude_none=True))},
                              known_codelists=set(CODELISTS))
    result = evaluate_cohorts(local, patients.lazy(), events.lazy(), None, CODELISTS, R).collect()
    assert sorted(result["patient_id"]) == ["current", "current_review_code", "never_then_current"]


# --- children and young people ---------------------------------------------------------------


def test_cyp_reliever_overuse_counts_issues_against_the_ics_threshold(defs):
    # 0-17 on the asthma register; 6+ SABA issues (either list; two on one day are two) in 12 months.
    patients = table(
        """
        patient_id     | date_of_birth
        six_issues     | 2015-01-01
        five_issues    | 2015-01-01
        same_day_pair  | 2015-01-01
        aged_18_on_R   | 2007-03-31
        aged_17        | 2007-04-01
        one_too_early  | 2015-01-01
        """,
        PATIENTS,
    )
    rows = ["patient_id | code | event_date | value"]
    for pid in ("six_issues", "five_issues", "same_day_pair", "aged_18_on_R", "aged_17", "one_too_early"):
        rows.append(f"{pid} | AST | 2018-01-01 |")
    for month in range(1, 7):
        rows.append(f"six_issues | SABA_A | 2024-{month + 4:02d}-01 |")
        rows.append(f"aged_18_on_R | SABA_C | 2024-{month + 4:02d}-01 |")
        rows.append(f"aged_17 | SABA_B | 2024-{month + 4:02d}-01 |")
    for month in range(1, 6):
        rows.append(f"five_issues | SABA_B | 2024-{month + 4:02d}-01 |")
        rows.append(f"one_too_early | SABA_C | 2024-{month + 4:02d}-01 |")
    for month in range(1, 5):
        rows.append(f"same_day_pair | SABA_A | 2024-{month + 4:02d}-01 |")
    rows += ["same_day_pair | SABA_A | 2024-12-01 |", "same_day_pair | SABA_C | 2024-12-01 |",
             "one_too_early | SABA_A | 2024-03-31 |"]
    events = table("\n".join(rows), EVENTS)
    assert_frame_equal(run(defs, "cyp_asthma_reliever_overuse", patients, events), expect(
        """
        patient_id    | is_numerator
        aged_17       | true
        five_issues   | false
        one_too_early | false
        same_day_pair | true
        six_issues    | true
        """
    ))
    catalogue_direction = defs.indicators["cyp_asthma_reliever_overuse"].direction
    assert catalogue_direction == "lower_is_better"


def test_cyp_diabetes_cgm_needs_type_1_as_the_latest_type_code(defs):
    patients = table(
        """
        patient_id     | date_of_birth
        t1_cgm         | 2010-01-01
        t1_cgm_too_old | 2010-01-01
        t1_then_t2     | 2010-01-01
        same_day_types | 2010-01-01
        no_type        | 2010-01-01
        aged_18_on_R   | 2007-03-31
        aged_17        | 2007-04-01
        dm_resolved    | 2010-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id     | code   | event_date | value
        t1_cgm         | DM     | 2015-01-01 |
        t1_cgm         | T1     | 2015-01-01 |
        t1_cgm         | CGM    | 2024-06-01 |
        t1_cgm_too_old | DM     | 2015-01-01 |
        t1_cgm_too_old | T1     | 2015-01-01 |
        t1_cgm_too_old | CGM    | 2024-03-31 |
        t1_then_t2     | DM     | 2015-01-01 |
        t1_then_t2     | T1     | 2015-01-01 |
        t1_then_t2     | T2     | 2020-01-01 |
        t1_then_t2     | CGM    | 2024-06-01 |
        same_day_types | DM     | 2015-01-01 |
        same_day_types | T1     | 2016-01-01 |
        same_day_types | T2     | 2016-01-01 |
        no_type        | DM     | 2015-01-01 |
        aged_18_on_R   | DM     | 2015-01-01 |
        aged_18_on_R   | T1     | 2015-01-01 |
        aged_17        | DM     | 2015-01-01 |
        aged_17        | T1     | 2015-01-01 |
        dm_resolved    | DM     | 2015-01-01 |
        dm_resolved    | T1     | 2015-01-01 |
        dm_resolved    | DM_RES | 2016-01-01 |
        """,
        EVENTS,
    )
    assert_frame_equal(run(defs, "cyp_diabetes_cgm", patients, events), expect(
        """
        patient_id     | is_numerator
        aged_17        | false
        t1_cgm         | true
        t1_cgm_too_old | false
        """
    ))


def test_cyp_diabetes_care_processes_need_hba1c_and_bp(defs):
    patients = table(
        """
        patient_id | date_of_birth
        both       | 2012-01-01
        hba1c_only | 2012-01-01
        bp_only    | 2012-01-01
        adult      | 1990-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id | code       | event_date | value
        both       | DM         | 2020-01-01 |
        both       | HBA1C_IFCC | 2024-05-01 | 50
        both       | SYS        | 2024-05-01 | 100
        both       | DIA        | 2024-05-01 | 60
        hba1c_only | DM         | 2020-01-01 |
        hba1c_only | HBA1C      | 2024-05-01 | 50
        bp_only    | DM         | 2020-01-01 |
        bp_only    | SYS        | 2024-05-01 | 100
        bp_only    | DIA        | 2024-05-01 | 60
        adult      | DM         | 2020-01-01 |
        adult      | HBA1C      | 2024-05-01 | 50
        adult      | BP         | 2024-05-01 |
        """,
        EVENTS,
    )
    assert_frame_equal(run(defs, "cyp_diabetes_care_processes", patients, events), expect(
        """
        patient_id | is_numerator
        both       | true
        bp_only    | false
        hba1c_only | false
        """
    ))


# --- linked feeds ----------------------------------------------------------------------------

WOMEN = table(
    """
    patient_id        | date_of_birth
    coc_in_window     | 1995-01-01
    not_coc           | 1995-01-01
    coc_before_window | 1995-01-01
    coc_after_R       | 1995-01-01
    later_booking_coc | 1995-01-01
    no_booking        | 1995-01-01
    """,
    PATIENTS,
)


def test_maternity_continuity_of_carer_per_woman_booked_in_12_months(defs):
    maternity = table(
        """
        patient_id        | booking_date | is_on_continuity_pathway
        coc_in_window     | 2024-05-01   | true
        not_coc           | 2024-05-01   | false
        coc_before_window | 2024-03-31   | true
        coc_after_R       | 2025-04-01   | true
        later_booking_coc | 2024-04-01   | false
        later_booking_coc | 2025-03-31   | true
        """,
        {"patient_id": pl.String, "booking_date": pl.Date, "is_on_continuity_pathway": pl.Boolean},
    )
    assert_frame_equal(run(defs, "maternity_continuity_of_carer", WOMEN, EMPTY_EVENTS, {"maternity": maternity}), expect(
        """
        patient_id        | is_numerator
        coc_in_window     | true
        later_booking_coc | true
        not_coc           | false
        """
    ))


def test_cancer_early_stage_over_staged_tumours_only(defs):
    patients = table(
        """
        patient_id  | date_of_birth
        stage_2     | 1950-01-01
        stage_3     | 1950-01-01
        unstaged    | 1950-01-01
        stage_1_old | 1950-01-01
        late_early  | 1950-01-01
        """,
        PATIENTS,
    )
    registry = table(
        """
        patient_id  | diagnosis_date | stage
        stage_2     | 2024-10-01     | 2
        stage_3     | 2024-10-01     | 3
        unstaged    | 2024-10-01     |
        stage_1_old | 2024-03-31     | 1
        late_early  | 2024-05-01     | 4
        late_early  | 2024-08-01     | 1
        """,
        {"patient_id": pl.String, "diagnosis_date": pl.Date, "stage": pl.Int8, "tumour_site": pl.String},
    )
    assert_frame_equal(run(defs, "cancer_early_stage", patients, EMPTY_EVENTS, {"cancer_registry": registry}), expect(
        """
        patient_id | is_numerator
        late_early | true
        stage_2    | true
        stage_3    | false
        """
    ))


def test_cyp_tooth_extractions_and_mental_health_access(defs):
    patients = table(
        """
        patient_id    | date_of_birth
        aged_10       | 2014-04-01
        aged_11_on_R  | 2014-03-31
        not_for_decay | 2018-01-01
        aged_17       | 2007-04-01
        aged_18_on_R  | 2007-03-31
        """,
        PATIENTS,
    )
    dental = table(
        """
        patient_id    | episode_date | is_caries_extraction
        aged_10       | 2024-11-01   | true
        aged_11_on_R  | 2024-11-01   | true
        not_for_decay | 2024-11-01   | false
        """,
        {"patient_id": pl.String, "episode_date": pl.Date, "is_caries_extraction": pl.Boolean},
    )
    contacts = table(
        """
        patient_id    | contact_date
        aged_17       | 2025-03-31
        aged_18_on_R  | 2025-01-01
        not_for_decay | 2024-03-31
        aged_10       | 2025-04-01
        """,
        {"patient_id": pl.String, "contact_date": pl.Date},
    )
    assert_frame_equal(run(defs, "cyp_tooth_extractions", patients, EMPTY_EVENTS, {"dental_extractions": dental}), expect(
        """
        patient_id    | is_numerator
        aged_10       | true
        not_for_decay | false
        """
    ))
    assert_frame_equal(run(defs, "cyp_mental_health_access", patients, EMPTY_EVENTS, {"mh_contacts": contacts}), expect(
        """
        patient_id    | is_numerator
        aged_10       | false
        aged_11_on_R  | false
        aged_17       | true
        not_for_decay | false
        """
    ))
    assert defs.indicators["cyp_tooth_extractions"].multiplier == 100000


def test_an_absent_feed_means_not_available_never_zero(defs):
    # Without the feed its indicators produce no rows at all (so no 0% can be published),
    # and asking for one by name says why.
    result = evaluate_indicators(defs, WOMEN.lazy(), EMPTY_EVENTS.lazy(), None, CODELISTS, R, feeds={"maternity": None}).collect()
    feed_indicators = {"maternity_continuity_of_carer", "cancer_early_stage", "cyp_tooth_extractions", "cyp_mental_health_access"}
    assert not feed_indicators & set(result["indicator_id"])
    assert "smoking_status_recorded" in set(result["indicator_id"])
    with pytest.raises(ValueError, match=r"maternity_continuity_of_carer: linked feed\(s\) \['maternity'\] not supplied"):
        run(defs, "maternity_continuity_of_carer", WOMEN, EMPTY_EVENTS)


@pytest.mark.parametrize("indicator_id", ["ld_health_check", "smoking_cessation_support",
                                          "cancer_screening_uptake", "cyp_diabetes_insulin_pump", "cyp_epilepsy_specialist_review"])
def test_indicators_without_a_shared_codelist_are_never_evaluated(defs, indicator_id):
    reason = defs.indicators[indicator_id].not_available_reason
    assert "codelist" in reason.lower() and defs.indicators[indicator_id].numerator is None
    result = evaluate_indicators(defs, WOMEN.lazy(), EMPTY_EVENTS.lazy(), None, CODELISTS, R).collect()
    assert indicator_id not in set(result["indicator_id"])
    with pytest.raises(ValueError, match="not available"):
        run(defs, indicator_id, WOMEN, EMPTY_EVENTS)


# --- PLUS cohorts ----------------------------------------------------------------------------


def test_ethnicity_cohorts_keep_not_stated_apart_from_no_code(defs):
    patients = table(
        """
        patient_id | date_of_birth
        caribbean  | 1980-01-01
        african    | 1980-01-01
        pakistani  | 1980-01-01
        chinese    | 1980-01-01
        not_stated | 1980-01-01
        no_code    | 1980-01-01
        british    | 1980-01-01
        """,
        PATIENTS,
    )
    ethnicity = table(
        """
        patient_id | ethnic_category | ethnicity_broad
        caribbean  | M               | Black or Black British
        african    | N               | Black or Black British
        pakistani  | J               | Asian or Asian British
        chinese    | R               | Other ethnic group
        not_stated | Z               | Not stated
        british    | A               | White
        """,
        {"patient_id": pl.String, "ethnic_category": pl.String, "ethnicity_broad": pl.String},
    )
    result = evaluate_cohorts(
        defs, patients.lazy(), EMPTY_EVENTS.lazy(), None, CODELISTS, R, ethnicity=ethnicity.lazy(),
        cohort_ids=["eth_black_african_caribbean", "eth_south_asian", "eth_black", "eth_asian", "eth_other",
                    "eth_not_stated", "eth_not_recorded"],
    ).collect()
    members = {c: sorted(rows["patient_id"]) for (c,), rows in result.partition_by("cohort_id", as_dict=True).items()}
    assert members == {
        "eth_black_african_caribbean": ["african", "caribbean"],
        "eth_south_asian": ["pakistani"],
        "eth_black": ["african", "caribbean"],
        "eth_asian": ["pakistani"],
        "eth_other": ["chinese"],
        "eth_not_stated": ["not_stated"],
        "eth_not_recorded": ["no_code"],
    }


def test_ld_and_autism_cohorts_and_unavailable_inclusion_groups(defs):
    patients = table(
        """
        patient_id | date_of_birth
        ld         | 2000-01-01
        autistic   | 2000-01-01
        neither    | 2000-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id | code | event_date | value
        ld         | LD_2024 | 2010-01-01 |
        autistic   | AUT     | 2015-02-02 |
        """,
        EVENTS,
    )
    result = evaluate_cohorts(defs, patients.lazy(), events.lazy(), None, CODELISTS, R,
                              cohort_ids=["learning_disability", "autism", "ld_autism"]).collect()
    members = {c: sorted(rows["patient_id"]) for (c,), rows in result.partition_by("cohort_id", as_dict=True).items()}
    assert members == {"learning_disability": ["ld"], "autism": ["autistic"], "ld_autism": ["autistic", "ld"]}
    for cohort_id in ("inclusion_homelessness", "inclusion_gypsy_roma_traveller", "inclusion_vulnerable_migrants",
                      "inclusion_sex_workers", "inclusion_justice_contact", "carers", "looked_after_children"):
        assert defs.cohorts[cohort_id].not_available_reason
        with pytest.raises(ValueError, match="not available"):
            evaluate_cohorts(defs, patients.lazy(), events.lazy(), None, CODELISTS, R, cohort_ids=[cohort_id])


def test_ics_configuration_names_the_plus_groups(defs):
    assert defs.ics is not None
    assert {"smi", "ld_autism"} <= set(defs.ics.plus_groups)
    assert defs.cohort_role("eth_black") == "building_block"
    assert defs.cohort_role("core20") == "core20"
    assert defs.cohort_role("nn_cvd_focus") == "focus"
    assert defs.cohort_role("cvd_risk") == "building_block"


# --- every QOF register with a resolved cluster -----------------------------------------------

RESOLVABLE = ["smi_register", "hypertension_register", "copd_register", "asthma_register", "diabetes_register", "epilepsy_register"]


@pytest.mark.parametrize("register_id", RESOLVABLE)
def test_every_register_applies_the_resolved_rule_as_at_r(defs, register_id):
    register = defs.registers[register_id]
    codelists = {register.diagnosis[0]: frozenset({"DX"}), register.resolved[0]: frozenset({"RES"}),
                 "lithium": frozenset({"LITHIUM"})}
    patients = table(
        """
        patient_id         | date_of_birth
        diagnosed          | 1960-01-01
        resolved_later     | 1960-01-01
        re_diagnosed       | 1960-01-01
        same_day_resolved  | 1960-01-01
        resolved_after_R   | 1960-01-01
        diagnosed_after_R  | 1960-01-01
        diagnosed_on_R     | 1960-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id        | code | event_date | value
        diagnosed         | DX   | 2020-01-01 |
        resolved_later    | DX   | 2020-01-01 |
        resolved_later    | RES  | 2021-01-01 |
        re_diagnosed      | DX   | 2019-01-01 |
        re_diagnosed      | RES  | 2020-01-01 |
        re_diagnosed      | DX   | 2022-06-30 |
        same_day_resolved | DX   | 2022-05-05 |
        same_day_resolved | RES  | 2022-05-05 |
        resolved_after_R  | DX   | 2020-01-01 |
        resolved_after_R  | RES  | 2025-04-01 |
        diagnosed_after_R | DX   | 2025-04-01 |
        diagnosed_on_R    | DX   | 2025-03-31 |
        """,
        EVENTS,
    )
    result = evaluate_registers(defs, patients.lazy(), events.lazy(), codelists, R, register_ids=[register_id]).collect()
    assert sorted(result["patient_id"]) == ["diagnosed", "diagnosed_on_R", "re_diagnosed", "resolved_after_R"]


def test_smi_register_also_holds_lithium_in_the_last_6_months(defs):
    # QOF's mental health register: the diagnosis rule, OR lithium issued in the last 6
    # months (R = 2025-03-31: from 2024-10-01). A resolved diagnosis does not stop lithium.
    patients = table(
        """
        patient_id          | date_of_birth
        lithium_first_day   | 1960-01-01
        lithium_day_before  | 1960-01-01
        lithium_after_R     | 1960-01-01
        resolved_on_lithium | 1960-01-01
        resolved_no_lithium | 1960-01-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id          | code    | event_date | value
        lithium_first_day   | LITHIUM | 2024-10-01 |
        lithium_day_before  | LITHIUM | 2024-09-30 |
        lithium_after_R     | LITHIUM | 2025-04-01 |
        resolved_on_lithium | SMI_DX  | 2015-01-01 |
        resolved_on_lithium | SMI_RES | 2018-01-01 |
        resolved_on_lithium | LITHIUM | 2025-02-01 |
        resolved_no_lithium | SMI_DX  | 2015-01-01 |
        resolved_no_lithium | SMI_RES | 2018-01-01 |
        """,
        EVENTS,
    )
    result = evaluate_registers(defs, patients.lazy(), events.lazy(), CODELISTS, R, register_ids=["smi_register"]).collect()
    assert sorted(result["patient_id"]) == ["lithium_first_day", "resolved_on_lithium"]
    assert defs.registers["smi_register"].version == 2


def test_cyp_epilepsy_review_needs_a_review_code_in_12_months(defs):
    # GP-recorded proxy (issue 14 point 4): a review / monitoring / medication-review code of
    # the Bristol list (is_review) in the last 12 months; an invitation is no review.
    patients = table(
        """
        patient_id       | date_of_birth
        reviewed         | 2012-01-01
        med_review       | 2012-01-01
        review_too_early | 2012-01-01
        invited_only     | 2012-01-01
        adult            | 1990-01-01
        aged_17_on_R     | 2007-04-01
        """,
        PATIENTS,
    )
    events = table(
        """
        patient_id       | code           | event_date | value
        reviewed         | EPI            | 2019-01-01 |
        reviewed         | EPI_REVIEW     | 2024-04-01 |
        med_review       | EPI            | 2019-01-01 |
        med_review       | EPI_MED_REVIEW | 2025-03-31 |
        review_too_early | EPI            | 2019-01-01 |
        review_too_early | EPI_REVIEW     | 2024-03-31 |
        invited_only     | EPI            | 2019-01-01 |
        invited_only     | EPI_INVITE     | 2025-01-01 |
        adult            | EPI            | 2019-01-01 |
        adult            | EPI_REVIEW     | 2025-01-01 |
        aged_17_on_R     | EPI            | 2019-01-01 |
        aged_17_on_R     | EPI_REVIEW     | 2025-01-01 |
        """,
        EVENTS,
    )
    assert_frame_equal(run(defs, "cyp_epilepsy_review", patients, events), expect(
        """
        patient_id       | is_numerator
        aged_17_on_R     | true
        invited_only     | false
        med_review       | true
        review_too_early | false
        reviewed         | true
        """
    ))
