"""Spec: QOF register rule and the shipped cohorts, as literal tables.

Each test reads: input patients/events -> the shipped definition -> expected rows. Codes
are made-up readable strings in small codelists built here, so the rule is tested, not the
shared files. R (the reference date) is 2025-03-31 throughout.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.segmentation.cohorts import evaluate_cohorts, evaluate_registers
from pipelines.segmentation.definitions import load_definitions

R = date(2025, 3, 31)

CODELISTS = {
    "mh_cod": frozenset({"SMI_DX", "SMI_DX2"}),
    "smhres": frozenset({"SMI_RES"}),
    "ld_cod": frozenset({"LD"}),
    "autism_cod": frozenset({"AUT"}),
    "hyp_cod": frozenset({"HYP"}),
    "hypres_cod": frozenset({"HYP_RES"}),
    "dm_cod": frozenset({"DM"}),
    "dmres_cod": frozenset({"DM_RES"}),
    "bp_cod": frozenset({"BP"}),
    "systolic_blood_pressure_qof": frozenset({"SYS"}),
    "diastolic_blood_pressure_qof": frozenset({"DIA"}),
    "bp_systolic_clinic": frozenset({"SYS"}),
    "bp_diastolic_clinic": frozenset({"DIA"}),
    "bp_systolic_out_of_office": frozenset({"HOME_SYS"}),
    "bp_diastolic_out_of_office": frozenset({"ABPM_DIA"}),
    "homebp_diastolic_average": frozenset({"HOME_DIA"}),
    "lsmok_cod": frozenset({"SMOKER"}),
    "exsmok_cod": frozenset({"EX_SMOKER"}),
    "bmival_cod": frozenset({"BMI"}), "bmiobese_cod": frozenset({"OBESE"}), "bmi_stage": frozenset({"BMI_STAGE"}),
    "weight_snomed": frozenset({"WEIGHT"}), "alcohol_consumption_gmsde": frozenset({"ALCOHOL"}),
    "smoking_never": frozenset({"NEVER_SMOKED", "NON_SMOKER"}), "smoking_ex": frozenset({"EX_SMOKER", "STOPPED_SMOKING"}),
    "smoking_current": frozenset({"SMOKER", "CURRENT_SMOKER_REVIEW"}), "lithium": frozenset({"LITHIUM"}),
    "ld_cod_20241205": frozenset({"LD", "LD_2024"}),
}


def table(text: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Return a frame from a literal '|' table; blank cells are nulls, dates are ISO."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("|")]
    rows = [[cell.strip() or None for cell in line.split("|")] for line in lines[1:]]
    raw = pl.DataFrame(rows, schema={h: pl.String for h in header}, orient="row")
    return raw.select(
        pl.col(name).str.to_date() if dtype == pl.Date else pl.col(name).cast(dtype) for name, dtype in schema.items()
    )


PATIENT_SCHEMA = {"patient_id": pl.String, "date_of_birth": pl.Date}
EVENT_SCHEMA = {"patient_id": pl.String, "code": pl.String, "event_date": pl.Date, "value": pl.Float64}


@pytest.fixture(scope="module")
def defs():
    return load_definitions()


def test_register_latest_diagnosis_must_be_later_than_latest_resolved(defs):
    patients = table(
        """
        patient_id | date_of_birth
        diagnosed          | 1970-01-01
        then_resolved      | 1970-01-01
        re_diagnosed       | 1970-01-01
        same_day_resolved  | 1970-01-01
        resolved_after_R   | 1970-01-01
        diagnosed_after_R  | 1970-01-01
        diagnosed_on_R     | 1970-01-01
        two_codes          | 1970-01-01
        never              | 1970-01-01
        """,
        PATIENT_SCHEMA,
    )
    events = table(
        """
        patient_id        | code    | event_date | value
        diagnosed         | SMI_DX  | 2020-01-01 |
        then_resolved     | SMI_DX  | 2020-01-01 |
        then_resolved     | SMI_RES | 2021-01-01 |
        re_diagnosed      | SMI_DX  | 2019-01-01 |
        re_diagnosed      | SMI_RES | 2020-01-01 |
        re_diagnosed      | SMI_DX2 | 2022-06-30 |
        same_day_resolved | SMI_DX  | 2022-05-05 |
        same_day_resolved | SMI_RES | 2022-05-05 |
        resolved_after_R  | SMI_DX  | 2020-01-01 |
        resolved_after_R  | SMI_RES | 2025-04-01 |
        diagnosed_after_R | SMI_DX  | 2025-04-15 |
        diagnosed_on_R    | SMI_DX  | 2025-03-31 |
        two_codes         | SMI_DX  | 2018-01-01 |
        two_codes         | SMI_DX2 | 2023-01-01 |
        never             | LD      | 2023-01-01 |
        """,
        EVENT_SCHEMA,
    )
    expected = table(
        """
        patient_id       | diagnosis_date | diagnosis_code
        diagnosed        | 2020-01-01     | SMI_DX
        diagnosed_on_R   | 2025-03-31     | SMI_DX
        re_diagnosed     | 2022-06-30     | SMI_DX2
        resolved_after_R | 2020-01-01     | SMI_DX
        two_codes        | 2023-01-01     | SMI_DX2
        """,
        {"patient_id": pl.String, "diagnosis_date": pl.Date, "diagnosis_code": pl.String},
    )
    result = evaluate_registers(
        defs, patients.lazy(), events.lazy(), CODELISTS, R, register_ids=["smi_register"]
    ).collect()
    assert result["register_id"].unique().to_list() == ["smi_register"]
    assert result["register_version"].unique().to_list() == [2]  # version 2: lithium in 6 months too
    assert result["reporting_month"].unique().to_list() == [date(2025, 3, 1)]
    assert_frame_equal(result.select(expected.columns).sort("patient_id"), expected.sort("patient_id"))


def test_register_without_resolved_cluster_keeps_any_diagnosis(defs):
    patients = table(
        """
        patient_id | date_of_birth
        ld         | 2000-01-01
        autistic   | 2000-01-01
        both       | 2000-01-01
        neither    | 2000-01-01
        """,
        PATIENT_SCHEMA,
    )
    events = table(
        """
        patient_id | code | event_date | value
        ld         | LD   | 2010-01-01 |
        autistic   | AUT  | 2015-02-02 |
        both       | LD   | 2011-01-01 |
        both       | AUT  | 2012-01-01 |
        """,
        EVENT_SCHEMA,
    )
    expected = table(
        """
        patient_id | register_id
        autistic   | autism
        both       | autism
        both       | ld_register
        ld         | ld_register
        """,
        {"patient_id": pl.String, "register_id": pl.String},
    )
    result = evaluate_registers(
        defs, patients.lazy(), events.lazy(), CODELISTS, R, register_ids=["ld_register", "autism"]
    ).collect()
    assert_frame_equal(result.select(expected.columns).sort(expected.columns), expected)

    cohort = evaluate_cohorts(
        defs, patients.lazy(), events.lazy(), pl.LazyFrame(), CODELISTS, R, cohort_ids=["ld_autism"]
    ).collect()
    assert sorted(cohort["patient_id"]) == ["autistic", "both", "ld"]


def test_reference_date_must_be_a_month_end(defs):
    empty = pl.LazyFrame(schema=PATIENT_SCHEMA)
    with pytest.raises(ValueError, match="not the last day of a month"):
        evaluate_registers(defs, empty, pl.LazyFrame(schema=EVENT_SCHEMA), CODELISTS, date(2025, 3, 30))


def test_core20_uses_national_deciles_of_the_chosen_vintage(defs):
    patients = table(
        """
        patient_id | date_of_birth
        d1         | 1980-01-01
        d2         | 1980-01-01
        d3         | 1980-01-01
        moved      | 1980-01-01
        wales      | 1980-01-01
        """,
        PATIENT_SCHEMA,
    )
    deprivation = table(
        """
        patient_id | imd2019_decile | imd2025_decile
        d1         | 1              | 1
        d2         | 2              | 2
        d3         | 3              | 3
        moved      | 3              | 2
        wales      |                |
        """,
        {"patient_id": pl.String, "imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8},
    )
    events = pl.LazyFrame(schema=EVENT_SCHEMA)
    for vintage, members in {"IMD2019": ["d1", "d2"], "IMD2025": ["d1", "d2", "moved"]}.items():
        result = evaluate_cohorts(
            defs, patients.lazy(), events, deprivation.lazy(), CODELISTS, R, imd_vintage=vintage, cohort_ids=["core20"]
        ).collect()
        assert sorted(result["patient_id"]) == members, vintage


def test_nn_cvd_focus_combination(defs):
    # Core20 AND 40+ AND not on the hypertension register AND no valid BP reading (a same-day
    # systolic + diastolic pair, bp_case_finding's rule) in 5 years AND (diabetes register OR
    # current smoker). 5 years before R = 2020-04-01 onwards. A lone systolic or a BP_COD
    # code without values is no reading, so those patients stay in the cohort.
    patients = table(
        """
        patient_id       | date_of_birth
        member_diabetes  | 1960-05-05
        member_smoker    | 1960-05-05
        aged_39          | 1985-04-01
        aged_40_on_R     | 1985-03-31
        not_core20       | 1960-05-05
        no_risk_factor   | 1960-05-05
        ex_smoker_now    | 1960-05-05
        same_day_ex      | 1960-05-05
        never_after_smoker | 1960-05-05
        bp_in_window     | 1960-05-05
        bp_just_outside  | 1960-05-05
        sys_in_window    | 1960-05-05
        bp_code_only     | 1960-05-05
        home_pair        | 1960-05-05
        on_hyp_register  | 1960-05-05
        dm_resolved      | 1960-05-05
        """,
        PATIENT_SCHEMA,
    )
    deprivation = table(
        """
        patient_id      | imd2019_decile | imd2025_decile
        member_diabetes | 1              | 1
        member_smoker   | 2              | 2
        aged_39         | 1              | 1
        aged_40_on_R    | 1              | 1
        not_core20      | 3              | 3
        no_risk_factor  | 1              | 1
        ex_smoker_now   | 1              | 1
        same_day_ex     | 1              | 1
        never_after_smoker | 1           | 1
        bp_in_window    | 1              | 1
        bp_just_outside | 1              | 1
        sys_in_window   | 1              | 1
        bp_code_only    | 1              | 1
        home_pair       | 1              | 1
        on_hyp_register | 1              | 1
        dm_resolved     | 1              | 1
        """,
        {"patient_id": pl.String, "imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8},
    )
    events = table(
        """
        patient_id      | code      | event_date | value
        member_diabetes | DM        | 2015-01-01 |
        member_smoker   | EX_SMOKER | 2010-01-01 |
        member_smoker   | SMOKER    | 2019-01-01 |
        aged_39         | DM        | 2015-01-01 |
        aged_40_on_R    | DM        | 2015-01-01 |
        not_core20      | DM        | 2015-01-01 |
        ex_smoker_now   | SMOKER    | 2010-01-01 |
        ex_smoker_now   | EX_SMOKER | 2019-01-01 |
        same_day_ex     | SMOKER    | 2019-01-01 |
        same_day_ex     | EX_SMOKER | 2019-01-01 |
        never_after_smoker | SMOKER     | 2015-01-01 |
        never_after_smoker | NON_SMOKER | 2020-01-01 |
        bp_in_window    | DM        | 2015-01-01 |
        bp_in_window    | SYS       | 2020-04-01 | 150
        bp_in_window    | DIA       | 2020-04-01 | 90
        bp_just_outside | DM        | 2015-01-01 |
        bp_just_outside | SYS       | 2020-03-31 | 150
        bp_just_outside | DIA       | 2020-03-31 | 90
        sys_in_window   | DM        | 2015-01-01 |
        sys_in_window   | SYS       | 2024-01-01 | 150
        bp_code_only    | DM        | 2015-01-01 |
        bp_code_only    | BP        | 2024-01-01 |
        home_pair       | DM        | 2015-01-01 |
        home_pair       | HOME_SYS  | 2024-01-01 | 150
        home_pair       | HOME_DIA  | 2024-01-01 | 90
        on_hyp_register | DM        | 2015-01-01 |
        on_hyp_register | HYP       | 2016-01-01 |
        dm_resolved     | DM        | 2015-01-01 |
        dm_resolved     | DM_RES    | 2018-01-01 |
        """,
        EVENT_SCHEMA,
    )
    expected = ["aged_40_on_R", "bp_code_only", "bp_just_outside", "member_diabetes", "member_smoker", "sys_in_window"]
    result = evaluate_cohorts(
        defs, patients.lazy(), events.lazy(), deprivation.lazy(), CODELISTS, R, cohort_ids=["nn_cvd_focus"]
    ).collect()
    assert sorted(result["patient_id"]) == expected
    assert result.columns == ["reporting_month", "patient_id", "cohort_id", "cohort_version"]
    focus = defs.cohorts["nn_cvd_focus"].reporting_focus
    assert focus.breakdown == "ethnicity_16"
    assert set(focus.groups) == {"Black or Black British - African", "Black or Black British - Caribbean"}
