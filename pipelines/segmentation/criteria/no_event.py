"""`no_event`: no code of the codelists inside the window (the negation of `has_event`)."""

from __future__ import annotations

from pipelines.segmentation.criteria.base import Criterion, EvidenceContext, ModelContext, codes_text
from pipelines.segmentation.criteria.has_event import EventSpec


class NoEvent(Criterion):
    """No code of any of the codelists dated inside the window.

    Examples:
        >>> NoEvent.model_validate({"no_event": {"codelists": ["bp_cod"], "within_years": 5}}).describe()
        'no bp_cod code within 5 years'
    """

    key = "no_event"
    no_event: EventSpec

    def describe(self) -> str:
        return f"no {codes_text(self.no_event.codelists)} code {self.no_event.describe()}"

    def compile(self, model: ModelContext) -> str:
        return f"({model.count(self.no_event.codelists, self.no_event)} = 0)"

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.no_event
        return patient.latest(spec.codelists, patient.window_start(spec), codes_text(spec.codelists))
