"""Data-quality outcomes: what each gate found, kept month by month and shown in the Dagster UI.

Every gate (asset check) reduces what it found to `QualityRow`s — expectation results,
quarantined rows by rule, the quarantined share against its threshold, postcode match
rates by method — and records them in `audit.data_quality` (one row per month x gate x
measure) before Dagster sees the check's verdict. The table therefore holds the history of
blocked months as well as published ones; `core20 quality` prints it, and each published
month's rows are published with it (`pipelines/publication.py`).

Only counts, shares, thresholds and names of rules, expectations and columns are ever
recorded: no patient-level value can reach this table, the check metadata or a message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.gates import GateResult, Suite, load_suite, suite_path
from pipelines.segmentation.quarantine import Split
from pipelines.segmentation.schemas import DATA_QUALITY, MATCH_METHODS, SEX_CODES

TABLE = ("audit", "data_quality")
BP_CODELISTS = {"systolic_codes": "systolic_blood_pressure_qof", "diastolic_codes": "diastolic_blood_pressure_qof"}


@dataclass(frozen=True)
class QualityRow:
    """One measure a gate took: a count out of a total, a share, and whether it passed."""

    kind: str
    name: str
    column: str | None = None
    passed: bool | None = None
    n: int | None = None
    n_total: int | None = None
    share: float | None = None
    threshold: float | None = None


@dataclass
class CheckOutcome:
    """A gate's verdict, its one-paragraph reason and the measures behind it."""

    passed: bool
    summary: str
    rows: list[QualityRow] = field(default_factory=list)
    severity: str = "ERROR"
    seconds: float = 0.0

    def metadata(self) -> dict[str, Any]:
        """Return Dagster metadata: the summary, then counts and pass/fail per measure (no values)."""
        meta: dict[str, Any] = {"summary": self.summary, "n_measures": len(self.rows),
                                "n_failed": sum(r.passed is False for r in self.rows),
                                "gate_seconds": round(self.seconds, 3)}
        for row in self.rows:
            key = f"{row.kind}:{row.name}" + (f"[{row.column}]" if row.column else "")
            verdict = {True: "passed", False: "FAILED", None: "reported"}[row.passed]
            counts = f" {row.n} of {row.n_total}" if row.n is not None and row.n_total is not None else (
                f" {row.n}" if row.n is not None else "")
            meta[key] = verdict + counts + (f" (threshold {row.threshold:g})" if row.threshold is not None else "")
        return meta


def expectation_rows(gate: GateResult) -> list[QualityRow]:
    """Return one row per expectation of a suite's result."""
    rows = []
    for o in gate.outcomes:
        unexpected, total = o.counts.get("unexpected_count"), o.counts.get("element_count")
        percent = o.counts.get("unexpected_percent")
        if unexpected is None:  # a table-level expectation: its one observed number (e.g. the row count)
            rows.append(QualityRow("expectation", o.expectation, o.column, o.success, n=int(o.counts.get("observed_value", 0))))
            continue
        rows.append(QualityRow("expectation", o.expectation, o.column, o.success, n=int(unexpected),
                               n_total=int(total) if total is not None else None,
                               share=percent / 100 if percent is not None else None))
    return rows


def gate_outcome(gate: GateResult, severity: str = "ERROR") -> CheckOutcome:
    """Return a suite's result as a check outcome."""
    return CheckOutcome(gate.success, gate.summary(), expectation_rows(gate), severity, gate.seconds)


