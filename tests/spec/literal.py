"""Literal '|' tables for spec tests: input rows -> rule -> expected rows, readable by an analyst."""

from __future__ import annotations

import polars as pl


def table(text: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Return a frame from a literal '|' table; blank cells are nulls, dates ISO, booleans true/false.

    Columns of `schema` missing from the table are added as nulls.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("|")]
    rows = [[cell.strip() or None for cell in line.split("|")] for line in lines[1:]]
    raw = pl.DataFrame(rows, schema={h: pl.String for h in header}, orient="row")

    def column(name: str, dtype: pl.DataType) -> pl.Expr:
        if name not in raw.columns:
            return pl.lit(None, dtype=dtype).alias(name)
        if dtype == pl.Date:
            return pl.col(name).str.to_date()
        if dtype == pl.Boolean:
            return pl.col(name).replace_strict({"true": True, "false": False}, default=None, return_dtype=pl.Boolean)
        return pl.col(name).cast(dtype)

    return raw.select(column(name, dtype) for name, dtype in schema.items())
