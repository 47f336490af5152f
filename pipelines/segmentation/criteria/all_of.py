"""`all_of`: every listed criterion holds."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipelines.segmentation.criteria.base import Criterion, CriterionType, ModelContext


class AllOf(Criterion):
    """Every criterion in the list holds; attrition counts its items one by one, in order."""

    key = "all_of"
    all_of: Annotated[list[CriterionType], Field(min_length=1)]

    def children(self) -> list[tuple[str, Criterion]]:
        return [(f"all_of[{i}]", c) for i, c in enumerate(self.all_of)]

    def steps(self, path: str) -> list[tuple[str, Criterion]]:
        return [(f"{path}.{sub}", child) for sub, child in self.children()]

    def describe(self) -> str:
        return "all of (" + "; ".join(c.describe() for c in self.all_of) + ")"

    def compile(self, model: ModelContext) -> str:
        return "(" + " and ".join(model.criterion(c) for c in self.all_of) + ")"