def input_contract_outcome(
    table: str, file_name: str, split: Split, staged: GateResult, threshold: float, seconds: float = 0.0
) -> CheckOutcome:
    """Return the input-contract verdict for one input table: quarantine share, then the staged table's suite.

    Arguments:
        table: 'patients' or 'events'.
        file_name: the extract file, named in the summary.
        split: the quarantine split of the file's rows.
        staged: the suite's other expectations, run on the staged table.
        threshold: the largest share of rows that may be quarantined before the gate blocks.
        seconds: time spent applying the quarantine rules.

    Examples:
        >>> from pipelines.segmentation.quarantine import Split
        >>> split = Split(pl.DataFrame(), pl.DataFrame({"rule": ["sex_code_unknown"] * 3}), 100,
        ...               {"sex_code_unknown": 3}, {"sex_code_unknown": 3})
        >>> outcome = input_contract_outcome("patients", "patients.csv", split, GateResult("staging.patients", True), 0.01)
        >>> outcome.passed
        False
        >>> print(outcome.summary)  # doctest: +NORMALIZE_WHITESPACE
        3 of the 100 distinct rows of patients.csv (3.0%) were quarantined, above the 1.0% threshold: sex_code_unknown 3.
        The rows are in staging.quarantine (private) with the rule that caught each; fix the extract, or raise
        the threshold (max_quarantine_share) if these rows may be set aside.
    """
    n_quarantined = split.quarantined.height
    share_ok = split.share <= threshold
    rows = [QualityRow("quarantine_rule", rule, None, None, n, split.n_rows, n / split.n_rows if split.n_rows else 0.0)
            for rule, n in split.n_quarantined.items()]
    rows.append(QualityRow("quarantine_share", table, None, share_ok, n_quarantined, split.n_rows, split.share, threshold))
    rows += expectation_rows(staged)
    by_rule = ", ".join(f"{rule} {n:,}" for rule, n in sorted(split.n_quarantined.items(), key=lambda kv: -kv[1]) if n)
    if share_ok:
        quarantine_text = (f"{n_quarantined:,} of the {split.n_rows:,} distinct rows of {file_name} quarantined "
                           f"({split.share:.1%}; threshold {threshold:.1%})" + (f": {by_rule}." if by_rule else "."))
    else:
        quarantine_text = (
            f"{n_quarantined:,} of the {split.n_rows:,} distinct rows of {file_name} ({split.share:.1%}) were quarantined, above "
            f"the {threshold:.1%} threshold: {by_rule}. The rows are in staging.quarantine (private) with the rule that "
            "caught each; fix the extract, or raise the threshold (max_quarantine_share) if these rows may be set aside."
        )
    summary = f"{quarantine_text} {staged.summary()}" if staged.outcomes else quarantine_text
    return CheckOutcome(share_ok and staged.success, summary, rows, seconds=seconds + staged.seconds)


def input_contract_outcomes(
    staged, raw, patient_suite: Suite, event_suite: Suite, threshold: float, load_seconds: float = 0.0,
    events_gate: GateResult | None = None,
) -> list[tuple[str, CheckOutcome]]:
    """Return ('patients' | 'events', outcome) for both input tables of a staged extract.

    Arguments:
        staged: `extract.StagingResult` (its splits carry the quarantine counts).
        raw: `extract.RawExtract` (for the file names).
        patient_suite, event_suite: the input-contract suites (`staging_suites`).
        threshold: `PipelineSettings.max_quarantine_share`.
        load_seconds: time spent loading both suites, counted in the patients gate's time.
        events_gate: the events suite's other expectations already run where the staged
            events are (`gates.validate_sql`); None runs them on `staged.events`.
    """
    from pipelines.gates import validate

    if events_gate is None:
        events_gate = validate(staged.events, event_suite.without_quarantine_rules())
    return [
        ("patients", input_contract_outcome("patients", raw.patients_path.name, staged.patient_split,
                                            validate(staged.patients, patient_suite.without_quarantine_rules()),
                                            threshold, staged.patient_split.seconds + load_seconds)),
        ("events", input_contract_outcome("events", raw.events_path.name, staged.event_split, events_gate,
                                          threshold, staged.event_split.seconds)),
    ]


def match_rate_outcome(deprivation: pl.DataFrame, primary_vintage: str, threshold: float) -> CheckOutcome:
    """Return the postcode match-rate verdict: the primary vintage's rate against its threshold, methods counted.

    The rate is over patients with an address (blank and non-English postcodes are reported,
    not failed: IMD covers England only), as `attributes.decile_match_rate` defines it.
    """
    from pipelines.segmentation.attributes import decile_match_rate

    started = time.perf_counter()
    rows = []
    n_all = deprivation.height
    primary = {}
    for vintage in ("IMD2019", "IMD2025"):
        column = f"{vintage.lower()}_method"
        counts = dict(deprivation.group_by(column).len().iter_rows())
        rows += [QualityRow("match_method", method, column, None, int(counts.get(method, 0)), n_all,
                            counts.get(method, 0) / n_all if n_all else 0.0) for method in MATCH_METHODS]
        rate = decile_match_rate(deprivation, vintage)
        is_primary = vintage == primary_vintage
        passed = rate["match_rate"] >= threshold if is_primary else None
        rows.append(QualityRow("match_rate", vintage, f"{vintage.lower()}_decile", passed, rate["n_matched"],
                               rate["n_with_address"], rate["match_rate"], threshold if is_primary else None))
        if is_primary:
            primary = rate
    summary = (f"{primary['match_rate']:.1%} of {primary['n_with_address']:,} patients with an address got a "
               f"{primary_vintage} decile; the threshold is {threshold:.0%}")
    return CheckOutcome(primary["match_rate"] >= threshold, summary, rows, seconds=time.perf_counter() - started)


