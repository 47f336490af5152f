"""Great Expectations expectations evaluated as polars expressions, for tables GX cannot take cheaply.

GX 1.x validates pandas frames: a 25M-row events table would be copied into pandas first
(seconds and gigabytes) and checked with Python-speed string operations. The suites stay
GX files, validated by GX's own expectation models when they are loaded
(`pipelines.gates.load_suite`), but a suite whose file says `"engine": "polars"` is
evaluated here instead: each supported expectation becomes a boolean polars expression
that is True on the rows GX would count as unexpected. The same expression is what the
quarantine splits rows on, so a row-level rule is declared once, in the suite file.

The counting follows GX's own semantics, which `tests/property/test_pushdown_property.py`
checks against GX itself on random frames: nulls are "missing" and never unexpected for
map expectations (except the two null expectations), `unexpected_percent` is over the
non-missing rows, `mostly` is the share of non-missing rows that must pass, a row condition
keeps the rows where it is true (a null passes `!=` and `NOT_IN` and fails the other
comparisons, as in pandas), and pair expectations honour `ignore_row_if`.

Only counts leave this module; no value of any row is ever returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

# Arguments GX accepts that do not change which rows are unexpected (or are set by the gate).
_NEUTRAL_KWARGS = {"column", "meta", "notes", "description", "catch_exceptions", "result_format", "id", "severity"}

# Supported expectation types and the further arguments each understands here.
SUPPORTED: dict[str, set[str]] = {
    "expect_column_values_to_not_be_null": {"mostly", "row_condition"},
    "expect_column_values_to_be_null": {"mostly", "row_condition"},
    "expect_column_values_to_be_in_set": {"value_set", "mostly", "row_condition"},
    "expect_column_values_to_not_be_in_set": {"value_set", "mostly", "row_condition"},
    "expect_column_values_to_be_between": {"min_value", "max_value", "strict_min", "strict_max", "mostly", "row_condition"},
    "expect_column_values_to_match_regex": {"regex", "mostly", "row_condition"},
    "expect_column_values_to_be_unique": {"mostly", "row_condition"},
    "expect_column_pair_values_a_to_be_greater_than_b": {"column_A", "column_B", "or_equal", "ignore_row_if", "mostly", "row_condition"},
    "expect_table_row_count_to_be_between": {"min_value", "max_value"},
}

_NULL_TYPES = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}


class UnsupportedExpectation(ValueError):
    """The expectation (or one of its arguments) has no polars translation here."""


@dataclass(frozen=True)
class Counts:
    """An expectation's result as GX would report it, reduced to counts."""

    success: bool
    element_count: int
    unexpected_count: int | None = None
    missing_count: int | None = None
    observed_value: float | None = None

    @property
    def unexpected_percent(self) -> float | None:
        """Return unexpected rows as a percentage of the rows that were checked (GX's definition)."""
        if self.unexpected_count is None:
            return None
        checked = self.element_count - (self.missing_count or 0)
        return 100.0 * self.unexpected_count / checked if checked else None

    def as_dict(self) -> dict[str, float]:
        """Return the non-empty counts under GX's result keys."""
        values = {
            "element_count": self.element_count,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "missing_count": self.missing_count,
            "observed_value": self.observed_value,
        }
        return {k: float(v) for k, v in values.items() if v is not None}


def check_supported(expectation_type: str, kwargs: dict[str, Any]) -> None:
    """Raise UnsupportedExpectation unless this module can evaluate the expectation exactly.

    Examples:
        >>> check_supported("expect_column_values_to_be_in_set", {"column": "sex", "value_set": ["M"]})
        >>> check_supported("expect_column_values_to_be_in_set", {"column": "sex", "value_set": ["M"], "parse_strings_as_datetimes": True})
        Traceback (most recent call last):
        ...
        pipelines.pushdown.UnsupportedExpectation: expect_column_values_to_be_in_set: argument(s) ['parse_strings_as_datetimes'] are not supported by the polars engine
    """
    if expectation_type not in SUPPORTED:
        raise UnsupportedExpectation(
            f"{expectation_type} is not supported by the polars engine; supported: {sorted(SUPPORTED)} "
            "(or run the suite with the great_expectations engine)"
        )
    extra = set(kwargs) - SUPPORTED[expectation_type] - _NEUTRAL_KWARGS
    if extra:
        raise UnsupportedExpectation(f"{expectation_type}: argument(s) {sorted(extra)} are not supported by the polars engine")
    if isinstance(kwargs.get("row_condition"), str):
        raise UnsupportedExpectation(
            f"{expectation_type}: a row_condition must be a structured condition "
            "({'type': 'comparison', 'column': {'name': ...}, 'operator': ..., 'parameter': ...}), not a string"
        )


