"""`in_cohort`: a member of another cohort at R."""

from __future__ import annotations

from pipelines.segmentation.criteria.base import Criterion, EvidenceContext, Identifier, ModelContext


class InCohort(Criterion):
    """A member of the named cohort at R (cycles are refused when definitions load).

    Examples:
        >>> InCohort(in_cohort="core20").describe()
        'in cohort core20'
    """

    key = "in_cohort"
    in_cohort: Identifier

    def uses(self) -> list[tuple[str, str]]:
        return [("cohort", self.in_cohort)]

    def check(self, registers: set[str], cohorts: set[str]) -> list[tuple[str, str]]:
        return [] if self.in_cohort in cohorts else [("", f"unknown cohort '{self.in_cohort}'")]

    def describe(self) -> str:
        return f"in cohort {self.in_cohort}"

    def compile(self, model: ModelContext) -> str:
        return model.cohort(self.in_cohort)

    def evidence(self, patient: EvidenceContext) -> str:
        return f"see cohort {self.in_cohort}"