def practice_address_outcome(by_practice: pl.DataFrame, vintage: str, thresholds) -> CheckOutcome:
    """Return the per-practice address verdict: no practice (big enough to judge) with mostly unusable postcodes.

    Practice codes are organisations, not patients, so the summary names the failing ones.

    Arguments:
        by_practice: `deprivation_quality.deprivation_quality` output (exact counts per practice).
        vintage: the primary IMD vintage.
        thresholds: `deprivation_quality.PracticeThresholds`.
    """
    from pipelines.segmentation.deprivation_quality import ALL_PRACTICES, practice_problems

    started = time.perf_counter()
    failing = practice_problems(by_practice, vintage, thresholds)
    judged = by_practice.filter((pl.col("imd_vintage") == vintage) & (pl.col("practice_code") != ALL_PRACTICES)
                                & (pl.col("n_patients") >= thresholds.min_patients)).height
    listed = ", ".join(f"{code} ({rate:.0%} of {n})" for code, n, rate in failing.head(10).rows())
    summary = (f"{failing.height} practice(s) with at least {thresholds.min_patients} patients have a usable postcode "
               f"or LSOA for fewer than {thresholds.min_address_rate:.0%} of them" + (f": {listed}" if listed else ""))
    row = QualityRow("practice_address", "practices_below_threshold", "address_rate", failing.is_empty(), failing.height,
                     judged, failing.height / judged if judged else 0.0, thresholds.min_address_rate)
    return CheckOutcome(failing.is_empty(), summary, [row], seconds=time.perf_counter() - started)


def register_prevalence(members: pl.DataFrame, n_patients: int, register_ids: list[str]) -> pl.DataFrame:
    """Return one row with each register's prevalence (members / registered patients), one column per register.

    Examples:
        >>> members = pl.DataFrame({"register_id": ["smi_register", "hypertension_register", "hypertension_register"]})
        >>> register_prevalence(members, 10, ["hypertension_register", "smi_register", "ld_register"]).row(0)
        (0.2, 0.1, 0.0)
    """
    counts = dict(members.group_by("register_id").len().iter_rows())
    return pl.DataFrame({r: [counts.get(r, 0) / n_patients if n_patients else None] for r in register_ids},
                        schema={r: pl.Float64 for r in register_ids})


def staging_suites(reporting_month: date, reference_dir: str | Path | None = None, con=None) -> tuple[Suite, Suite]:
    """Return the patients and events input-contract suites with this month's parameters.

    The blood-pressure plausibility rules need the pinned QOF systolic and diastolic
    codelists: from the warehouse's `reference.codelists` when a connection is given (the
    reference job loaded and checked them), else from the reference files (sha256-checked).
    """
    from pipelines.segmentation.extract import month_end

    params: dict[str, Any] = {"reference_date": month_end(reporting_month), "sex_codes": list(SEX_CODES)}
    if con is not None:
        from pipelines.segmentation.cohorts import codelists_from_warehouse
        from pipelines.segmentation.definitions import Definitions

        codes = codelists_from_warehouse(con, Definitions({}, {}, {}, {}), list(BP_CODELISTS.values()))
        for name, codelist in BP_CODELISTS.items():
            params[name] = sorted(codes[codelist])
    else:
        from reference_data.loader import read_codelist

        for name, codelist in BP_CODELISTS.items():
            params[name] = sorted(read_codelist(codelist, reference_dir)["code"].to_list())
    return load_suite(suite_path("staging.patients"), params), load_suite(suite_path("staging.events"), params)


def outcome_frame(outcome: CheckOutcome, reporting_month: date, asset: str, check_name: str, run_id: str) -> pl.DataFrame:
    """Return an outcome's rows in the `audit.data_quality` layout."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    records = [
        {"reporting_month": reporting_month, "asset": asset, "check_name": check_name, "kind": r.kind, "name": r.name,
         "column": r.column, "passed": r.passed, "severity": outcome.severity, "n": r.n, "n_total": r.n_total,
         "share": r.share, "threshold": r.threshold, "run_id": run_id, "recorded_at": now}
        for r in outcome.rows
    ]
    return pl.DataFrame(records, schema=DATA_QUALITY.schema)


def record(warehouse, reporting_month: date, asset: str, check_name: str, outcome: CheckOutcome, run_id: str) -> None:
    """Replace this gate's rows for the month in `audit.data_quality`, in one transaction.

    Arguments:
        warehouse: the `Warehouse` resource (or its file): the one door to the warehouse.
    """
    from pipelines.warehouse import as_warehouse

    frame = outcome_frame(outcome, reporting_month, asset, check_name, run_id)
    as_warehouse(warehouse).write(*TABLE, frame, replace_where={"reporting_month": reporting_month, "asset": asset,
                                                                "check_name": check_name})


def check_result(context, warehouse, asset_key, check_name: str, outcome: CheckOutcome):
    """Record the outcome for the run's month, then return it as a Dagster asset-check result."""
    import dagster as dg

    from pipelines.partitions import MONTHLY

    month = MONTHLY.time_window_for_partition_key(context.partition_key).start.date()
    started = time.perf_counter()
    record(warehouse, month, asset_key.to_user_string(), check_name, outcome, context.run.run_id)
    outcome.seconds += time.perf_counter() - started  # writing the history is part of the gate's cost
    severity = dg.AssetCheckSeverity.WARN if outcome.severity == "WARN" else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(asset_key=asset_key, check_name=check_name, passed=outcome.passed, severity=severity,
                               metadata=outcome.metadata())


