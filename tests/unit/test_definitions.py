"""Unit: the definition loader names the file, definition and field in every error."""

from __future__ import annotations

import pytest

from pipelines.segmentation.cohorts import load_codelists
from pipelines.segmentation.definitions import DefinitionError, load_definitions, parse_definitions

HEADER = """
    version: 1
    title: t
    description: d
    source: s
"""


def indicator(body: str, indicator_id: str = "smi_health_check") -> str:
    return f"indicators:\n  - id: {indicator_id}{HEADER}    clinical_area: smi\n    direction: higher_is_better\n{body}"


REGISTERS = "registers:\n  - id: smi_register" + HEADER + "    diagnosis: [mh_cod]\n"
KNOWN = {"mh_cod", "bp_cod", "cholesterol_tests"}


def problems(texts: dict[str, str]) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definitions(texts, known_codelists=KNOWN)
    return caught.value.problems


def test_shipped_definitions_are_valid():
    defs = load_definitions()
    assert {"smi_register", "hypertension_register", "ld_register", "autism", "copd_register",
            "asthma_register", "diabetes_register", "epilepsy_register"} <= set(defs.registers)
    assert {"core20", "smi", "ld_autism", "nn_cvd_focus"} <= set(defs.cohorts)
    assert {"smi_health_check", "hypertension_treated_to_target"} <= set(defs.indicators)


def test_unknown_codelist_names_file_definition_and_field():
    body = """    denominator: {on_register: smi_register}
    numerator:
      all_of:
        - has_event: {codelists: [bp_cod], within_months: 12}
        - has_event: {codelists: [cholesterol_tests], within_months: 12}
        - has_event: {codelists: [foo], within_months: 12}
"""
    assert problems({"registers.yaml": REGISTERS, "indicators.yaml": indicator(body)}) == [
        "indicators.yaml: indicator 'smi_health_check': field 'numerator.all_of[2].has_event.codelists[0]': "
        "unknown codelist 'foo'"
    ]


def test_misspelt_key_is_an_error():
    body = "    denominator: {on_register: smi_register}\n    numerator: {age: {min: 18}}\n    breakdonws: [sex]\n"
    assert problems({"registers.yaml": REGISTERS, "indicators.yaml": indicator(body)}) == [
        "indicators.yaml: indicator 'smi_health_check': field 'breakdonws': unknown key 'breakdonws'"
    ]


def test_misspelt_key_inside_a_criterion_is_an_error():
    body = "    denominator: {on_register: smi_register}\n    numerator: {has_event: {codelist: [bp_cod], ever: true}}\n"
    found = problems({"registers.yaml": REGISTERS, "indicators.yaml": indicator(body)})
    assert "indicators.yaml: indicator 'smi_health_check': field 'numerator.has_event.codelist': unknown key 'codelist'" in found


def test_unknown_criterion_type_is_an_error():
    body = "    denominator: {on_register: smi_register}\n    numerator: {any_of: [{age: {min: 1}}, {has_evnt: {}}]}\n"
    (found,) = problems({"registers.yaml": REGISTERS, "indicators.yaml": indicator(body)})
    assert found.startswith(
        "indicators.yaml: indicator 'smi_health_check': field 'numerator.any_of[1]': unknown criterion type 'has_evnt'"
    )


def test_window_needs_exactly_one_length():
    body = "    denominator: {on_register: smi_register}\n    numerator: {has_event: {codelists: bp_cod, within_months: 12, ever: true}}\n"
    (found,) = problems({"registers.yaml": REGISTERS, "indicators.yaml": indicator(body)})
    assert found.startswith("indicators.yaml: indicator 'smi_health_check': field 'numerator.has_event': give exactly one of")


def test_unknown_register_and_register_codelist_are_errors():
    registers = REGISTERS.replace("[mh_cod]", "[mh_cod]\n    resolved: [smhres_typo]")
    body = "    denominator: {on_register: smi_registr}\n    numerator: {age: {min: 18}}\n"
    assert problems({"registers.yaml": registers, "indicators.yaml": indicator(body)}) == [
        "registers.yaml: register 'smi_register': field 'resolved[0]': unknown codelist 'smhres_typo'",
        "indicators.yaml: indicator 'smi_health_check': field 'denominator.on_register': unknown register 'smi_registr'",
    ]


def test_cohort_cycle_is_an_error():
    cohorts = "cohorts:\n" + "".join(
        f"  - id: {cid}{HEADER}    criteria: {{in_cohort: {ref}}}\n" for cid, ref in (("a", "b"), ("b", "a"))
    )
    assert problems({"cohorts.yaml": cohorts}) == [
        "cohorts.yaml: cohort 'a': field 'criteria': cohort refers to itself through in_cohort",
        "cohorts.yaml: cohort 'b': field 'criteria': cohort refers to itself through in_cohort",
    ]


def test_duplicate_id_names_both_files():
    assert problems({"registers.yaml": REGISTERS, "more.yaml": REGISTERS}) == [
        "more.yaml: register 'smi_register': field 'id': duplicate id (also in registers.yaml)"
    ]


def test_file_must_name_its_kind():
    assert problems({"x.yaml": "indicator:\n  - id: a\n"}) == [
        "x.yaml: the file must hold exactly one top-level key, one of registers, cohorts, indicators, "
        "ics, codelists, with a list of definitions (or the configuration)"
    ]


@pytest.mark.reference
def test_every_shipped_codelist_loads_from_the_reference_directory():
    defs = load_definitions()
    codelists = load_codelists(defs)
    assert set(codelists) == set(defs.codelist_ids())
    assert all(len(codes) > 0 for codes in codelists.values())
    assert all(code.isdigit() for codes in codelists.values() for code in codes)
