"""`latest_value_at_most`: the latest systolic and diastolic readings at or below age-banded limits."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipelines.segmentation.criteria.base import CodelistIds, Criterion, EvidenceContext, ModelContext, Strict, codes_text


class Threshold(Strict):
    """One age band's BP limits; readings exactly at a limit count as controlled (QOF)."""

    age_below: int | None = None
    age_from: int | None = None
    systolic: Annotated[float, Field(gt=0)]
    diastolic: Annotated[float, Field(gt=0)]

    def ages(self) -> str:
        """Return the band in words."""
        if self.age_from is not None and self.age_below is not None:
            return f"aged {self.age_from}-{self.age_below - 1}"
        if self.age_from is not None:
            return f"aged {self.age_from}+"
        if self.age_below is not None:
            return f"under {self.age_below}"
        return "all ages"


class LatestValueSpec(Strict):
    """Systolic and diastolic codelists, the window in months and the limits by age."""

    systolic: CodelistIds
    diastolic: CodelistIds
    within_months: Annotated[int, Field(gt=0)]
    thresholds: Annotated[list[Threshold], Field(min_length=1)]


class LatestValueAtMost(Criterion):
    """Latest systolic AND latest diastolic (each the lowest value on its latest date) at or below the limits.

    No reading in the window (null) is not controlled.

    Examples:
        >>> LatestValueAtMost.model_validate({"latest_value_at_most": {"systolic": ["sys"], "diastolic": ["dia"],
        ...     "within_months": 12, "thresholds": [{"age_below": 80, "systolic": 140, "diastolic": 90}]}}).describe()
        'latest sys and dia readings within 12 months at or below 140/90 under 80'
    """

    key = "latest_value_at_most"
    latest_value_at_most: LatestValueSpec

    def codelists(self):
        for field in ("systolic", "diastolic"):
            for i, codelist_id in enumerate(getattr(self.latest_value_at_most, field)):
                yield f"{field}[{i}]", codelist_id

    def describe(self) -> str:
        spec = self.latest_value_at_most
        bands = ", ".join(f"{t.systolic:g}/{t.diastolic:g} {t.ages()}" for t in spec.thresholds)
        return (f"latest {codes_text(spec.systolic)} and {codes_text(spec.diastolic)} readings within "
                f"{spec.within_months} months at or below {bands}")

    def compile(self, model: ModelContext) -> str:
        spec = self.latest_value_at_most
        systolic = model.latest_value(spec.systolic, spec.within_months)
        diastolic = model.latest_value(spec.diastolic, spec.within_months)
        age = model.attribute("age")
        bands = []
        for t in spec.thresholds:
            parts = [f"{systolic} <= {t.systolic:g}", f"{diastolic} <= {t.diastolic:g}"]
            if t.age_from is not None:
                parts.insert(0, f"{age} >= {t.age_from}")
            if t.age_below is not None:
                parts.insert(0, f"{age} < {t.age_below}")
            bands.append(f"coalesce({' and '.join(parts)}, false)")
        return "(" + " or ".join(bands) + ")"

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.latest_value_at_most
        start = patient.window_start(spec.within_months)
        return (f"systolic {patient.latest_value(spec.systolic, start)}; diastolic "
                f"{patient.latest_value(spec.diastolic, start)}; age {patient.person.get('age')}")