def history(warehouse: Path) -> pl.DataFrame:
    """Return `audit.data_quality` (empty when no gate has run yet)."""
    from pipelines.warehouse import connect, read_table, table_exists

    if not Path(warehouse).exists():
        return DATA_QUALITY.empty()
    with connect(warehouse, read_only=True) as con:
        return read_table(con, *TABLE) if table_exists(con, *TABLE) else DATA_QUALITY.empty()


def report(frame: pl.DataFrame, month: date | None = None) -> str:
    """Return a plain-text quality report: one line per month, or every measure of one month.

    Examples:
        >>> import datetime as dt
        >>> rows = [QualityRow("quarantine_share", "patients", None, True, 2, 1000, 0.002, 0.01),
        ...         QualityRow("expectation", "expect_column_values_to_be_unique", "patient_id", True, 0, 998, 0.0),
        ...         QualityRow("match_rate", "IMD2025", "imd2025_decile", True, 980, 990, 980 / 990, 0.95)]
        >>> frame = outcome_frame(CheckOutcome(True, "", rows), dt.date(2026, 10, 1), "staging/patients", "input_contract", "r1")
        >>> print(report(frame))
        month    gates passed  expectations failed  patient rows quarantined  event rows quarantined  IMD2025 match rate
        2026-10  1/1           0/1                  2 (0.2%)                  -                       99.0%
    """
    if frame.is_empty():
        return "no data-quality results recorded yet (run a month first)"
    if month is not None:
        return _month_report(frame.filter(pl.col("reporting_month") == month), month)
    lines = [f"{'month':<8} {'gates passed':<13} {'expectations failed':<20} {'patient rows quarantined':<25} "
             f"{'event rows quarantined':<23} IMD2025 match rate"]
    for (reporting_month,), rows in sorted(frame.group_by("reporting_month"), key=lambda kv: kv[0]):
        checks = rows.group_by("asset", "check_name").agg((pl.col("passed") != False).all().alias("ok"))  # noqa: E712
        expectations = rows.filter(kind="expectation")
        lines.append(
            f"{reporting_month:%Y-%m}  {checks['ok'].sum()}/{checks.height:<11} "
            f"{int((expectations['passed'] == False).sum())}/{expectations.height:<18} "  # noqa: E712
            f"{_share(rows, 'patients'):<25} {_share(rows, 'events'):<23} {_rate(rows, 'IMD2025')}"
        )
    return "\n".join(lines)


def _share(rows: pl.DataFrame, table: str) -> str:
    found = rows.filter(kind="quarantine_share", name=table)
    if found.is_empty():
        return "-"
    n, share = found.row(0, named=True)["n"], found.row(0, named=True)["share"]
    return f"{n:,} ({share:.1%})"


def _rate(rows: pl.DataFrame, vintage: str) -> str:
    found = rows.filter(kind="match_rate", name=vintage)
    return "-" if found.is_empty() else f"{found.row(0, named=True)['share']:.1%}"


def _month_report(rows: pl.DataFrame, month: date) -> str:
    if rows.is_empty():
        return f"no data-quality results recorded for {month:%Y-%m}"
    lines = [f"data quality for {month:%Y-%m} (run {rows['run_id'][0]})"]
    for (asset, check), group in sorted(rows.group_by("asset", "check_name"), key=lambda kv: kv[0]):
        verdict = "FAILED" if (group["passed"] == False).any() else "passed"  # noqa: E712
        lines.append(f"  {asset}:{check} {verdict} ({group['severity'][0]})")
        for r in group.iter_rows(named=True):
            mark = {True: "ok  ", False: "FAIL", None: "    "}[r["passed"]]
            column = f" [{r['column']}]" if r["column"] else ""
            count = f" {r['n']:,}" + (f" of {r['n_total']:,}" if r["n_total"] is not None else "") if r["n"] is not None else ""
            share = f" ({r['share']:.2%})" if r["share"] is not None else ""
            limit = f" threshold {r['threshold']:g}" if r["threshold"] is not None else ""
            lines.append(f"    {mark} {r['kind']}: {r['name']}{column}{count}{share}{limit}")
    return "\n".join(lines)
