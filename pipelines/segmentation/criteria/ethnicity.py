"""`ethnicity`: NHS ethnic category (A-S, Z) or broad group from the latest ethnicity code."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, model_validator

from pipelines.segmentation.criteria.base import Criterion, EvidenceContext, ModelContext, Strict

# NHS Data Dictionary ethnic category letters (2001 census groups A-S), Z "not stated" and
# 99 "not known" (an "Ethnic group not recorded" code).
ETHNIC_CATEGORIES = ("A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "Z", "99")
ETHNICITY_BROAD = (
    "White",
    "Mixed",
    "Asian or Asian British",
    "Black or Black British",
    "Other ethnic group",
    "Not stated",
    "Not known",
    "Unknown",
)
UNKNOWN = "Unknown"  # no ethnicity code at all: never asked or never coded


def _quoted(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


class EthnicitySpec(Strict):
    """Categories, broad groups, or both (either matches)."""

    categories: list[Annotated[Literal[ETHNIC_CATEGORIES], BeforeValidator(str)]] | None = None  # type: ignore[valid-type]
    broad: list[Literal[ETHNICITY_BROAD]] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _some(self) -> EthnicitySpec:
        if not self.categories and not self.broad:
            raise ValueError("give categories (NHS letters A-S, Z) or broad groups")
        return self


class Ethnicity(Criterion):
    """Ethnic category or broad group; no ethnicity code is the broad group 'Unknown'.

    Examples:
        >>> Ethnicity.model_validate({"ethnicity": {"categories": ["M", "N"]}}).describe()
        "NHS ethnic category in ['M', 'N']"
    """

    key = "ethnicity"
    ethnicity: EthnicitySpec

    def describe(self) -> str:
        parts = []
        if self.ethnicity.categories:
            parts.append(f"NHS ethnic category in {list(self.ethnicity.categories)}")
        if self.ethnicity.broad:
            parts.append(f"broad ethnic group in {list(self.ethnicity.broad)}")
        return " or ".join(parts)

    def compile(self, model: ModelContext) -> str:
        parts = []
        if self.ethnicity.categories:
            parts.append(f"coalesce({model.attribute('ethnic_category')} in ({_quoted(self.ethnicity.categories)}), false)")
        if self.ethnicity.broad:
            broad = f"coalesce({model.attribute('ethnicity_broad')}, '{UNKNOWN}')"
            parts.append(f"({broad} in ({_quoted(self.ethnicity.broad)}))")
        return "(" + " or ".join(parts) + ")"

    def evidence(self, patient: EvidenceContext) -> str:
        category = patient.person.get("ethnic_category")
        broad = patient.person.get("ethnicity_broad") or UNKNOWN
        return f"ethnic category {category}, {broad}" if category else "no ethnicity code recorded (Unknown)"
