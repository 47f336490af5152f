"""`has_record`: a row of an optional linked feed inside the window, matching every `where` column."""

from __future__ import annotations

from typing import Annotated

import polars as pl
from pydantic import Field

from pipelines.segmentation.criteria.base import Criterion, EvidenceContext, FeedValue, Identifier, ModelContext, Window


class RecordSpec(Window):
    """A feed, a window and the values each named column must hold."""

    feed: Identifier
    where: dict[Identifier, Annotated[list[FeedValue], Field(min_length=1)]] = Field(default_factory=dict)


class HasRecord(Criterion):
    """A row of an optional linked feed (`schemas.FEEDS`) dated inside the window.

    A `where` column must hold one of the listed values (a null never matches). A
    definition whose feed is absent this month is not evaluated: it is reported as not
    available, never as a zero.

    Examples:
        >>> HasRecord.model_validate({"has_record": {"feed": "cancer_registry", "within_months": 12,
        ...     "where": {"stage": [1, 2]}}}).describe()
        'a cancer_registry record within 12 months with stage in [1, 2]'
    """

    key = "has_record"
    has_record: RecordSpec

    def feeds(self) -> list[str]:
        return [self.has_record.feed]

    def check(self, registers: set[str], cohorts: set[str]) -> list[tuple[str, str]]:
        from pipelines.segmentation.schemas import FEEDS

        spec = self.has_record
        if spec.feed not in FEEDS:
            return [("feed", f"unknown feed '{spec.feed}'; expected one of {sorted(FEEDS)}")]
        table = FEEDS[spec.feed].table
        problems = []
        for column, values in spec.where.items():
            if column not in table.names or column == "patient_id":
                problems.append((f"where.{column}", f"feed '{spec.feed}' has no such column; it has {table.names[1:]}"))
                continue
            dtype = table.column(column).dtype
            expected = bool if dtype == pl.Boolean else int if dtype.is_integer() else str if dtype == pl.String else float
            if any(type(v) is not expected for v in values):
                problems.append((f"where.{column}", f"values must be {expected.__name__} (the column is {dtype})"))
        return problems

    def describe(self) -> str:
        spec = self.has_record
        where = "".join(f" with {column} in {values}" for column, values in spec.where.items())
        return f"a {spec.feed} record {spec.describe()}{where}"

    def compile(self, model: ModelContext) -> str:
        spec = self.has_record
        return model.feed_any(spec.feed, spec, {k: list(v) for k, v in spec.where.items()})

    def evidence(self, patient: EvidenceContext) -> str:
        spec = self.has_record
        rows, date_column = patient.feed_rows(spec.feed, patient.window_start(spec), dict(spec.where))
        if rows.is_empty():
            return f"no matching {spec.feed} record"
        last = rows.sort(date_column).row(-1, named=True)
        shown = ", ".join(f"{k} {v}" for k, v in last.items() if k not in ("patient_id", "reporting_month"))
        return f"{rows.height} matching record(s); latest: {shown}"
