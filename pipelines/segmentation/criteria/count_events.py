"""`count_events`: at least N coded rows of the codelists inside the window."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipelines.segmentation.criteria.base import CodelistIds, Criterion, EvidenceContext, ModelContext, Window, codes_text


class CountSpec(Window):
    """Codelists, a window and the least number of coded rows."""

    codelists: CodelistIds
    at_least: Annotated[int, Field(gt=0)]


class CountEvents(Criterion):
    """At least `at_least` rows of the codelists inside the window.

    Every coded row counts (two issues on one day are two issues); exact duplicate rows
    were dropped when the extract was staged.

    Examples:
        >>> CountEvents.model_validate({"count_events": {"codelists": ["saba"], "within_months": 12, "at_least": 6}}).describe()
        'at least 6 saba codes within 12 months'
    """

    key = "count_events"
    count_events: CountSpec

    def describe(self) -> str:
        spec = self.count_events
        return f"at least {spec.at_least} {codes_text(spec.codelists)} codes {spec.describe()}"

    def compile(self, model: ModelContext) -> str:
        spec = self.count_events
        return f"({model.count(spec.codelists, spec)} >= {spec.at_least})"

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.count_events
        start = patient.window_start(spec)
        return f"{patient.n_rows(spec.codelists, start)} issue(s) counted; " + patient.latest(
            spec.codelists, start, codes_text(spec.codelists))
