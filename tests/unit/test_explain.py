"""Unit: explain names the rule, code, term and date that decided each verdict; diff names movers' causes."""

from __future__ import annotations

from datetime import date

import polars as pl

from pipelines.segmentation.definition_diff import MonthData, diff_definitions, format_changes
from pipelines.segmentation.definitions import parse_definitions
from pipelines.segmentation.explain import explain_patient

R = date(2025, 3, 31)
HEADER = "\n    version: 1\n    title: t\n    description: d\n    source: s\n"
TEXTS = {
    "registers.yaml": "registers:\n  - id: smi_register" + HEADER + "    diagnosis: [mh_cod]\n    resolved: [smhres]\n"
                      "  - id: hyp" + HEADER + "    diagnosis: [hyp_cod]\n",
    "cohorts.yaml": "cohorts:\n  - id: smi" + HEADER + "    criteria: {on_register: smi_register}\n"
                    "  - id: homeless" + HEADER + "    not_available_reason: no codelist\n",
    "indicators.yaml": (
        "indicators:\n  - id: smi_bp" + HEADER + "    clinical_area: smi\n    direction: higher_is_better\n"
        "    denominator:\n      all_of:\n        - in_cohort: smi\n        - age: {min: 18}\n"
        "    numerator:\n      has_event: {codelists: [bp_cod], within_months: 12}\n"
    ),
}
CODELISTS = {"mh_cod": frozenset({"111"}), "smhres": frozenset({"222"}), "hyp_cod": frozenset({"333"}), "bp_cod": frozenset({"444"})}
TERMS = {"mh_cod": {"111": "Schizophrenia"}, "bp_cod": {"444": "Blood pressure reading"}}
EVENTS = pl.DataFrame({
    "patient_id": ["p", "p", "p", "p", "q"],
    "code": ["111", "222", "111", "444", "444"],
    "event_date": [date(2015, 1, 1), date(2016, 1, 1), date(2019, 6, 30), date(2023, 5, 1), date(2024, 6, 1)],
    "value": [None] * 5,
}, schema_overrides={"value": pl.Float64})


def test_explain_names_the_deciding_codes_and_dates():
    defs = parse_definitions(TEXTS, known_codelists=set(CODELISTS))
    patient = pl.DataFrame({"patient_id": ["p"], "date_of_birth": [date(1970, 1, 1)]})
    explanation = explain_patient(defs, CODELISTS, patient, EVENTS.filter(pl.col("patient_id") == "p"), R,
                                  term_lookup=lambda codelist_id: TERMS.get(codelist_id, {}))
    verdicts = {(r.kind, r.definition_id): r.verdict for r in explanation.results}
    assert verdicts == {("register", "smi_register"): "in", ("register", "hyp"): "out", ("cohort", "smi"): "in",
                        ("cohort", "homeless"): "", ("indicator", "smi_bp"): "den"}
    text = "\n".join(explanation.lines())
    # On the register because of the re-diagnosis after the resolution, named with its term and date.
    assert "IN   smi_register v1" in text
    assert "latest 111 (Schizophrenia) on 2019-06-30; 2 in all; resolved: latest 222 on 2016-01-01" in text
    # In the denominator, not the numerator: the BP reading is outside the 12 months.
    assert "DEN  smi_bp v1" in text
    assert "[not met] numerator: a bp_cod code within 12 months -- no bp_cod code since 2024-04-01" in text
    assert "[met    ] denominator.all_of[1]: aged 18 or over -- age 55 at R" in text
    assert "--  homeless v1: not available - no codelist" in text


def test_diff_counts_movers_and_names_the_changed_code():
    old = parse_definitions(TEXTS, known_codelists=set(CODELISTS))
    new = parse_definitions(
        dict(TEXTS, **{"indicators.yaml": TEXTS["indicators.yaml"].replace("within_months: 12", "within_months: 24")}),
        known_codelists=set(CODELISTS),
    )
    patients = pl.DataFrame({"patient_id": ["p", "q"], "date_of_birth": [date(1970, 1, 1), date(1970, 1, 1)]})
    data = MonthData(patients.lazy(), EVENTS.lazy(), None, None, {}, R)
    # A rule change: p's 2023 BP reading now counts.
    changes = {(c.kind, c.definition_id): c for c in diff_definitions(old, new, CODELISTS, CODELISTS, data)}
    bp = changes[("indicator", "smi_bp")]
    assert bp.status == "changed"
    assert [(p.part, p.n_old, p.n_new, p.n_entered, p.n_left) for p in bp.parts] == [("denominator", 1, 1, 0, 0), ("numerator", 0, 1, 1, 0)]
    assert bp.rule_changes == ["indicator 'smi_bp': numerator.has_event.within_months: 12 -> 24"]
    # A codelist change: removing the re-diagnosis code takes p off the register, out of the
    # cohort and out of the denominator; the code and its term are named as the cause.
    smaller = dict(CODELISTS, mh_cod=frozenset({"999"}))
    changes = {(c.kind, c.definition_id): c for c in diff_definitions(
        old, old, CODELISTS, smaller, data, term_lookup=lambda codelist_id: TERMS.get(codelist_id, {}))}
    cohort = changes[("cohort", "smi")]
    assert [(p.n_old, p.n_new, p.n_left) for p in cohort.parts] == [(1, 0, 1)]
    assert "code 111 (Schizophrenia) removed from mh_cod: 1 of 1 mover(s) have it" in cohort.code_changes
    assert "code 999 added to mh_cod: 0 of 1 mover(s) have it" in cohort.code_changes
    lines = format_changes(list(changes.values()))
    assert lines[-1] == "2 other definition(s): no change and no movers"  # hyp, and homeless (not available)
    assert all("'p'" not in line for line in lines)


def test_explain_names_the_deciding_bp_pair_and_skips_rows_that_are_no_reading():
    texts = dict(TEXTS, **{"indicators.yaml": (
        "indicators:\n  - id: bp_control" + HEADER + "    clinical_area: hyp\n    direction: higher_is_better\n"
        "    denominator: {on_register: hyp}\n"
        "    numerator:\n      bp_reading:\n        within_months: 12\n"
        "        kinds: [{name: clinic, systolic: [sys], diastolic: [dia]}]\n"
        "        thresholds: [{age_below: 80, systolic: 140, diastolic: 90}]\n"
    )})
    codelists = dict(CODELISTS, sys=frozenset({"555"}), dia=frozenset({"666"}))
    defs = parse_definitions(texts, known_codelists=set(codelists))
    patient = pl.DataFrame({"patient_id": ["p"], "date_of_birth": [date(1970, 1, 1)]})
    events = pl.DataFrame({
        "patient_id": ["p"] * 6,
        "code": ["333", "555", "666", "555", "555", "666"],
        # a valid pair 138/85 on 2025-01-10 (two systolics: the lowest counts), then an invalid
        # systolic (45) beside a diastolic on 2025-02-01: no reading.
        "event_date": [date(2010, 1, 1), date(2025, 1, 10), date(2025, 1, 10), date(2025, 1, 10), date(2025, 2, 1), date(2025, 2, 1)],
        "value": [None, 150.0, 85.0, 138.0, 45.0, 70.0],
    }, schema_overrides={"value": pl.Float64})
    explanation = explain_patient(defs, codelists, patient, events, R, term_lookup=lambda codelist_id: {})
    text = "\n".join(explanation.lines())
    assert "NUM  bp_control v1" in text
    assert "latest valid pair on 2025-01-10: clinic 138/85; age 55" in text
