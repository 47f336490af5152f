"""Great Expectations suites as reviewable files, run as data-quality gates.

Suites live in `expectations/<schema>.<table>.json`, one per gated asset, named by asset
key. Each expectation is `{"type": "expect_...", "kwargs": {...}, "meta": {"why": ...}}`;
kwargs may name run parameters as `"$reference_date"`, substituted when the gate runs, and
`min_value`/`max_value` may be ISO dates ("1900-01-01"). `meta.quarantine` names a
row-level rule: rows failing that expectation are moved to the quarantine table instead of
failing the run (see `pipelines/segmentation/quarantine.py`).

A suite file may say `"engine": "polars"`: it is then evaluated by `pipelines.pushdown`
(polars expressions, or their DuckDB SQL twins for tables that stay in the warehouse, with
GX's counting semantics) instead of by GX on a pandas copy. Big patient-level tables use it.

Where GX sits in the gating, and why it is not imported on every run. Importing GX costs
4-5 s, more than the rest of a 20,000-patient month; what GX contributes is (1) the
expectation models every suite is validated against (type, argument names and types) and
(2) the meaning of each expectation. So:

- every suite file is validated with GX's own models when its content (sha256), its run
  parameters' types or the installed GX version is new, and the verdict is remembered in
  `data/cache/gx_validated_suites.json` (`CORE20_CACHE_DIR`); an unchanged suite loads
  without importing GX. A misspelled expectation still fails loudly: a changed file is
  always new to the cache;
- a suite declared `"engine": "great_expectations"` (the small published candidates) is
  evaluated by GX itself in the run in which its version is first validated, and in that
  same run by the project's engine too: the gate fails if the two disagree on any count.
  Afterwards the project's engine evaluates it, which the property tests
  (`tests/property/test_pushdown_property.py`) check against GX expectation by expectation
  on random frames. `CORE20_GX_ENGINE=always` makes GX evaluate those suites every run.

Three Great Expectations behaviours are guarded against here:
- a misspelled expectation type, argument or meta key fails loudly (`SuiteError` naming the
  file, the expectation and the problem) instead of being dropped: every expectation is
  built through GX's own model, whichever engine then evaluates it;
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
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipelines import pushdown
from pipelines.segmentation.quarantine import RowRule

EXPECTATIONS_DIR = Path(__file__).resolve().parents[1] / "expectations"
ENGINES = ("great_expectations", "polars")
CACHE_ENV = "CORE20_CACHE_DIR"
GX_ENGINE_ENV = "CORE20_GX_ENGINE"
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "data" / "cache"

# Only these result fields are kept: counts and shares, never values.
SAFE_RESULT_KEYS = (
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "missing_percent",
)
_META_KEYS = {"why", "quarantine"}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class SuiteError(ValueError):
    """An expectation suite file is malformed or names an unknown expectation or argument."""


@dataclass(frozen=True)
class Expectation:
    """One expectation of a suite, with its run parameters substituted."""

    type: str
    kwargs: dict[str, Any]
    why: str
    quarantine: str | None = None

    @property
    def column(self) -> str | None:
        """Return the column (or 'A,B' pair) the expectation is about, if any."""
        if "column" in self.kwargs:
            return self.kwargs["column"]
        if "column_A" in self.kwargs:
            return f"{self.kwargs['column_A']},{self.kwargs['column_B']}"
        return None


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its name, engine and expectations.

    `gx_validated_now` says GX's models validated this version of the file in this process
    (it was new to the cache): GX then also evaluates a `great_expectations` suite and
    cross-checks the project's engine against it.
    """

    name: str
    engine: str
    expectations: tuple[Expectation, ...]
    description: str = ""
    gx_validated_now: bool = False

    def quarantine_rules(self) -> list[Expectation]:
        """Return the row-level expectations whose failing rows are quarantined."""
        return [e for e in self.expectations if e.quarantine]

    def row_rules(self) -> list[RowRule]:
        """Return the quarantine rules as polars row masks, in file order."""
        return [RowRule(e.quarantine, e.column, pushdown.masks(e.type, e.kwargs)[2], pushdown.sql_masks(e.type, e.kwargs)[2])
                for e in self.quarantine_rules()]

    def without_quarantine_rules(self) -> Suite:
        """Return the suite's other expectations: those that hold or block on the staged table."""
        return replace(self, expectations=tuple(e for e in self.expectations if not e.quarantine))


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, reduced to counts (no patient-level values)."""

    expectation: str
    column: str | None
    success: bool
    counts: dict[str, float]
    why: str = ""
    rule: str = ""


@dataclass
class GateResult:
    """A suite's outcome on one frame."""

    suite: str
    success: bool
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    engine: str = "great_expectations"
    seconds: float = 0.0
    evaluated_by: str = ""  # the engine(s) that counted: "polars", "duckdb", "great_expectations+polars"

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
            if n is None and "observed_value" in o.counts:
                count = f" (observed {int(o.counts['observed_value'])})"
            parts.append(f"{o.expectation}{where}{count}" + (f": {o.why}" if o.why else ""))
        return f"suite {self.suite}: {len(self.failures)} of {len(self.outcomes)} expectations failed — " + "; ".join(parts)


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
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    return value


