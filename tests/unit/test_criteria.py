"""Unit: a criterion type is one class in one place; adding one touches no other file.

The first tests define a new type here, in this test module only, and check that the
definition files accept it, the catalogue describes it, the patient model evaluates it in
its one pass and explain shows its evidence — with no change anywhere else. The last
checks `any_value`, the shipped worked example of the README, as a literal table.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from pydantic import Field

from pipelines.segmentation import criteria
from pipelines.segmentation.cohorts import evaluate_indicators, indicator_catalogue
from pipelines.segmentation.criteria.base import CodelistIds, Criterion, EvidenceContext, ModelContext, Window
from pipelines.segmentation.definitions import DefinitionError, parse_definitions
from pipelines.segmentation.explain import explain_patient

R = date(2025, 3, 31)
HEADER = "\n    version: 1\n    title: t\n    description: d\n    source: s\n"
CODELISTS = {"bp_cod": frozenset({"BP"}), "hba1c_tests": frozenset({"HBA1C"})}
EVENTS = pl.DataFrame({
    "patient_id": ["a", "a", "a", "b", "c"],
    "code": ["BP", "BP", "BP", "BP", "HBA1C"],
    "event_date": [date(2025, 1, 2), date(2025, 1, 2), date(2025, 2, 3), date(2025, 3, 1), date(2025, 3, 1)],
    "value": [None] * 5,
}, schema_overrides={"value": pl.Float64})
PATIENTS = pl.DataFrame({"patient_id": ["a", "b", "c"], "date_of_birth": [date(1970, 1, 1)] * 3})


class DaysSpec(Window):
    codelists: CodelistIds
    at_least: int = Field(gt=0)


class EventOnDays(Criterion):
    """Codes of the codelists on at least N different days in the window (a test-only type)."""

    key = "event_on_days"
    event_on_days: DaysSpec

    def describe(self) -> str:
        return f"{' / '.join(self.event_on_days.codelists)} on at least {self.event_on_days.at_least} days"

    def compile(self, model: ModelContext) -> str:
        spec = self.event_on_days
        days = model.aggregate("distinct_days", spec.codelists, spec, "count(DISTINCT event_date)", fill="0")
        return f"({days} >= {spec.at_least})"

    def evidence(self, patient: EvidenceContext) -> str:
        rows = patient.rows(self.event_on_days.codelists, patient.window_start(self.event_on_days))
        return f"{rows['event_date'].n_unique()} day(s)"


@pytest.fixture(autouse=True)
def only_for_this_module():
    criteria.register_type(EventOnDays)  # defining the class registered it; tests after this module never see it
    yield
    criteria.base.REGISTRY.pop("event_on_days", None)  # leave the registry as the package defines it
    criteria.rebuild()


def definitions(numerator: str):
    texts = {
        "indicators.yaml": "indicators:\n  - id: days" + HEADER + "    clinical_area: x\n    direction: higher_is_better\n"
                           "    denominator: {age: {min: 18}}\n" + numerator,
    }
    return parse_definitions(texts, known_codelists=set(CODELISTS))


def test_a_type_defined_in_one_place_is_validated_evaluated_described_and_explained():
    defs = definitions("    numerator: {event_on_days: {codelists: [bp_cod], within_months: 12, at_least: 2}}\n")
    result = evaluate_indicators(defs, PATIENTS.lazy(), EVENTS.lazy(), None, CODELISTS, R).collect()
    assert result.select("patient_id", "is_numerator").sort("patient_id").rows() == [("a", True), ("b", False), ("c", False)]
    assert indicator_catalogue(defs)["numerator_rule"].to_list() == ["bp_cod on at least 2 days"]
    lines = explain_patient(defs, CODELISTS, PATIENTS.head(1), EVENTS.filter(patient_id="a"), R).lines()
    assert "      [met    ] numerator: bp_cod on at least 2 days -- 2 day(s)" in lines


def test_its_schema_is_enforced_like_any_other_type():
    with pytest.raises(DefinitionError, match=r"field 'numerator.event_on_days.at_least'"):
        definitions("    numerator: {event_on_days: {codelists: [bp_cod], within_months: 12, at_least: 0}}\n")
    with pytest.raises(DefinitionError, match=r"unknown codelist 'nope'"):
        definitions("    numerator: {event_on_days: {codelists: [nope], within_months: 12, at_least: 1}}\n")


def test_any_value_the_readme_example_counts_any_reading_in_the_window():
    # R = 2025-03-31, so 12 months start on 2024-04-01; the limit is inclusive; no value is no reading.
    events = pl.DataFrame({
        "patient_id": ["high_then_low", "high_then_low", "at_limit", "too_early", "no_value", "nan"],
        "code": ["HBA1C"] * 6,
        "event_date": [date(2024, 6, 1), date(2025, 2, 1), date(2025, 3, 31), date(2024, 3, 31), date(2025, 1, 1),
                       date(2025, 1, 1)],
        "value": [52.0, 40.0, 48.0, 60.0, None, float("nan")],
    })
    patients = pl.DataFrame({"patient_id": ["high_then_low", "at_limit", "too_early", "no_value", "nan", "none"],
                             "date_of_birth": [date(1970, 1, 1)] * 6})
    defs = definitions("    numerator: {any_value: {codelists: [hba1c_tests], within_months: 12, at_least: 48}}\n")
    result = evaluate_indicators(defs, patients.lazy(), events.lazy(), None, CODELISTS, R).collect()
    assert dict(result.select("patient_id", "is_numerator").rows()) == {
        "high_then_low": True, "at_limit": True, "too_early": False, "no_value": False, "nan": False, "none": False}
    assert indicator_catalogue(defs)["numerator_rule"].to_list() == ["any hba1c_tests value within 12 months >= 48"]