_OPERATORS = {
    "==": lambda c, p: c == p,
    "!=": lambda c, p: c != p,
    "<": lambda c, p: c < p,
    "<=": lambda c, p: c <= p,
    ">": lambda c, p: c > p,
    ">=": lambda c, p: c >= p,
    "IN": lambda c, p: c.is_in(list(p)),
    "NOT_IN": lambda c, p: ~c.is_in(list(p)),
}


def condition_expr(condition: dict[str, Any] | None) -> pl.Expr:
    """Return the rows a GX structured row condition keeps, with pandas' treatment of nulls.

    Examples:
        >>> frame = pl.DataFrame({"code": ["a", "b", None], "v": [1, 2, 3]})
        >>> frame.filter(condition_expr({"type": "comparison", "column": {"name": "code"}, "operator": "IN", "parameter": ["a", "b"]}))["v"].to_list()
        [1, 2]
    """
    if condition is None:
        return pl.repeat(True, pl.len())  # a column, so that its sum counts the rows
    kind = condition.get("type")
    if kind == "comparison":
        operator = str(condition["operator"])
        if operator not in _OPERATORS:
            raise UnsupportedExpectation(f"row_condition operator {operator!r} is not supported")
        column = pl.col(condition["column"]["name"])
        # As GX's pandas engine does: a null is "not equal to" and "not in" anything, and
        # fails every other comparison.
        return _OPERATORS[operator](column, condition["parameter"]).fill_null(operator in ("!=", "NOT_IN"))
    if kind == "nullity":
        column = pl.col(condition["column"]["name"])
        return column.is_null() if condition["is_null"] else column.is_not_null()
    if kind in ("and", "or"):
        parts = [condition_expr(c) for c in condition["conditions"]]
        return pl.all_horizontal(parts) if kind == "and" else pl.any_horizontal(parts)
    raise UnsupportedExpectation(f"row_condition type {kind!r} is not supported")


def columns_of(kwargs: dict[str, Any]) -> set[str]:
    """Return the columns an expectation reads, its row condition included.

    Examples:
        >>> sorted(columns_of({"column": "value", "row_condition": {"type": "comparison", "column": {"name": "code"},
        ...                                                          "operator": "IN", "parameter": ["1"]}}))
        ['code', 'value']
    """
    names = {kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs}
    stack = [kwargs.get("row_condition")]
    while stack:
        condition = stack.pop()
        if isinstance(condition, dict):
            if "column" in condition:
                names.add(condition["column"]["name"])
            stack += condition.get("conditions", [])
    return names


def _between(column: pl.Expr, kwargs: dict[str, Any]) -> pl.Expr:
    inside = pl.lit(True)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None:
        inside = inside & ((column > low) if kwargs.get("strict_min") else (column >= low))
    if high is not None:
        inside = inside & ((column < high) if kwargs.get("strict_max") else (column <= high))
    return inside


