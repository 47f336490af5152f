"""`not`: the criterion does not hold (a patient with unknown data then passes)."""

from __future__ import annotations

from pydantic import Field

from pipelines.segmentation.criteria.base import Criterion, CriterionType, ModelContext


class Not(Criterion):
    """The nested criterion does not hold. Every criterion compiles to a never-null test, so a
    patient whose age, decile or ethnicity is unknown fails the inner rule and passes `not`."""

    key = "not"
    not_: CriterionType = Field(alias="not")

    def children(self) -> list[tuple[str, Criterion]]:
        return [("not", self.not_)]

    def describe(self) -> str:
        return "not " + self.not_.describe()

    def compile(self, model: ModelContext) -> str:
        return f"(not {model.criterion(self.not_)})"
