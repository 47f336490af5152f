"""SQL text helpers shared by the engines that compile to DuckDB (patient model, pushdown, staging)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any


def quote(identifier: str) -> str:
    """Return `identifier` quoted for DuckDB SQL.

    Examples:
        >>> print(quote("reporting_month"))
        "reporting_month"
    """
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """Return a Python value as a DuckDB SQL literal (text quoted, dates typed, None as NULL).

    Examples:
        >>> literal("O'Neil"), literal(date(2025, 3, 31)), literal(True), literal(2.5), literal(None)
        ("'O''Neil'", "DATE '2025-03-31'", 'true', '2.5', 'NULL')
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def values(items) -> str:
    """Return a parenthesised list of literals for `IN`.

    Examples:
        >>> values(["M", "F"])
        "('M', 'F')"
    """
    return "(" + ", ".join(literal(v) for v in items) + ")"
