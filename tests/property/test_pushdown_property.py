"""The polars engine counts exactly what Great Expectations counts, on random frames and suites.

The big tables are gated by `pipelines.pushdown` rather than by GX itself; this is the
evidence that the two agree, expectation by expectation: element, missing and unexpected
counts, the unexpected percentage and success, with and without row conditions and
`mostly`. Raise the number of examples with CORE20_HYPOTHESIS_EXAMPLES (default 50).
"""

from __future__ import annotations

import datetime as dt
import math
import os

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.gates import Expectation, Suite, gx_raw_results
from pipelines.pushdown import evaluate

EXAMPLES = settings(
    max_examples=int(os.environ.get("CORE20_HYPOTHESIS_EXAMPLES", "50")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

WORDS = ["a", "b", "ab", "x1", "271649006"]
DAYS = [dt.date(2020, 1, d) for d in range(1, 8)]


def maybe(strategy):
    return st.one_of(st.none(), strategy)


@st.composite
def frames(draw):
    n = draw(st.integers(1, 9))
    column = lambda s: draw(st.lists(maybe(s), min_size=n, max_size=n))  # noqa: E731
    return pl.DataFrame(
        {"s": column(st.sampled_from(WORDS)), "x": column(st.integers(-3, 12)), "y": column(st.integers(-3, 12)),
         "d": column(st.sampled_from(DAYS))},
        schema={"s": pl.String, "x": pl.Int64, "y": pl.Int64, "d": pl.Date},
    )


conditions = st.one_of(
    st.none(),
    st.builds(lambda v: {"type": "comparison", "column": {"name": "s"}, "operator": "IN", "parameter": v},
              st.lists(st.sampled_from(WORDS), min_size=1, max_size=3, unique=True)),
    st.builds(lambda op, v: {"type": "comparison", "column": {"name": "y"}, "operator": op, "parameter": v},
              st.sampled_from([">", ">=", "<", "<=", "==", "!="]), st.integers(-3, 12)),
    st.builds(lambda b: {"type": "nullity", "column": {"name": "y"}, "is_null": b}, st.booleans()),
    st.builds(lambda v, w: {"type": "and", "conditions": [
        {"type": "comparison", "column": {"name": "x"}, "operator": ">", "parameter": v},
        {"type": "nullity", "column": {"name": "s"}, "is_null": w}]}, st.integers(-3, 12), st.booleans()),
)


def with_common(kwargs, draw):
    condition = draw(conditions)
    if condition is not None:
        kwargs["row_condition"] = condition
    mostly = draw(st.sampled_from([None, None, 0.5, 0.8]))
    if mostly is not None:
        kwargs["mostly"] = mostly
    return kwargs


@st.composite
def expectations(draw):
    kind = draw(st.sampled_from([
        "not_null", "null", "in_set", "not_in_set", "between_int", "between_date", "regex", "unique", "pair", "rows",
        "compound",
    ]))
    column = draw(st.sampled_from(["s", "x", "d"]))
    if kind == "not_null":
        return "expect_column_values_to_not_be_null", with_common({"column": column}, draw)
    if kind == "null":
        return "expect_column_values_to_be_null", with_common({"column": column}, draw)
    if kind in ("in_set", "not_in_set"):
        values = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4, unique=True))
        name = "expect_column_values_to_be_in_set" if kind == "in_set" else "expect_column_values_to_not_be_in_set"
        return name, with_common({"column": "s", "value_set": values}, draw)
    if kind in ("between_int", "between_date"):
        pool = st.integers(-3, 12) if kind == "between_int" else st.sampled_from(DAYS)
        low, high = draw(maybe(pool)), draw(maybe(pool))
        if low is None and high is None:
            low = draw(pool)
        kwargs = {"column": "x" if kind == "between_int" else "d", "min_value": low, "max_value": high}
        if low is not None and high is not None and low > high:
            kwargs["min_value"], kwargs["max_value"] = high, low
        kwargs["strict_min"], kwargs["strict_max"] = draw(st.booleans()), draw(st.booleans())
        return "expect_column_values_to_be_between", with_common(kwargs, draw)
    if kind == "regex":
        regex = draw(st.sampled_from(["^[0-9]{6,18}$", "a", "^[a-z]+$", "1$"]))
        return "expect_column_values_to_match_regex", with_common({"column": "s", "regex": regex}, draw)
    if kind == "unique":
        return "expect_column_values_to_be_unique", with_common({"column": draw(st.sampled_from(["s", "x"]))}, draw)
    if kind == "pair":
        kwargs = {"column_A": "x", "column_B": "y", "or_equal": draw(st.booleans()),
                  "ignore_row_if": draw(st.sampled_from(["both_values_are_missing", "either_value_is_missing", "neither"]))}
        return "expect_column_pair_values_a_to_be_greater_than_b", with_common(kwargs, draw)
    if kind == "compound":
        kwargs = {"column_list": draw(st.sampled_from([["s", "x"], ["x", "y", "d"], ["s", "d"]]))}
        ignore = draw(st.sampled_from([None, "all_values_are_missing", "any_value_is_missing", "never"]))
        if ignore is not None:
            kwargs["ignore_row_if"] = ignore
        return "expect_compound_columns_to_be_unique", with_common(kwargs, draw)
    low = draw(st.integers(0, 6))
    return "expect_table_row_count_to_be_between", {"min_value": low, "max_value": low + draw(st.integers(0, 5))}


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@EXAMPLES
@given(frame=frames(), cases=st.lists(expectations(), min_size=1, max_size=4, unique_by=repr))
def test_polars_engine_counts_what_gx_counts(frame, cases):
    suite = Suite("random", "great_expectations", tuple(Expectation(t, k, f"case {i}") for i, (t, k) in enumerate(cases)))
    gx_results = {r.expectation_config.meta["why"]: r for r in gx_raw_results(frame, suite).results}
    polars_results = evaluate(frame, list(cases))
    for index, ((expectation_type, kwargs), mine) in enumerate(zip(cases, polars_results)):
        result = gx_results[f"case {index}"]
        context = (expectation_type, kwargs, result.result, mine, frame)
        assert not (result.exception_info or {}).get("raised_exception"), result.exception_info
        raw = result.result
        assert bool(result.success) == mine.success, context
        if expectation_type == "expect_table_row_count_to_be_between":
            assert raw["observed_value"] == mine.observed_value, context
            continue
        assert raw["element_count"] == mine.element_count, context
        assert raw["unexpected_count"] == mine.unexpected_count, context
        assert raw.get("missing_count") == mine.missing_count, context
        assert close(raw.get("unexpected_percent"), mine.unexpected_percent), context


@EXAMPLES
@given(frame=frames(), cases=st.lists(expectations(), min_size=1, max_size=4, unique_by=repr))
def test_duckdb_engine_counts_what_the_polars_engine_counts(frame, cases):
    # The staged events are checked and split in DuckDB (pushdown.sql_masks); the polars engine
    # is checked against GX above, so agreement here carries GX's semantics over to SQL.
    import duckdb

    from pipelines.pushdown import evaluate_sql

    con = duckdb.connect()
    con.register("frame", frame.to_arrow())
    for (expectation_type, kwargs), mine, theirs in zip(cases, evaluate_sql(con, "frame", list(cases)), evaluate(frame, list(cases))):
        assert mine == theirs, (expectation_type, kwargs, mine, theirs, frame)
