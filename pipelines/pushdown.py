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

from collections.abc import Mapping
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
    "expect_compound_columns_to_be_unique": {"column_list", "ignore_row_if", "mostly", "row_condition"},
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
    names = {kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs} | set(kwargs.get("column_list", []))
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
    if expectation_type == "expect_compound_columns_to_be_unique":
        columns = [pl.col(c) for c in kwargs["column_list"]]
        ignore = kwargs.get("ignore_row_if", "all_values_are_missing")
        missing = {
            "all_values_are_missing": pl.all_horizontal(c.is_null() for c in columns),
            "any_value_is_missing": pl.any_horizontal(c.is_null() for c in columns),
            "never": pl.lit(False),
        }[ignore]
        present = scope & ~missing
        # Every occurrence of a repeated combination counts; nulls inside it compare equal. The
        # presence flag is part of the key, so a combination of nulls never meets rows out of scope.
        failing = pl.struct([present.alias("_present"), *columns]).is_duplicated()
        return scope, scope & missing, present & failing.fill_null(True)
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


def as_gx_sees(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Return `frame` as GX's pandas engine sees it: a float NaN is a missing value, like a null.

    Examples:
        >>> as_gx_sees(pl.LazyFrame({"v": [1.0, float("nan"), None]})).collect()["v"].null_count()
        2
    """
    return frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None))


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
    lazy = as_gx_sees(frame.lazy())
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
    return _counts(expectations, totals)


# --- the same expectations as DuckDB SQL, for tables that never leave the warehouse ---------
#
# The staged events (~25M rows) are checked and split where they are, in DuckDB. These are
# the polars masks above written as SQL, with the same null semantics; the property test
# checks the two engines (and GX) agree expectation by expectation.

_SQL_OPERATORS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def condition_sql(condition: dict[str, Any] | None) -> str:
    """Return the rows a GX structured row condition keeps, as a never-null SQL Boolean.

    Examples:
        >>> condition_sql({"type": "comparison", "column": {"name": "code"}, "operator": "IN", "parameter": ["a"]})
        'coalesce("code" IN (\\'a\\'), false)'
    """
    from pipelines.segmentation.sql import literal, quote, values

    if condition is None:
        return "true"
    kind = condition.get("type")
    if kind == "comparison":
        operator = str(condition["operator"])
        column = quote(condition["column"]["name"])
        fill = "true" if operator in ("!=", "NOT_IN") else "false"
        parameter = condition["parameter"]
        if operator == "IN":
            test = f"{column} IN {values(parameter)}" if list(parameter) else "false"
        elif operator == "NOT_IN":
            test = f"NOT ({column} IN {values(parameter)})" if list(parameter) else "true"
        elif operator in _SQL_OPERATORS:
            test = f"{column} {_SQL_OPERATORS[operator]} {literal(parameter)}"
        else:
            raise UnsupportedExpectation(f"row_condition operator {operator!r} is not supported")
        return f"coalesce({test}, {fill})"
    if kind == "nullity":
        column = quote(condition["column"]["name"])
        return f"({column} IS NULL)" if condition["is_null"] else f"({column} IS NOT NULL)"
    if kind in ("and", "or"):
        parts = [condition_sql(c) for c in condition["conditions"]]
        return "(" + f" {kind.upper()} ".join(parts) + ")"
    raise UnsupportedExpectation(f"row_condition type {kind!r} is not supported")


def _between_sql(column: str, kwargs: dict[str, Any]) -> str:
    from pipelines.segmentation.sql import literal

    parts = ["true"]
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None:
        parts.append(f"{column} {'>' if kwargs.get('strict_min') else '>='} {literal(low)}")
    if high is not None:
        parts.append(f"{column} {'<' if kwargs.get('strict_max') else '<='} {literal(high)}")
    return "(" + " AND ".join(parts) + ")"


def sql_masks(expectation_type: str, kwargs: dict[str, Any]) -> tuple[str, str, str]:
    """Return (in_scope, missing, unexpected) as never-null SQL Booleans: `masks` in SQL.

    `expect_column_values_to_be_unique` uses a window function, so its masks belong in a
    select list (not a WHERE clause).

    Examples:
        >>> sql_masks("expect_column_values_to_be_in_set", {"column": "sex", "value_set": ["M"]})[2]
        '(true AND "sex" IS NOT NULL AND coalesce(NOT ("sex" IN (\\'M\\')), true))'
    """
    from pipelines.segmentation.sql import quote, values

    check_supported(expectation_type, kwargs)
    scope = condition_sql(kwargs.get("row_condition"))
    if expectation_type == "expect_compound_columns_to_be_unique":
        columns = [quote(c) for c in kwargs["column_list"]]
        ignore = kwargs.get("ignore_row_if", "all_values_are_missing")
        missing = {
            "all_values_are_missing": "(" + " AND ".join(f"{c} IS NULL" for c in columns) + ")",
            "any_value_is_missing": "(" + " OR ".join(f"{c} IS NULL" for c in columns) + ")",
            "never": "false",
        }[ignore]
        present = f"{scope} AND NOT {missing}"
        combination = "struct_pack(" + ", ".join(f"_c{i} := {c}" for i, c in enumerate(columns)) + ")"
        # Partitioned by presence too: a combination of nulls must not meet the rows out of scope.
        failing = f"count(*) OVER (PARTITION BY ({present}), {combination}) > 1"
        return scope, f"({scope} AND {missing})", f"({present} AND coalesce({failing}, true))"
    if expectation_type == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = quote(kwargs["column_A"]), quote(kwargs["column_B"])
        ignore = kwargs.get("ignore_row_if", "both_values_are_missing")
        missing = {
            "both_values_are_missing": f"({a} IS NULL AND {b} IS NULL)",
            "either_value_is_missing": f"({a} IS NULL OR {b} IS NULL)",
            "neither": "false",
        }[ignore]
        passes = f"{a} >= {b}" if kwargs.get("or_equal") else f"{a} > {b}"
        failing = f"NOT coalesce({passes}, false)"
        return scope, f"({scope} AND {missing})", f"({scope} AND NOT {missing} AND {failing})"
    column = quote(kwargs["column"])
    if expectation_type == "expect_column_values_to_not_be_null":
        return scope, "false", f"({scope} AND {column} IS NULL)"
    if expectation_type == "expect_column_values_to_be_null":
        return scope, "false", f"({scope} AND {column} IS NOT NULL)"
    missing = f"({scope} AND {column} IS NULL)"
    present = f"{scope} AND {column} IS NOT NULL"
    if expectation_type == "expect_column_values_to_be_in_set":
        failing = f"NOT ({column} IN {values(kwargs['value_set'])})" if kwargs["value_set"] else "true"
    elif expectation_type == "expect_column_values_to_not_be_in_set":
        failing = f"{column} IN {values(kwargs['value_set'])}" if kwargs["value_set"] else "false"
    elif expectation_type == "expect_column_values_to_be_between":
        failing = f"NOT {_between_sql(column, kwargs)}"
    elif expectation_type == "expect_column_values_to_match_regex":
        from pipelines.segmentation.sql import literal

        failing = f"NOT regexp_matches(CAST({column} AS VARCHAR), {literal(kwargs['regex'])})"
    else:  # expect_column_values_to_be_unique: every occurrence of a repeated value counts
        failing = f"count(*) OVER (PARTITION BY CASE WHEN {present} THEN {column} END) > 1"
    return scope, missing, f"({present} AND coalesce({failing}, true))"


def as_gx_sees_sql(con, relation: str, keep_raw: bool = False) -> str:
    """Return `relation` with float NaN as NULL (GX's pandas view); `keep_raw` adds `__raw_<c>` originals."""
    from pipelines.segmentation.sql import quote

    described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    floats = [name for name, kind, *_ in described if kind in ("DOUBLE", "FLOAT", "REAL")]
    if not floats:
        return relation
    replaced = ", ".join(f"CASE WHEN isnan({quote(c)}) THEN NULL ELSE {quote(c)} END AS {quote(c)}" for c in floats)
    raw = "".join(f", {quote(c)} AS {quote('__raw_' + c)}" for c in floats) if keep_raw else ""
    return f"(SELECT * REPLACE ({replaced}){raw} FROM {relation})"



def _counts(expectations: list[tuple[str, dict[str, Any]]], totals: Mapping[str, Any]) -> list[Counts]:
    """Return each expectation's counts and verdict from the totals of one aggregate pass (both engines)."""
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


def evaluate_sql(con, relation: str, expectations: list[tuple[str, dict[str, Any]]]) -> list[Counts]:
    """Return GX-equivalent counts for each expectation over a DuckDB relation, in one query.

    Arguments:
        con: a DuckDB connection.
        relation: a table, view or parenthesised query.
        expectations: expectation types with substituted kwargs.
    """
    relation = as_gx_sees_sql(con, relation)
    items: dict[str, str] = {}
    for index, (expectation_type, kwargs) in enumerate(expectations):
        if expectation_type == "expect_table_row_count_to_be_between":
            check_supported(expectation_type, kwargs)
            continue
        scope, missing, unexpected = sql_masks(expectation_type, kwargs)
        items |= {f"_e{index}": scope, f"_m{index}": missing, f"_u{index}": unexpected}
    # Masks first (a uniqueness mask is a window function), then one aggregate over them.
    inner = ", ".join(f"({sql})::INTEGER AS {name}" for name, sql in items.items()) or "1 AS _one"
    sums = "".join(f", coalesce(sum({name}), 0) AS {name}" for name in items)
    row = con.execute(f"SELECT count(*) AS _rows{sums} FROM (SELECT {inner} FROM {relation})").fetchall()[0]
    totals = dict(zip(["_rows", *items], row))
    return _counts(expectations, totals)
