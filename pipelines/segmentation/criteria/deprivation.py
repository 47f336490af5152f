"""`deprivation`: the national IMD decile of the run's primary vintage is one of the listed."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipelines.segmentation.criteria.base import Criterion, EvidenceContext, ModelContext, Strict


class DeprivationSpec(Strict):
    """National deciles (1 = most deprived), never re-ranked locally."""

    imd_deciles: Annotated[list[Annotated[int, Field(ge=1, le=10)]], Field(min_length=1)]


class Deprivation(Criterion):
    """National IMD decile in the list (the run's primary vintage); no decile fails.

    Examples:
        >>> Deprivation.model_validate({"deprivation": {"imd_deciles": [1, 2]}}).describe()
        'national IMD decile in [1, 2]'
    """

    key = "deprivation"
    deprivation: DeprivationSpec

    def describe(self) -> str:
        return f"national IMD decile in {self.deprivation.imd_deciles}"

    def compile(self, model: ModelContext) -> str:
        deciles = ", ".join(str(d) for d in self.deprivation.imd_deciles)
        return f"coalesce({model.attribute('imd_decile')} in ({deciles}), false)"

    def evidence(self, patient: EvidenceContext) -> str:
        person = patient.person
        decile = person.get("imd_decile")
        method = person.get("imd_method")
        return f"{person.get('imd_vintage')} decile {decile if decile is not None else 'none'}" + (
            f" ({method})" if method else "")
