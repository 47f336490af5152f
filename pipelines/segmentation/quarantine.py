"""Quarantine: rows that fail a row-level rule are set aside with the rule that caught them.

A bad row (an unreadable date, an unknown sex code, an event dated after the month) should
neither vanish silently nor fail a whole extract. It is moved to `staging.quarantine`
(private: it keeps the row as supplied so the supplier can fix it) under the first rule
that caught it, and counted; the gate on the staged table then blocks publication only when
the quarantined share passes a configured threshold.

Rules come from two places, so each is declared once:
- the input contract (`schemas.py`): a value that cannot be read as its column's type
  (`<column>_unreadable`) and a blank in a column that must be filled (`<column>_missing`);
- the suites (`expectations/staging.*.json`): expectations whose `meta.quarantine` names a
  rule, turned into polars masks by `pipelines.pushdown`.

Every function here is plain polars over the whole column: no row is visited in Python.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Sequence

import polars as pl

from pipelines.segmentation.schemas import QUARANTINE, Table

ROW = "_row"  # 1-based data row of the source file, attached when the file is read
UNREADABLE = "_unreadable_"  # prefix of the per-column flags casting leaves behind
RAW = "__raw_"  # prefix of a number column as supplied, beside GX's view of it (`pushdown.as_gx_sees_sql`)


@dataclass(frozen=True)
class RowRule:
    """A named row-level rule: `failing` is True (never null) on the rows it catches.

    `sql` is the same rule as a DuckDB expression (`pipelines.pushdown.sql_masks`), used where
    the rows never leave the warehouse (the staged events); None when it has no SQL form.
    """

    name: str
    column: str | None
    failing: pl.Expr
    sql: str | None = None


@dataclass
class Split:
    """A table split into the rows kept and the rows quarantined, with counts by rule."""

    kept: pl.DataFrame
    quarantined: pl.DataFrame
    n_rows: int
    n_failing: dict[str, int] = field(default_factory=dict)  # every row each rule catches
    n_quarantined: dict[str, int] = field(default_factory=dict)  # rows set aside under each rule (first rule wins)
    seconds: float = 0.0  # time spent applying the rules (a gate's cost, measured for the benchmark)

    @property
    def share(self) -> float:
        """Return the share of the table's rows that were quarantined."""
        return self.quarantined.height / self.n_rows if self.n_rows else 0.0


def contract_rules(table: Table, frame: pl.DataFrame | pl.LazyFrame) -> list[RowRule]:
    """Return the contract's rules for the columns `frame` holds: unreadable values, values that
    are not finite numbers, then blanks.

    A number column's NaN, +infinity or -infinity (a CSV's `NaN`, `inf`, or `1e400`, which
    overflows to infinity) is quarantined as `<column>_not_finite`: it is no measurement, and
    left in it would compare as larger than every number (polars sorts NaN last) or pass any
    lower bound, and move a cohort. The other rules see the rows as GX does (a NaN is a
    missing value), so this rule reads the column as supplied, `__raw_<column>`, which
    `split` and `pipelines.pushdown.as_gx_sees_sql(keep_raw=True)` keep beside GX's view.

    Examples:
        >>> from pipelines.segmentation.schemas import INPUT_EVENTS
        >>> frame = pl.DataFrame({"patient_id": ["a"], "code": [None], "event_date": [None], "_unreadable_event_date": [True]})
        >>> [rule.name for rule in contract_rules(INPUT_EVENTS, frame)]
        ['event_date_unreadable', 'patient_id_missing', 'code_missing', 'event_date_missing']
        >>> frame = pl.DataFrame({"_row": [1, 2, 3, 4, 5], "value": [1.0, float("nan"), float("inf"), -float("inf"), None]})
        >>> out = split(frame, contract_rules(INPUT_EVENTS, frame), source=frame, reporting_month=date(2026, 10, 1),
        ...             source_table="events", source_file="events.csv")
        >>> out.kept["_row"].to_list(), out.n_quarantined
        ([1, 5], {'value_not_finite': 3})
    """
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    from pipelines.segmentation.sql import quote

    rules = [
        RowRule(f"{c.name}_unreadable", c.name, pl.col(UNREADABLE + c.name), f"coalesce({quote(UNREADABLE + c.name)}, true)")
        for c in table.columns
        if UNREADABLE + c.name in names
    ]
    rules += [
        RowRule(f"{c.name}_not_finite", c.name, (~pl.col(RAW + c.name).is_finite()).fill_null(False),
                f"coalesce(NOT isfinite({quote(RAW + c.name)}), false)")
        for c in table.columns
        if c.dtype in (pl.Float32, pl.Float64) and c.name in names
    ]
    rules += [
        RowRule(f"{c.name}_missing", c.name, pl.col(c.name).is_null(), f"({quote(c.name)} IS NULL)")
        for c in table.columns
        if not c.nullable and c.name in names
    ]
    return rules


