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


# --- ICS parameters, not-available definitions, feeds, folder-pinned codelists ---------------

ICS = """ics:
  name: Test ICS
  plus_groups: [smi]
  parameters:
    threshold: 6
    start: "09-01"
"""
COHORTS = "cohorts:\n  - id: smi" + HEADER + "    criteria: {on_register: smi_register}\n"


def test_parameters_are_substituted_and_unknown_ones_named():
    body = """    denominator: {on_register: smi_register}
    numerator:
      all_of:
        - count_events: {codelists: [bp_cod], within_months: 12, at_least: "${threshold}"}
        - has_event: {codelists: [bp_cod], campaign_from: "${start}"}
"""
    defs = parse_definitions({"ics.yaml": ICS, "registers.yaml": REGISTERS, "cohorts.yaml": COHORTS,
                              "indicators.yaml": indicator(body)}, known_codelists=KNOWN)
    numerator = defs.indicators["smi_health_check"].numerator
    assert numerator.all_of[0].count_events.at_least == 6
    assert numerator.all_of[1].has_event.campaign_from == "09-01"
    wrong = body.replace("${threshold}", "${thresold}")
    assert problems({"ics.yaml": ICS, "registers.yaml": REGISTERS, "cohorts.yaml": COHORTS, "indicators.yaml": indicator(wrong)}) == [
        "indicators.yaml: indicator 'smi_health_check': field 'numerator.all_of[0].count_events.at_least': "
        "unknown parameter 'thresold'; define it under ics.parameters"
    ]


def test_ics_names_only_known_cohorts():
    bad = ICS.replace("plus_groups: [smi]", "plus_groups: [smi, homeless]")
    assert problems({"ics.yaml": bad, "registers.yaml": REGISTERS, "cohorts.yaml": COHORTS}) == [
        "ics.yaml: ics: field 'plus_groups[1]': unknown cohort 'homeless'"
    ]


def test_an_indicator_needs_rules_or_a_reason_not_both():
    assert problems({"registers.yaml": REGISTERS, "indicators.yaml": indicator("    denominator: {on_register: smi_register}\n")}) == [
        "indicators.yaml: indicator 'smi_health_check': field '': give denominator and numerator, or "
        "not_available_reason when no shared codelist or feed supports it"
    ]
    defs = parse_definitions({"registers.yaml": REGISTERS, "indicators.yaml": indicator(
        "    denominator: {on_register: smi_register}\n    not_available_reason: no codelist\n")}, known_codelists=KNOWN)
    assert defs.availability("indicator", "smi_health_check") == "no codelist"


def test_feed_criteria_are_checked_against_the_feed_contracts():
    body = """    denominator: {has_record: {feed: maternty, within_months: 12}}
    numerator: {has_record: {feed: cancer_registry, within_months: 12, where: {stage: ["1"], grade: [1]}}}
"""
    assert problems({"indicators.yaml": indicator(body)}) == [
        "indicators.yaml: indicator 'smi_health_check': field 'denominator.has_record.feed': unknown feed 'maternty'; "
        "expected one of ['cancer_registry', 'dental_extractions', 'maternity', 'mh_contacts']",
        "indicators.yaml: indicator 'smi_health_check': field 'numerator.has_record.where.stage': values must be int "
        "(the column is Int8)",
        "indicators.yaml: indicator 'smi_health_check': field 'numerator.has_record.where.grade': feed 'cancer_registry' "
        "has no such column; it has ['diagnosis_date', 'stage', 'tumour_site']",
    ]
    good = parse_definitions({"indicators.yaml": indicator(body.replace("maternty", "maternity").replace(', grade: [1]', "")
                                                                .replace('["1"]', "[1, 2]"))}, known_codelists=KNOWN)
    assert good.feeds_used("indicator", "smi_health_check") == ["cancer_registry", "maternity"]
    assert good.availability("indicator", "smi_health_check", ["maternity"]) == (
        "linked feed(s) ['cancer_registry'] not supplied in this month's extract"
    )


def test_a_definitions_folder_pins_its_own_codelists(tmp_path):
    import hashlib

    from reference_data.loader import ReferenceDataError

    (tmp_path / "registers.yaml").write_text(REGISTERS.replace("[mh_cod]", "[my_smi_codes]"))
    csv = "code,term\n111111,one\n222222,two\n"
    (tmp_path / "my_smi.csv").write_text(csv)
    pin = hashlib.sha256(csv.encode()).hexdigest()
    (tmp_path / "codelists.yaml").write_text(
        f"codelists:\n  my_smi_codes:\n    path: my_smi.csv\n    sha256: {pin}\n    source: local\n    version: '1'\n"
    )
    defs = load_definitions(tmp_path, known_codelists=KNOWN)
    assert load_codelists(defs) == {"my_smi_codes": frozenset({"111111", "222222"})}
    # A changed file is refused, naming the file and where its pin is recorded.
    (tmp_path / "my_smi.csv").write_text(csv + "333333,three\n")
    with pytest.raises(ReferenceDataError, match=r"my_smi.csv \('my_smi_codes'\) differs from its pin"):
        load_codelists(defs)


@pytest.mark.reference
def test_a_changed_shared_codelist_is_refused_at_run_time(tmp_path, monkeypatch):
    # A copy of the reference directory whose hypertension codelist has one code removed.
    from reference_data.loader import ReferenceDataError, resolve_reference_dir

    source = resolve_reference_dir()
    (tmp_path / "codelists").mkdir()
    for path in source.iterdir():
        if path.is_file():
            (tmp_path / path.name).symlink_to(path)
    for path in (source / "codelists").iterdir():
        (tmp_path / "codelists" / path.name).symlink_to(path)
    target = tmp_path / "codelists" / "nhsd-primary-care-domain-refsets-hyp_cod.csv"
    lines = target.read_text().splitlines(keepends=True)
    target.unlink()
    target.write_text("".join(lines[:-1]))
    defs = load_definitions()
    with pytest.raises(ReferenceDataError, match=r"nhsd-primary-care-domain-refsets-hyp_cod.csv \('hyp_cod'\) differs from its pin"):
        load_codelists(defs, tmp_path)


def test_manifest_codelists_carry_source_version_and_sha256():
    from reference_data.loader import load_manifest

    manifest = load_manifest()
    assert len(manifest.codelists) == 72
    for entry in manifest.codelists.values():
        assert entry.source and entry.version and len(entry.sha256) == 64, entry.file_id


def test_a_codelist_selection_narrows_its_published_file_and_never_adds_a_code(monkeypatch):
    import dataclasses

    from reference_data import loader
    from reference_data.loader import ReferenceDataError, load_manifest

    manifest = load_manifest()
    clinic = loader.read_codelist("bp_systolic_clinic")
    full = loader.read_codelist("systolic_blood_pressure_qof")
    assert set(clinic["code"]) < set(full["code"]) and "314439003" not in set(clinic["code"])  # no maximum
    never = loader.read_codelist("smoking_never")
    assert set(never["smoking_category"]) == {"never"} and never.height == 10
    # A selection naming a code the file does not hold is refused, naming the codelist and file.
    entry = dataclasses.replace(manifest.codelists["bp_systolic_clinic"], select=(("code", ("271649006", "999999999")),))
    bad = dataclasses.replace(manifest, codelists={**manifest.codelists, "bp_systolic_clinic": entry})
    monkeypatch.setattr(loader, "load_manifest", lambda: bad)
    with pytest.raises(ReferenceDataError, match=r"'bp_systolic_clinic' selects code value\(s\) \['999999999'\]"):
        loader.read_codelist("bp_systolic_clinic")
