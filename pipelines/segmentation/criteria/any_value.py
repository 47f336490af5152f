"""`any_value`: any reading of the codelists inside the window at or above / at or below a limit.

The worked example of adding a criterion type (README, "Adding a criterion type"): this
file is the whole change. `latest_value` asks about the latest reading only; this one
asks whether any reading in the window crossed a limit, e.g. a raised HbA1c (>= 48
mmol/mol) in the last 12 months.
"""

from __future__ import annotations

from pydantic import model_validator

from pipelines.segmentation.criteria.base import CodelistIds, Criterion, EvidenceContext, ModelContext, Window, codes_text


class AnyValueSpec(Window):
    """Codelists, a window and the limits a reading must meet (both inclusive)."""

    codelists: CodelistIds
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _limits(self) -> AnyValueSpec:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most or both")
        return self

    def test(self, value: str) -> str:
        """Return the limits as SQL over a value expression."""
        parts = [f"{value} >= {self.at_least!r}"] if self.at_least is not None else []
        parts += [f"{value} <= {self.at_most!r}"] if self.at_most is not None else []
        return " and ".join(parts)


class AnyValue(Criterion):
    """At least one reading (a row with a value) of the codelists in the window within the limits.

    Examples:
        >>> AnyValue.model_validate({"any_value": {"codelists": ["hba1c_tests"], "within_months": 12,
        ...     "at_least": 48}}).describe()
        'any hba1c_tests value within 12 months >= 48'
    """

    key = "any_value"
    any_value: AnyValueSpec

    def describe(self) -> str:
        spec = self.any_value
        limits = [f">= {spec.at_least:g}"] if spec.at_least is not None else []
        limits += [f"<= {spec.at_most:g}"] if spec.at_most is not None else []
        return f"any {codes_text(spec.codelists)} value {spec.describe()} {' and '.join(limits)}"

    def compile(self, model: ModelContext) -> str:
        spec = self.any_value
        # One more aggregate in the month's single pass over the events; no reading is "no".
        return model.aggregate("any_value", spec.codelists, spec, f"bool_or({spec.test('value')})", fill="false",
                               needs_value=True)

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.any_value
        start = patient.window_start(spec)
        rows = patient.rows(spec.codelists, start, needs_value=True)
        low, high = spec.at_least, spec.at_most
        hits = rows.filter(*([rows["value"] >= low] if low is not None else []), *([rows["value"] <= high] if high is not None else []))
        if hits.is_empty():
            return f"{rows.height} reading(s) in the window, none within the limits"
        last = hits.row(-1, named=True)
        return f"{hits.height} of {rows.height} reading(s) within the limits; latest {last['value']:g} on {last['event_date']}"