def drop_exact_duplicates(frame: pl.DataFrame, columns: Sequence[str]) -> tuple[pl.DataFrame, int]:
    """Return `frame` without repeats of an earlier row over `columns` (order kept), and how many went.

    Suppliers re-send rows; an exact repeat carries no information. Rows are hashed first
    and only rows whose hash repeats are compared in full: at 25M events with few
    duplicates that is one hash pass instead of a full distinct (measured about 4x faster).

    Examples:
        >>> frame = pl.DataFrame({"_row": [1, 2, 3, 4], "id": ["a", "b", "a", "a"], "v": [1, 2, 1, 3]})
        >>> kept, n = drop_exact_duplicates(frame, ["id", "v"])
        >>> kept["_row"].to_list(), n
        ([1, 2, 4], 1)
    """
    repeated = frame.select(pl.struct(list(columns)).hash(seed=0).is_duplicated()).to_series()
    if not repeated.any():
        return frame, 0
    candidates = frame.filter(repeated)
    later = candidates.filter(~pl.struct(list(columns)).is_first_distinct())[ROW]
    if later.len() == 0:
        return frame, 0
    return frame.filter(~pl.col(ROW).is_in(later.implode())), later.len()


def split(
    frame: pl.DataFrame,
    rules: Sequence[RowRule],
    *,
    source: pl.DataFrame,
    reporting_month: date,
    source_table: str,
    source_file: str,
) -> Split:
    """Return `frame` split by `rules` into kept rows and `staging.quarantine` rows.

    Arguments:
        frame: the table to check, carrying the `_row` column.
        rules: row rules in priority order; a row is recorded under the first that catches it.
        source: the same rows as supplied (contract columns, before casting) with `_row`,
            from which each quarantined row's `record` is written.
        reporting_month: the month being staged.
        source_table: 'patients' or 'events'.
        source_file: the file's name (no folder), for the analyst fixing it.

    Examples:
        >>> import datetime as dt
        >>> frame = pl.DataFrame({"_row": [1, 2, 3], "patient_id": ["a", "b", None], "sex": ["F", "Q", "M"]})
        >>> rules = [RowRule("patient_id_missing", "patient_id", pl.col("patient_id").is_null()),
        ...          RowRule("sex_code_unknown", "sex", ~pl.col("sex").is_in(["M", "F", "I", "U"]))]
        >>> out = split(frame, rules, source=frame, reporting_month=dt.date(2026, 10, 1),
        ...             source_table="patients", source_file="patients.csv")
        >>> out.kept["_row"].to_list(), out.quarantined.select("row_number", "rule").rows(), out.n_quarantined
        ([1], [(2, 'sex_code_unknown'), (3, 'patient_id_missing')], {'patient_id_missing': 1, 'sex_code_unknown': 1})
    """
    started = time.perf_counter()
    if not rules:
        return Split(frame, QUARANTINE.empty(), frame.height)
    # Rules see the rows as GX does (a float NaN is missing), with each number column as
    # supplied beside it (`__raw_<column>`, for the not-finite rule); the kept rows keep their values.
    floats = [name for name, dtype in frame.schema.items() if dtype in (pl.Float32, pl.Float64)]
    seen = frame.with_columns(pl.col(c).alias(RAW + c) for c in floats).with_columns(pl.col(floats).fill_nan(None))
    flags = seen.select([rule.failing.fill_null(True).alias(f"_q{i}") for i, rule in enumerate(rules)])
    n_failing: dict[str, int] = {}
    for rule, n in zip(rules, flags.sum().row(0)):
        n_failing[rule.name] = n_failing.get(rule.name, 0) + int(n)
    caught = flags.select(pl.any_horizontal(pl.all())).to_series()
    if not caught.any():
        return Split(frame, QUARANTINE.empty(), frame.height, n_failing, {r.name: 0 for r in rules},
                     time.perf_counter() - started)
    first_rule = pl.coalesce([pl.when(pl.col(f"_q{i}")).then(pl.lit(i)) for i in range(len(rules))])
    bad = frame.filter(caught).select(ROW, *(["patient_id"] if "patient_id" in frame.columns else [])).with_columns(
        flags.filter(caught).select(first_rule.alias("_rule")).to_series()
    )
    lookup = pl.DataFrame(
        {"_rule": list(range(len(rules))), "rule": [r.name for r in rules], "column": [r.column for r in rules]},
        schema={"_rule": pl.Int32, "rule": pl.String, "column": pl.String},
    )
    record_columns = [c for c in source.columns if c != ROW and not c.startswith(UNREADABLE)]
    records = source.filter(pl.col(ROW).is_in(bad[ROW].implode())).select(
        ROW, pl.struct(pl.col(record_columns).cast(pl.String)).struct.json_encode().alias("record")
    )
    quarantined = (
        bad.with_columns(pl.col("_rule").cast(pl.Int32))
        .join(lookup, on="_rule", how="left")
        .join(records, on=ROW, how="left")
        .select(
            pl.lit(reporting_month).alias("reporting_month"),
            pl.lit(source_table).alias("source_table"),
            pl.lit(source_file).alias("source_file"),
            pl.col(ROW).alias("row_number"),
            "rule",
            "column",
            (pl.col("patient_id").cast(pl.String) if "patient_id" in bad.columns else pl.lit(None, pl.String)).alias("patient_id"),
            "record",
        )
        .sort("row_number")
        .cast(QUARANTINE.schema)
    )
    per_rule = dict(quarantined.group_by("rule").len().iter_rows())
    kept = frame.filter(~caught)
    return Split(kept, quarantined, frame.height, n_failing, {r.name: int(per_rule.get(r.name, 0)) for r in rules},
                 time.perf_counter() - started)
