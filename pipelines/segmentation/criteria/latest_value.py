"""`latest_value`: the latest value of a coded observation inside a window against limits."""

from __future__ import annotations

from pydantic import model_validator

from pipelines.segmentation.criteria.base import CodelistIds, Criterion, EvidenceContext, ModelContext, Window, codes_text


class LatestValueRangeSpec(Window):
    """Codelists, a window and the limits (both inclusive)."""

    codelists: CodelistIds
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _limits(self) -> LatestValueRangeSpec:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most or both")
        return self


class LatestValue(Criterion):
    """The lowest value on the latest date with a value inside the window, within the limits.

    No value in the window fails the criterion.

    Examples:
        >>> LatestValue.model_validate({"latest_value": {"codelists": ["qrisk"], "within_years": 5, "at_least": 10}}).describe()
        'latest qrisk value within 5 years >= 10'
    """

    key = "latest_value"
    latest_value: LatestValueRangeSpec

    def describe(self) -> str:
        spec = self.latest_value
        limits = [f">= {spec.at_least:g}"] if spec.at_least is not None else []
        limits += [f"<= {spec.at_most:g}"] if spec.at_most is not None else []
        return f"latest {codes_text(spec.codelists)} value {spec.describe()} {' and '.join(limits)}"

    def compile(self, model: ModelContext) -> str:
        spec = self.latest_value
        value = model.latest_value(spec.codelists, spec)
        parts = [f"{value} >= {spec.at_least!r}"] if spec.at_least is not None else []
        parts += [f"{value} <= {spec.at_most!r}"] if spec.at_most is not None else []
        return f"coalesce({' and '.join(parts)}, false)"

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.latest_value
        return patient.latest_value(spec.codelists, patient.window_start(spec))