def _as_date(value: Any) -> Any:
    # Bounds on date columns are written as ISO dates in the file; both engines need a date.
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return date.fromisoformat(value)
    if isinstance(value, datetime):
        return value.date() if value == datetime(value.year, value.month, value.day) else value
    return value


def _for_gx(value: Any) -> Any:
    # GX compares pandas datetime64 columns with Timestamps, not with datetime.date.
    import pandas as pd

    if isinstance(value, date):
        return pd.Timestamp(value)
    if isinstance(value, list):
        return [_for_gx(v) for v in value]
    return value


def _gx_expectation(gxe, expectation: Expectation, label: str, position: int | None = None):
    cls = getattr(gxe, _class_name(expectation.type), None)
    if cls is None:
        raise SuiteError(f"{label}: unknown expectation type '{expectation.type}' (misspelled?)")
    from pydantic import ValidationError as V2ValidationError

    kwargs = {k: _for_gx(v) for k, v in expectation.kwargs.items()}
    meta = {"why": expectation.why, **({"quarantine": expectation.quarantine} if expectation.quarantine else {})}
    if position is not None:
        meta["position"] = position  # GX does not return results in suite order: this puts them back
    try:
        return cls(**kwargs, meta=meta)
    except Exception as error:  # pydantic v1 or v2 validation errors, depending on GX internals
        if not isinstance(error, (V2ValidationError, TypeError, ValueError)) and "ValidationError" not in type(error).__name__:
            raise
        first = str(error).replace("\n", " ")[:300]
        raise SuiteError(f"{label} ({expectation.type}): invalid arguments — {first}") from None


def _gx_version() -> str:
    from importlib.metadata import version

    return version("great_expectations")


def _signature(value: Any) -> Any:
    # What GX's models judge is each argument's kind, not the month's value of it.
    if isinstance(value, list):
        return ["list", sorted({repr(_signature(v)) for v in value})]
    if isinstance(value, dict):
        return {k: _signature(v) for k, v in sorted(value.items())}
    return type(value).__name__


def _cache_key(text: str, params: dict[str, Any] | None) -> str:
    import hashlib

    payload = json.dumps({"suite": hashlib.sha256(text.encode("utf-8")).hexdigest(), "gx": _gx_version(),
                          "params": _signature(params or {})}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _cache_file() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE) / "gx_validated_suites.json"


