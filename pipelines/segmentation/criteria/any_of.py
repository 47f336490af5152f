"""`any_of`: at least one listed criterion holds."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipelines.segmentation.criteria.base import Criterion, CriterionType, ModelContext


class AnyOf(Criterion):
    """At least one criterion in the list holds."""

    key = "any_of"
    any_of: Annotated[list[CriterionType], Field(min_length=1)]

    def children(self) -> list[tuple[str, Criterion]]:
        return [(f"any_of[{i}]", c) for i, c in enumerate(self.any_of)]

    def describe(self) -> str:
        return "any of (" + "; ".join(c.describe() for c in self.any_of) + ")"

    def compile(self, model: ModelContext) -> str:
        return "(" + " or ".join(model.criterion(c) for c in self.any_of) + ")"
