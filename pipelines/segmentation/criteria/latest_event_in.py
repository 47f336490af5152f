"""`latest_event_in`: the latest code among some codelists is one of `matches`."""

from __future__ import annotations

from pydantic import model_validator

from pipelines.segmentation.criteria.base import CodelistIds, Criterion, EvidenceContext, ModelContext, Window, codes_text


class LatestEventInSpec(Window):
    """Codelists, the ones among them that must hold the latest code, and a window."""

    codelists: CodelistIds
    matches: CodelistIds

    @model_validator(mode="after")
    def _matches_among_codelists(self) -> LatestEventInSpec:
        extra = [m for m in self.matches if m not in self.codelists]
        if extra:
            raise ValueError(f"matches {extra} must also be listed in codelists")
        return self


class LatestEventIn(Criterion):
    """The latest code of `codelists` (in the window) is in `matches`, e.g. current smoker.

    True when the latest date has a code in `matches` and none outside it: a conflicting
    code on the same day (current and ex-smoker) does not count, the same tie rule as a
    register's same-day resolved code.

    Examples:
        >>> LatestEventIn.model_validate({"latest_event_in": {"codelists": ["lsmok_cod", "exsmok_cod"],
        ...     "matches": ["lsmok_cod"], "ever": True}}).describe()
        'the latest lsmok_cod / exsmok_cod code (ever) is lsmok_cod'
    """

    key = "latest_event_in"
    latest_event_in: LatestEventInSpec

    def describe(self) -> str:
        spec = self.latest_event_in
        return f"the latest {codes_text(spec.codelists)} code ({spec.describe()}) is {codes_text(spec.matches)}"

    def compile(self, model: ModelContext) -> str:
        spec = self.latest_event_in
        matched = model.latest_date(spec.matches, spec)
        other = model.latest_date(spec.codelists, spec, exclude=spec.matches)
        return f"coalesce({matched} is not null and ({other} is null or {matched} > {other}), false)"

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.latest_event_in
        return patient.latest_codes(spec.codelists, patient.window_start(spec))