def masks(expectation_type: str, kwargs: dict[str, Any]) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Return (in_scope, missing, unexpected) row masks for a column or pair expectation.

    `in_scope` is the row condition; `missing` the in-scope rows GX leaves unchecked;
    `unexpected` the in-scope, non-missing rows that fail. All three are non-null booleans.

    Examples:
        >>> frame = pl.DataFrame({"sex": ["M", "Q", None]})
        >>> _, missing, unexpected = masks("expect_column_values_to_be_in_set", {"column": "sex", "value_set": ["M", "F"]})
        >>> frame.select(missing.alias("missing"), unexpected.alias("unexpected")).rows()
        [(False, False), (False, True), (True, False)]
    """
    check_supported(expectation_type, kwargs)
    scope = condition_expr(kwargs.get("row_condition"))
    if expectation_type == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = pl.col(kwargs["column_A"]), pl.col(kwargs["column_B"])
        ignore = kwargs.get("ignore_row_if", "both_values_are_missing")
        missing = {
            "both_values_are_missing": a.is_null() & b.is_null(),
            "either_value_is_missing": a.is_null() | b.is_null(),
            "neither": pl.lit(False),
        }[ignore]
        passes = (a >= b) if kwargs.get("or_equal") else (a > b)
        failing = ~passes.fill_null(False)
        return scope, scope & missing, scope & ~missing & failing
    column = pl.col(kwargs["column"])
    if expectation_type == "expect_column_values_to_not_be_null":
        return scope, pl.lit(False), scope & column.is_null()
    if expectation_type == "expect_column_values_to_be_null":
        return scope, pl.lit(False), scope & column.is_not_null()
    missing = scope & column.is_null()
    present = scope & column.is_not_null()
    if expectation_type == "expect_column_values_to_be_in_set":
        failing = ~column.is_in(list(kwargs["value_set"]))
    elif expectation_type == "expect_column_values_to_not_be_in_set":
        failing = column.is_in(list(kwargs["value_set"]))
    elif expectation_type == "expect_column_values_to_be_between":
        failing = ~_between(column, kwargs)
    elif expectation_type == "expect_column_values_to_match_regex":
        failing = ~column.cast(pl.String).str.contains(kwargs["regex"])
    else:  # expect_column_values_to_be_unique: every occurrence of a repeated value counts
        in_scope_values = pl.when(present).then(column)
        failing = in_scope_values.is_duplicated()
    return scope, missing, present & failing.fill_null(True)


def _success(counts: Counts, expectation_type: str, kwargs: dict[str, Any]) -> bool:
    checked = counts.element_count - (counts.missing_count or 0)
    if not checked:
        return True
    return (checked - (counts.unexpected_count or 0)) / checked >= float(kwargs.get("mostly", 1.0))


def evaluate(frame: pl.DataFrame | pl.LazyFrame, expectations: list[tuple[str, dict[str, Any]]]) -> list[Counts]:
    """Return GX-equivalent counts for each (expectation type, kwargs) in one pass over `frame`.

    Arguments:
        frame: the table; a LazyFrame lets polars share the scan between expectations.
        expectations: expectation types with substituted kwargs (see `pipelines.gates`).

    Examples:
        >>> frame = pl.DataFrame({"patient_id": ["a", "b", "b", None], "age": [3, 200, 40, 50]})
        >>> [c.as_dict() for c in evaluate(frame, [
        ...     ("expect_column_values_to_be_unique", {"column": "patient_id"}),
        ...     ("expect_column_values_to_be_between", {"column": "age", "min_value": 0, "max_value": 115}),
        ...     ("expect_table_row_count_to_be_between", {"min_value": 1}),
        ... ])]  # doctest: +NORMALIZE_WHITESPACE
        [{'element_count': 4.0, 'unexpected_count': 2.0, 'unexpected_percent': 66.66666666666667, 'missing_count': 1.0},
         {'element_count': 4.0, 'unexpected_count': 1.0, 'unexpected_percent': 25.0, 'missing_count': 0.0},
         {'element_count': 4.0, 'observed_value': 4.0}]
    """
    lazy = frame.lazy()
    aggregations: list[pl.Expr] = [pl.len().alias("_rows")]
    for index, (expectation_type, kwargs) in enumerate(expectations):
        if expectation_type == "expect_table_row_count_to_be_between":
            check_supported(expectation_type, kwargs)
            continue
        scope, missing, unexpected = masks(expectation_type, kwargs)
        aggregations += [
            scope.sum().alias(f"_e{index}"),
            missing.sum().alias(f"_m{index}"),
            unexpected.sum().alias(f"_u{index}"),
        ]
    totals = lazy.select(aggregations).collect().row(0, named=True)
    results = []
    for index, (expectation_type, kwargs) in enumerate(expectations):
        if expectation_type == "expect_table_row_count_to_be_between":
            rows = int(totals["_rows"])
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            ok = (low is None or rows >= low) and (high is None or rows <= high)
            results.append(Counts(success=ok, element_count=rows, observed_value=rows))
            continue
        counts = Counts(
            success=True,
            element_count=int(totals[f"_e{index}"]),
            unexpected_count=int(totals[f"_u{index}"]),
            missing_count=None if expectation_type in _NULL_TYPES else int(totals[f"_m{index}"]),
        )
        results.append(Counts(**{**counts.__dict__, "success": _success(counts, expectation_type, kwargs)}))
    return results