def _cached(key: str) -> bool:
    try:
        return key in json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _remember(key: str, name: str) -> None:
    path = _cache_file()
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except ValueError:
        known = {}
    known[key] = {"suite": name, "gx_version": _gx_version(), "validated_at": datetime.now().isoformat(timespec="seconds")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
        partial.replace(path)  # atomic: a reader never sees half a file
    except OSError:
        pass  # a read-only checkout validates with GX every run instead


def load_suite(path: Path, params: dict[str, Any] | None = None) -> Suite:
    """Return the suite in `path`, every expectation checked against GX's own model.

    Arguments:
        path: the suite file.
        params: values for `$name` placeholders in kwargs.

    Raises:
        SuiteError naming the file, the expectation and the problem: unknown type, unknown
        or invalid argument, unknown meta key, a missing `why`, an engine that cannot
        evaluate the expectation, or a quarantine rule on a table-level expectation.
    """
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
    except FileNotFoundError:
        raise SuiteError(f"expectation suite {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise SuiteError(f"expectation suite {path} is not valid JSON: {error}") from None
    unknown_top = set(raw) - {"name", "description", "engine", "expectations"}
    if unknown_top or "expectations" not in raw:
        raise SuiteError(f"{path}: expected keys name, description, engine, expectations; found {sorted(raw)}")
    engine = raw.get("engine", "great_expectations")
    if engine not in ENGINES:
        raise SuiteError(f"{path}: engine must be one of {list(ENGINES)}, found {engine!r}")
    key = _cache_key(text, params)
    with_gx = not _cached(key)
    if with_gx:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import great_expectations as gx
        import great_expectations.expectations as gxe

        gx.get_context(mode="ephemeral")  # GX 1.x builds expectations only inside an active context
    expectations = []
    for index, item in enumerate(raw["expectations"]):
        label = f"{path.name}: expectation #{index + 1}"
        extra = set(item) - {"type", "kwargs", "meta"}
        if extra or "type" not in item:
            raise SuiteError(f"{label}: expected keys type, kwargs, meta; found {sorted(item)}")
        expectation_type = item["type"]
        if not re.fullmatch(r"expect_[a-z0-9_]+", expectation_type):
            raise SuiteError(f"{label}: '{expectation_type}' is not an expectation type (expect_...)")
        meta = item.get("meta") or {}
        if set(meta) - _META_KEYS or not meta.get("why"):
            raise SuiteError(f"{label}: meta must say 'why' (and may name a 'quarantine' rule); found {sorted(meta)}")
        kwargs = {k: _substitute(v, params or {}) for k, v in (item.get("kwargs") or {}).items()}
        kwargs = {k: (_as_date(v) if k in ("min_value", "max_value") else v) for k, v in kwargs.items()}
        expectation = Expectation(expectation_type, kwargs, meta["why"], meta.get("quarantine"))
        if with_gx:
            _gx_expectation(gxe, expectation, label)
        if expectation.quarantine is not None:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", expectation.quarantine):
                raise SuiteError(f"{label}: quarantine rule name {expectation.quarantine!r} must be snake_case")
            if expectation_type == "expect_table_row_count_to_be_between":
                raise SuiteError(f"{label}: a table-level expectation cannot quarantine rows")
        if engine == "polars" or expectation.quarantine:
            try:
                pushdown.check_supported(expectation_type, kwargs)
            except pushdown.UnsupportedExpectation as error:
                raise SuiteError(f"{label}: {error}") from None
        expectations.append(expectation)
    if with_gx:
        _remember(key, raw.get("name", path.stem))
    return Suite(name=raw.get("name", path.stem), engine=engine, expectations=tuple(expectations),
                 description=raw.get("description", ""), gx_validated_now=with_gx)


def _polars_engine_can(suite: Suite) -> bool:
    try:
        for e in suite.expectations:
            pushdown.check_supported(e.type, e.kwargs)
    except pushdown.UnsupportedExpectation:
        return False
    return True


def _project_outcomes(suite: Suite, columns: list[str], evaluate) -> list[ExpectationOutcome]:
    # As GX does, an expectation on a column the table lacks fails (rather than the gate erroring).
    absent = {id(e): sorted(pushdown.columns_of(e.kwargs) - set(columns)) for e in suite.expectations}
    runnable = [e for e in suite.expectations if not absent[id(e)]]
    results = dict(zip(map(id, runnable), evaluate([(e.type, e.kwargs) for e in runnable])))
    return [
        ExpectationOutcome(e.type, e.column, results[id(e)].success,
                           _safe(results[id(e)].as_dict()) | _observed(results[id(e)].as_dict()), e.why, e.quarantine or "")
        if id(e) in results else
        ExpectationOutcome(e.type, e.column, False, {}, f"the table has no column(s) {absent[id(e)]}", e.quarantine or "")
        for e in suite.expectations
    ]


def _agree(gx: list[ExpectationOutcome], mine: list[ExpectationOutcome], suite: Suite) -> None:
    for g, m in zip(gx, mine):
        same = g.success == m.success and all(
            abs(g.counts.get(k, 0.0) - m.counts.get(k, 0.0)) <= 1e-9 * max(1.0, abs(g.counts.get(k, 0.0)))
            for k in ("element_count", "unexpected_count", "missing_count", "observed_value") if k in g.counts and k in m.counts)
        if not same:
            raise SuiteError(
                f"suite {suite.name}: Great Expectations and the project's engine disagree on {g.expectation}"
                f"{' (' + g.column + ')' if g.column else ''}: GX {g.counts} ({g.success}), project {m.counts} "
                f"({m.success}). Fix pipelines/pushdown.py before trusting this gate."
            )


def validate(frame: pl.DataFrame, suite: Suite) -> GateResult:
    """Validate `frame` against a loaded suite; return counts-only results.

    A `polars` suite is counted by the polars engine. A `great_expectations` suite is
    counted by GX itself when its version was validated by GX in this run (and then by
    the polars engine too, which must agree) or when `CORE20_GX_ENGINE=always`, else by
    the polars engine alone (see the module docstring).
    """
    started = time.perf_counter()
    polars_can = suite.engine == "polars" or _polars_engine_can(suite)
    use_gx = suite.engine == "great_expectations" and (
        not polars_can or suite.gx_validated_now or os.environ.get(GX_ENGINE_ENV) == "always")
    if use_gx:
        outcomes = _gx_outcomes(frame, suite)
        evaluated_by = "great_expectations"
        if polars_can:
            _agree(outcomes, _project_outcomes(suite, frame.columns, lambda cases: pushdown.evaluate(frame, cases)), suite)
            evaluated_by += "+polars"
    else:
        outcomes = _project_outcomes(suite, frame.columns, lambda cases: pushdown.evaluate(frame, cases))
        evaluated_by = "polars"
    return GateResult(suite=suite.name, success=all(o.success for o in outcomes), outcomes=outcomes,
                      engine=suite.engine, seconds=time.perf_counter() - started, evaluated_by=evaluated_by)


def validate_sql(con, relation: str, suite: Suite) -> GateResult:
    """Validate a relation that stays in DuckDB (e.g. the month's staged events) with the SQL engine."""
    started = time.perf_counter()
    columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    outcomes = _project_outcomes(suite, columns, lambda cases: pushdown.evaluate_sql(con, relation, cases))
    return GateResult(suite=suite.name, success=all(o.success for o in outcomes), outcomes=outcomes,
                      engine=suite.engine, seconds=time.perf_counter() - started, evaluated_by="duckdb")


def run_suite(frame: pl.DataFrame, suite_name: str, params: dict[str, Any] | None = None) -> GateResult:
    """Validate `frame` against the suite named `suite_name` and return counts-only results.

    Arguments:
        frame: the table to check.
        suite_name: asset key string, e.g. 'staging.patients'.
        params: values for `$name` placeholders (e.g. reference_date).
    """
    started = time.perf_counter()
    result = validate(frame, load_suite(suite_path(suite_name), params))
    result.seconds = time.perf_counter() - started
    return result


def _safe(raw_result: dict[str, Any]) -> dict[str, float]:
    return {k: float(raw_result[k]) for k in SAFE_RESULT_KEYS if raw_result.get(k) is not None}


def _observed(raw_result: dict[str, Any]) -> dict[str, float]:
    # Table-level expectations report one number (e.g. a row count), never a row's value.
    value = raw_result.get("observed_value")
    return {"observed_value": float(value)} if isinstance(value, (int, float)) and not isinstance(value, bool) else {}


def gx_raw_results(frame: pl.DataFrame, suite: Suite):
    """Return GX's own validation result for `frame` (requested without any row values)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = _no_progress_bars()
    gx_suite = gx.ExpectationSuite(name=suite.name)
    for index, expectation in enumerate(suite.expectations):
        gx_suite.add_expectation(_gx_expectation(gxe, expectation, f"{suite.name}: expectation #{index + 1}", index))
    source = context.data_sources.add_pandas(f"gate_{suite.name}")
    batch_definition = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    return batch.validate(
        gx_suite,
        result_format={
            "result_format": "SUMMARY",
            "partial_unexpected_count": 0,
            "include_unexpected_rows": False,
            "return_unexpected_index_query": False,
        },
    )


def _gx_outcomes(frame: pl.DataFrame, suite: Suite) -> list[ExpectationOutcome]:
    result = gx_raw_results(frame, suite)
    outcomes = []
    for item in sorted(result.results, key=lambda r: (r.expectation_config.meta or {}).get("position", 0)):
        config = item.expectation_config
        raw_result = item.result or {}
        meta = config.meta or {}
        kwargs = config.kwargs
        column = kwargs.get("column") or (f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else None)
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=column,
                success=bool(item.success),
                counts=_safe(raw_result) | _observed(raw_result),
                why=meta.get("why", ""),
                rule=meta.get("quarantine", ""),
            )
        )
    return outcomes


def _no_progress_bars():
    from great_expectations.data_context.types.base import ProgressBarsConfig

    return ProgressBarsConfig(globally=False)
