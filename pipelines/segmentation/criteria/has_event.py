"""`has_event`: at least one code of the codelists inside the window."""

from __future__ import annotations

from pipelines.segmentation.criteria.base import CodelistIds, Criterion, EvidenceContext, ModelContext, Window, codes_text


class EventSpec(Window):
    """Codelists and a window ending on R."""

    codelists: CodelistIds


class HasEvent(Criterion):
    """A code of any of the codelists dated inside the window.

    Examples:
        >>> HasEvent.model_validate({"has_event": {"codelists": ["bp_cod"], "within_years": 5}}).describe()
        'a bp_cod code within 5 years'
    """

    key = "has_event"
    has_event: EventSpec

    def describe(self) -> str:
        return f"a {codes_text(self.has_event.codelists)} code {self.has_event.describe()}"

    def compile(self, model: ModelContext) -> str:
        return f"({model.count(self.has_event.codelists, self.has_event)} > 0)"

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.has_event
        return patient.latest(spec.codelists, patient.window_start(spec), codes_text(spec.codelists))
