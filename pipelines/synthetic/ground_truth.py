"""The ground truth written beside every extract: what was injected, as the pipeline can observe it.

Drawn outcomes carry their probabilities p_i, so the truth holds each figure's expected
value and spread; outcomes that follow from the written rows (BP in five years, smoking
status, statins, reliever issues) are counted over those rows here, independently of the
pipeline's engine.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.synthetic.clinical import EthnicityCounts
from pipelines.synthetic.dates import Calendar, months_back
from pipelines.synthetic.parameters import (
    CYP_MAX_AGE,
    FEED_RATES,
    FLU_CAMPAIGN_START,
    GENERATOR,
    HYPERTENSION_TO_TARGET,
    IMD_VINTAGE,
    LIBRARY_RATES,
    OTHER_AREAS,
    RELIEVER_THRESHOLD,
    SMI_COMPONENTS,
    SMI_HEALTH_CHECK,
)
from pipelines.synthetic.population import People
from pipelines.synthetic.reference import Reference


# --- the ground truth of derived indicators: an independent count over the written rows -----

def _codelist_mask(ref: Reference, reference_dir, *codelist_ids: str) -> np.ndarray:
    """Return, per index into ref.codes, whether the code is in any of the codelists."""
    from reference_data import loader

    codes = pl.concat([loader.read_codelist(c, reference_dir)["code"] for c in codelist_ids])
    return ref.codes.is_in(codes.implode()).to_numpy()


def derived_outcomes(ref: Reference, rows: pl.DataFrame, people: People, cal: Calendar, reference_dir) -> dict:
    """Count, per patient, what the written events show for indicators whose outcome is not
    drawn directly (BP in 5 years, smoking status, statins, reliever issues, CYP diabetes
    checks, SMI health-check components): written independently of the pipeline's engine."""
    pid, code, day = rows["pid"].to_numpy(), rows["code"].to_numpy(), rows["day"].to_numpy()
    r = cal.r

    def any_since(mask: np.ndarray, start: int) -> np.ndarray:
        sel = mask[code] & (day >= start) & (day <= r)
        out = np.zeros(people.n, dtype=bool)
        out[pid[sel]] = True
        return out

    value = rows["value"].to_numpy()

    def valid_pair_since(start: int) -> np.ndarray:
        # A BP reading is a valid same-day pair of one kind (clinic; home / daytime-ambulatory
        # average): a systolic >= 50 and a diastolic >= 20 on one date (DOMAIN.md section 4).
        out = np.zeros(people.n, dtype=bool)
        for systolic, diastolic in ((("bp_systolic_clinic",), ("bp_diastolic_clinic",)),
                                    (("bp_systolic_out_of_office",), ("bp_diastolic_out_of_office", "homebp_diastolic_average"))):
            in_window = (day >= start) & (day <= r)
            s_sel = _codelist_mask(ref, reference_dir, *systolic)[code] & in_window & (value >= 50)
            d_sel = _codelist_mask(ref, reference_dir, *diastolic)[code] & in_window & (value >= 20)
            keys = np.intersect1d(pid[s_sel].astype(np.int64) * 1_000_000 + day[s_sel], pid[d_sel].astype(np.int64) * 1_000_000 + day[d_sel])
            out[keys // 1_000_000] = True
        return out

    smoking = _codelist_mask(ref, reference_dir, "lsmok_cod", "exsmok_cod", "smoking_never", "smoking_ex", "smoking_current")
    hba1c = _codelist_mask(ref, reference_dir, "hba1c_tests", "ifcchbam_cod")
    saba = _codelist_mask(ref, reference_dir, "saba_inhalers_resp02", "saba_inhaler_medications")
    m12, m24, m60 = (months_back(cal.reference_date, m) for m in (12, 24, 60))
    # Counting needs each row once: the injected exact duplicates are dropped from the few
    # reliever rows only (a unique over every event would dominate the generation time).
    issues = rows.filter(pl.Series(saba[code] & (day >= m12) & (day <= r))).unique()
    counted = issues["pid"].to_numpy()
    return {
        "bp_5y": valid_pair_since(m60),
        "bp_12m": valid_pair_since(m12),
        "smoking_24m": any_since(smoking, m24),
        "smoking_12m": any_since(smoking, m12),
        "cholesterol_12m": any_since(_codelist_mask(ref, reference_dir, "cholesterol_tests"), m12),
        "hba1c_12m": any_since(hba1c, m12),
        "bmi_12m": any_since(_codelist_mask(ref, reference_dir, "bmival_cod", "bmiobese_cod", "bmi_stage", "weight_snomed"), m12),
        "alcohol_12m": any_since(_codelist_mask(ref, reference_dir, "alcohol_consumption_gmsde"), m12),
        "statin_12m": any_since(_codelist_mask(ref, reference_dir, "statin_medication"), m12),
        "saba_12m": np.bincount(counted, minlength=people.n),
    }


def reliever_overuse_probability(mean: np.ndarray, threshold: int, shape: float = 1.2) -> np.ndarray:
    """Return P(N >= threshold) for N gamma-Poisson (negative binomial) with the given means.

    Examples:
        >>> round(float(reliever_overuse_probability(np.array([2.8]), 6)[0]), 4)
        0.1551
    """
    from math import exp, lgamma, log

    out = np.zeros(mean.shape)
    for m in np.unique(mean):
        if m <= 0:
            continue
        p = shape / (shape + m)
        below = sum(exp(lgamma(k + shape) - lgamma(shape) - lgamma(k + 1) + shape * log(p) + k * log(1 - p)) for k in range(threshold))
        out[mean == m] = 1.0 - below
    return out


# --- ground truth ---------------------------------------------------------------------------

REGISTER_IDS = {
    "smi": "smi_register", "hypertension": "hypertension_register", "ld": "ld_register", "autism": "autism",
    "copd": "copd_register", "asthma": "asthma_register", "diabetes": "diabetes_register", "epilepsy": "epilepsy_register",
}


def _counts(denominator: np.ndarray, realised: np.ndarray, p: np.ndarray | None, groups: dict,
            breakdowns: dict | None = None) -> dict:
    """Return, per group and overall, the denominator, realised numerator and expected rate.

    `expected_numerator_sd` is sqrt(sum p_i (1 - p_i)): the numerator is a sum of
    independent Bernoulli(p_i) draws, so a correct pipeline's numerator lies within a few
    of these of `expected_rate * n_denominator`. Where the outcome is drawn (p given) and
    `breakdowns` are given, the entry also holds `breakdowns`: see `_breakdown_truth`.
    """
    out: dict = {}
    for name, mask in (*groups.items(), ("all_patients", np.ones(denominator.size, dtype=bool))):
        sel = denominator & mask
        n_den = int(sel.sum())
        entry: dict = {"n_denominator": n_den, "realised_numerator": int(realised[sel].sum())}
        if p is not None:
            entry["expected_rate"] = float(p[sel].mean()) if n_den else None
            entry["expected_numerator_sd"] = float(np.sqrt((p[sel] * (1 - p[sel])).sum()))
        out[name] = entry
    if p is not None:
        c, r = out["core20"]["expected_rate"], out["rest"]["expected_rate"]
        out["gap_core20_vs_rest"] = (c - r) if c is not None and r is not None else None
        if breakdowns is not None:
            out["breakdowns"] = _breakdown_truth(denominator, realised, p, breakdowns)
    return out


def _breakdown_truth(denominator: np.ndarray, realised: np.ndarray, p: np.ndarray, breakdowns: dict) -> dict:
    """Return, per gap-table breakdown, each observable group's expected rate and each gap's expected value.

    `breakdowns` maps a breakdown name to (its attributes, reference group, {group label:
    mask}), the labels being those the gap table publishes. Per group: the denominator,
    realised numerator, expected rate (mean p_i over the group's denominator: the rate
    expected given this sample's covariates) and the numerator's SD. Per compared group
    (not the reference, not a missing-data group, both groups non-empty): `expected_gap`,
    the expected rate minus the reference group's, as a proportion (the gap table's
    `gap` is a difference of proportions, not of percentages), and `expected_gap_sd`,
    sqrt((sd_g / n_g)^2 + (sd_ref / n_ref)^2), the SD of the realised rate difference
    around it (disjoint groups, independent draws).
    """
    from pipelines.segmentation.gaps import NOT_COMPARED_GROUPS

    out: dict = {}
    for breakdown, (attributes, reference, masks) in breakdowns.items():
        groups = {}
        for label, mask in masks.items():
            sel = denominator & mask
            n_den = int(sel.sum())
            groups[label] = {
                "n_denominator": n_den,
                "realised_numerator": int(realised[sel].sum()),
                "expected_rate": float(p[sel].mean()) if n_den else None,
                "expected_numerator_sd": float(np.sqrt((p[sel] * (1 - p[sel])).sum())),
            }
        ref = groups[reference]
        gaps = {}
        for label, g in groups.items():
            if label == reference or label.lower() in NOT_COMPARED_GROUPS or not g["n_denominator"] or not ref["n_denominator"]:
                continue
            gaps[label] = {
                "expected_gap": g["expected_rate"] - ref["expected_rate"],
                "expected_gap_sd": float(np.hypot(g["expected_numerator_sd"] / g["n_denominator"],
                                                  ref["expected_numerator_sd"] / ref["n_denominator"])),
            }
        out[breakdown] = {**attributes, "reference_group": reference, "groups": groups, "gaps": gaps}
    return out


def _observable_breakdowns(groups: dict, observable: np.ndarray, eth: EthnicityCounts) -> dict:
    """Return the gap table's Core20 and broad-ethnicity groups as the pipeline will see them.

    Labels and reference groups are the gap table's own (`gaps.REFERENCE_GROUPS`,
    `cohorts.ETHNICITY_BROAD_BY_GROUP_6`): Core20 by IMD 2019 (the generator's vintage), and
    'rest' for everyone else - a blank, invalid or non-English postcode included, as the gap
    table's 'rest' is "not Core20" (gaps._deprivation_groups); the broad group of the latest
    recorded VALID ethnicity code (a later not-stated code is ignored), 'Not stated' / 'Not known'
    for a patient whose only codes are not-stated / "not recorded" ones, 'unknown' for no code
    (never coded, or dropped by the missing-ethnicity defect) - not the latent group.
    """
    from pipelines.segmentation.cohorts import ETHNICITY_BROAD_BY_GROUP_6, NOT_KNOWN, NOT_STATED
    from pipelines.segmentation.gaps import REFERENCE_GROUPS, UNKNOWN

    ethnicity = {label: eth.recorded_group6 == int(code) - 1 for code, label in ETHNICITY_BROAD_BY_GROUP_6.items()}
    ethnicity[NOT_STATED] = (eth.state == 1) & ~eth.not_known
    ethnicity[NOT_KNOWN] = (eth.state == 1) & eth.not_known
    ethnicity[UNKNOWN] = np.isin(eth.state, (2, 3))
    return {
        "core20": ({"imd_vintage": IMD_VINTAGE}, REFERENCE_GROUPS["core20"],
                   {"core20": groups["core20"], "rest": ~groups["core20"]}),
        "ethnicity_broad": ({}, REFERENCE_GROUPS["ethnicity_broad"], ethnicity),
    }


def build_ground_truth(people, conditions, outcomes, defect_kind, postcode_defects, eth, cal, *, seed, n_patients, icb_code,
                  defect_rate, n_duplicates, include_feeds=True, practices=None) -> dict:
    """Summarise what was injected, with groups as the pipeline can observe them."""
    reg = people.registered
    # The pipeline sees Core20 only through the written postcode: a blank, invalid or
    # non-English postcode puts the patient in neither group.
    observable = ~np.isin(defect_kind, (1, 2, 3))
    groups = {"core20": observable & people.is_core20, "rest": observable & ~people.is_core20}
    breakdowns = _observable_breakdowns(groups, observable, eth)
    o = outcomes
    on = {key: conditions[key].on for key in REGISTER_IDS}
    age = people.age
    adult_smi = reg & on["smi"] & (age >= 18)
    cyp = age <= CYP_MAX_AGE

    # BP case-finding: 40+ not on the hypertension register. Outside the SMI register the
    # reading was drawn with p_case_finding; with SMI (and no hypertension) it comes from
    # the health-check draws: missing only when the BP component was missed (probability
    # (1 - p_smi) * q, q = 0.45 + 0.55^k / k from the forced-miss rule, k = SMI_COMPONENTS)
    # and no older reading was written (0.3 * 0.5).
    q = 0.45 + 0.55**SMI_COMPONENTS / SMI_COMPONENTS
    p_bp = np.where(on["smi"], 1.0 - (1.0 - o["p_smi"]) * q * 0.15, o["p_case_finding"])
    cyp_dm = reg & on["diabetes"] & cyp
    # CYP diabetes checks: HbA1c comes with every diabetic's tests and BP is drawn; with
    # SMI both come from the health-check draws, so those few count at their realised value.
    care = o["hba1c_12m"] & o["bp_12m"]
    p_care = np.where(on["smi"], care.astype(float), o["p_bp_cyp"])
    cvd_risk = reg & (age >= 40) & (on["hypertension"] | on["diabetes"] | o["qrisk_high"])
    indicators = {
        "smi_health_check": {**_counts(adult_smi, o["s_smi"], o["p_smi"], groups, breakdowns), "multipliers": SMI_HEALTH_CHECK},
        "hypertension_treated_to_target": {
            **_counts(reg & on["hypertension"] & (age >= 18), o["s_htn"], o["p_htn"], groups, breakdowns),
            "multipliers": HYPERTENSION_TO_TARGET,
        },
        "smi_hc_blood_pressure": _counts(adult_smi, o["bp_12m"], None, groups),
        "smi_hc_lipids": _counts(adult_smi, o["cholesterol_12m"], None, groups),
        "smi_hc_glucose": _counts(adult_smi, o["hba1c_12m"], None, groups),
        "smi_hc_smoking": _counts(adult_smi, o["smoking_12m"], None, groups),
        "smi_hc_bmi": _counts(adult_smi, o["bmi_12m"], None, groups),
        "smi_hc_alcohol": _counts(adult_smi, o["alcohol_12m"], None, groups),
        "bp_case_finding": _counts(reg & (age >= 40) & ~on["hypertension"], o["bp_5y"], p_bp, groups, breakdowns),
        "lipid_statin": _counts(cvd_risk, o["statin_12m"], None, groups),
        "copd_flu_vaccination": _counts(reg & on["copd"], o["flu_current"], np.where(on["copd"], o["p_flu_copd"], 0.0), groups, breakdowns),
        "copd_pneumococcal_vaccination": _counts(reg & on["copd"], o["s_pneumo"], o["p_pneumo"], groups, breakdowns),
        "copd_covid_vaccination": _counts(reg & on["copd"], o["s_covid"], o["p_covid"], groups, breakdowns),
        "smoking_status_recorded": _counts(reg & (age >= 18), o["smoking_24m"], None, groups),
        "cyp_asthma_reliever_overuse": _counts(
            reg & on["asthma"] & cyp, o["saba_12m"] >= RELIEVER_THRESHOLD,
            reliever_overuse_probability(o["saba_mean"], RELIEVER_THRESHOLD), groups, breakdowns,
        ),
        "cyp_diabetes_cgm": _counts(reg & on["diabetes"] & cyp & o["typed"] & o["type1"], o["s_cgm"], o["p_cgm"], groups, breakdowns),
        "cyp_diabetes_care_processes": _counts(cyp_dm, care, p_care, groups, breakdowns),
        "cyp_epilepsy_review": _counts(reg & on["epilepsy"] & cyp, o["s_review"], o["p_review"], groups, breakdowns),
    }
    if include_feeds:
        indicators.update({
            "maternity_continuity_of_carer": _counts(reg & o["booked"], o["s_coc"], o["p_coc"], groups, breakdowns),
            "cancer_early_stage": _counts(reg & o["staged"], o["early"], o["p_early"], groups, breakdowns),
            "cyp_tooth_extractions": _counts(reg & (age <= 10), o["s_tooth"], o["p_tooth"], groups, breakdowns),
            "cyp_mental_health_access": _counts(reg & cyp, o["s_mh"], o["p_mh"], groups, breakdowns),
        })

    registers = {}
    for key, reg_id in REGISTER_IDS.items():
        st = conditions[key]
        p_on = st.p_on[reg]
        registers[reg_id] = {
            "n_registered": int((reg & st.on).sum()),
            "n_resolved_off_register": int((reg & st.resolved).sum()),
            "n_rediagnosed_on_register": int((reg & st.rediagnosed).sum()),
            "expected_prevalence": float(p_on.mean()) if p_on.size else None,
            "expected_count_sd": float(np.sqrt((p_on * (1 - p_on)).sum())),
        }
    return {
        "generator": GENERATOR,
        "seed": seed,
        "n_patients": n_patients,
        "icb_code": icb_code,
        "imd_vintage": IMD_VINTAGE,
        "reporting_month": cal.reporting_month.isoformat(),
        "reference_date": cal.reference_date.isoformat(),
        "window_start": cal.window_start.isoformat(),
        "n_registered_at_reference_date": int(reg.sum()),
        "n_deregistered_before_reference_date": int((~reg).sum()),
        "registers": registers,
        "indicators": indicators,
        "feeds_included": include_feeds,
        "practices": practices,
        "ics_parameters_assumed": {"campaign_start": "%02d-%02d" % FLU_CAMPAIGN_START,
                                   "reliever_issues_threshold": RELIEVER_THRESHOLD, "cyp_max_age": CYP_MAX_AGE},
        "other_areas_multipliers": OTHER_AREAS,
        "library_multipliers": LIBRARY_RATES,
        "feed_multipliers": FEED_RATES,
        "ethnicity": {
            "n_coded": int((eth.state == 0).sum()),
            "n_not_stated": int(((eth.state == 1) & ~eth.not_known).sum()),
            "n_not_known": int(((eth.state == 1) & eth.not_known).sum()),
            "n_later_unstated_code": int(eth.later_unstated.sum()),
            "n_no_code": int(np.isin(eth.state, (2, 3)).sum()),
            "n_superseded_code": int(eth.superseded.sum()),
        },
        "defects": {
            "defect_rate": defect_rate,
            **postcode_defects,
            "missing_ethnicity": int((eth.state == 3).sum()),
            "duplicate_event_rows": n_duplicates,
        },
    }
