"""Great Expectations suites as reviewable files, run as blocking data-quality gates.

Suites live in `expectations/<schema>.<table>.json`, one per gated asset, named by asset
key. Each expectation is `{"type": "expect_...", "kwargs": {...}, "meta": {"why": ...}}`;
kwargs may name run parameters as `"$reference_date"`, substituted when the gate runs.

Three Great Expectations behaviours are guarded against here:
- a misspelled expectation type, or a misspelled argument, fails loudly (`SuiteError`
  naming the file, the expectation and the problem) instead of being dropped;
- GX copies failing values (patient data) into its results by default: results are
  requested without unexpected lists or rows, and then reduced to a whitelist of count
  fields before anything is logged, stored or shown;
- GX accepts pandas but not polars or DuckDB, so the frame is handed over as pandas, and
  GX is imported lazily (it takes seconds) so `import pipelines.definitions` stays light.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

EXPECTATIONS_DIR = Path(__file__).resolve().parents[1] / "expectations"

# Only these result fields are kept: counts and shares, never values.
SAFE_RESULT_KEYS = (
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "missing_percent",
)


class SuiteError(ValueError):
    """An expectation suite file is malformed or names an unknown expectation or argument."""


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, reduced to counts (no patient-level values)."""

    expectation: str
    column: str | None
    success: bool
    counts: dict[str, float]
    why: str = ""


@dataclass
class GateResult:
    """A suite's outcome on one frame."""

    suite: str
    success: bool
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        """Return the expectations that failed."""
        return [o for o in self.outcomes if not o.success]

    def summary(self) -> str:
        """Return a one-paragraph account naming each failed expectation with its counts."""
        if self.success:
            return f"suite {self.suite}: all {len(self.outcomes)} expectations passed"
        parts = []
        for o in self.failures:
            where = f" on column '{o.column}'" if o.column else ""
            n = o.counts.get("unexpected_count")
            count = f" ({int(n)} of {int(o.counts.get('element_count', 0))} rows)" if n is not None else ""
            parts.append(f"{o.expectation}{where}{count}" + (f": {o.why}" if o.why else ""))
        return f"suite {self.suite}: {len(self.failures)} of {len(self.outcomes)} expectations failed — " + "; ".join(parts)

    def metadata(self) -> dict[str, Any]:
        """Return Dagster-safe metadata: counts and pass/fail only."""
        meta: dict[str, Any] = {"suite": self.suite, "n_expectations": len(self.outcomes), "n_failed": len(self.failures)}
        for o in self.outcomes:
            key = o.expectation + (f"[{o.column}]" if o.column else "")
            meta[key] = ("passed" if o.success else "FAILED") + (
                f" unexpected={int(o.counts['unexpected_count'])}" if "unexpected_count" in o.counts else ""
            )
        return meta


def suite_path(suite_name: str) -> Path:
    """Return the file of the suite named by an asset key string such as 'staging.patients'."""
    return EXPECTATIONS_DIR / f"{suite_name}.json"


def _class_name(expectation_type: str) -> str:
    return "".join(part.capitalize() for part in expectation_type.split("_"))


def _substitute(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in params:
            raise SuiteError(f"parameter '{value}' is not supplied; available: {sorted(params)}")
        return params[name]
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    return value


def load_suite(path: Path, params: dict[str, Any] | None = None):
    """Return a GX ExpectationSuite built from a suite file, failing loudly on any unknown name.

    Arguments:
        path: the suite file.
        params: values for `$name` placeholders in kwargs.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from pydantic import ValidationError as V2ValidationError

    gx.get_context(mode="ephemeral")  # GX 1.x builds suites only inside an active context
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"expectation suite {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise SuiteError(f"expectation suite {path} is not valid JSON: {error}") from None
    unknown_top = set(raw) - {"name", "description", "expectations"}
    if unknown_top or "expectations" not in raw:
        raise SuiteError(f"{path}: expected keys name, description, expectations; found {sorted(raw)}")
    suite = gx.ExpectationSuite(name=raw.get("name", path.stem))
    for index, item in enumerate(raw["expectations"]):
        label = f"{path.name}: expectation #{index + 1}"
        extra = set(item) - {"type", "kwargs", "meta"}
        if extra or "type" not in item:
            raise SuiteError(f"{label}: expected keys type, kwargs, meta; found {sorted(item)}")
        expectation_type = item["type"]
        if not re.fullmatch(r"expect_[a-z0-9_]+", expectation_type):
            raise SuiteError(f"{label}: '{expectation_type}' is not an expectation type (expect_...)")
        cls = getattr(gxe, _class_name(expectation_type), None)
        if cls is None:
            raise SuiteError(f"{label}: unknown expectation type '{expectation_type}' (misspelled?)")
        kwargs = {k: _substitute(v, params or {}) for k, v in (item.get("kwargs") or {}).items()}
        try:
            expectation = cls(**kwargs, meta=item.get("meta") or {})
        except Exception as error:  # pydantic v1 or v2 validation errors, depending on GX internals
            if not isinstance(error, (V2ValidationError, TypeError, ValueError)) and "ValidationError" not in type(error).__name__:
                raise
            first = str(error).replace("\n", " ")[:300]
            raise SuiteError(f"{label} ({expectation_type}): invalid arguments — {first}") from None
        suite.add_expectation(expectation)
    return suite


def run_suite(frame: pl.DataFrame, suite_name: str, params: dict[str, Any] | None = None) -> GateResult:
    """Validate `frame` against the suite named `suite_name` and return counts-only results.

    Arguments:
        frame: the table to check (converted to pandas for GX).
        suite_name: asset key string, e.g. 'staging.patients'.
        params: values for `$name` placeholders (e.g. reference_date).
    """
    path = suite_path(suite_name)
    params = {k: (_as_timestamp(v) if isinstance(v, date) else v) for k, v in (params or {}).items()}
    suite = load_suite(path, params)
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = _no_progress_bars()
    source = context.data_sources.add_pandas(f"gate_{suite_name}")
    batch_definition = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    result = batch.validate(
        suite,
        result_format={
            "result_format": "SUMMARY",
            "partial_unexpected_count": 0,
            "include_unexpected_rows": False,
            "return_unexpected_index_query": False,
        },
    )
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        raw_result = item.result or {}
        counts = {k: float(raw_result[k]) for k in SAFE_RESULT_KEYS if raw_result.get(k) is not None}
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=config.kwargs.get("column") or _pair(config.kwargs),
                success=bool(item.success),
                counts=counts,
                why=(config.meta or {}).get("why", ""),
            )
        )
    return GateResult(suite=suite_name, success=bool(result.success), outcomes=outcomes)


def _pair(kwargs: dict[str, Any]) -> str | None:
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    return None


def _as_timestamp(value: date):
    import pandas as pd

    return pd.Timestamp(value)


def _no_progress_bars():
    from great_expectations.data_context.types.base import ProgressBarsConfig

    return ProgressBarsConfig(globally=False)
