"""`age`: whole years of age at R within limits."""

from __future__ import annotations

from pipelines.segmentation.criteria.base import AgeSpec, Criterion, EvidenceContext, ModelContext


class Age(Criterion):
    """Age in whole years at R (the birthday itself counts), limits inclusive; unknown age fails.

    Examples:
        >>> Age(age=AgeSpec(min=40)).describe()
        'aged 40 or over'
    """

    key = "age"
    age: AgeSpec

    def describe(self) -> str:
        return self.age.describe()

    def compile(self, model: ModelContext) -> str:
        return self.age.sql(model.attribute("age"))

    def evidence(self, patient: EvidenceContext) -> str:
        return f"age {patient.person.get('age')} at R"
