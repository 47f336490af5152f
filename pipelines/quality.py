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
# Codelists whose codes carry a value with a plausible range, named as the events suite's parameters.
VALUE_CODELISTS = {"systolic_codes": "systolic_blood_pressure_qof", "diastolic_codes": "diastolic_blood_pressure_qof",
                   "qrisk_codes": "qriskscore_cod"}


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


# What to change when a rule catches many rows because the supplier codes a column its own way
# (the extract is then right, and only the mapping is missing).
RULE_HINTS = {
    "sex_code_unknown": (
        "Sex must be M, F, I or U: if the supplier codes it otherwise (e.g. Male/Female or 1/2), map its codes "
        "with options.sex_values in column_mapping.yaml, e.g. `sex_values: {Male: M, Female: F}`."
    ),
}


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
        the threshold (max_quarantine_share) if these rows may be set aside. Sex must be M, F, I or U: if the
        supplier codes it otherwise (e.g. Male/Female or 1/2), map its codes with options.sex_values in
        column_mapping.yaml, e.g. `sex_values: {Male: M, Female: F}`.
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
            + "".join(f" {RULE_HINTS[rule]}" for rule, n in split.n_quarantined.items() if n and rule in RULE_HINTS)
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

    The value plausibility rules need the pinned codelists of the codes they range-check
    (QOF systolic and diastolic blood pressure, QRISK score): from the warehouse's `reference.codelists` when a connection is given (the
    reference job loaded and checked them), else from the reference files (sha256-checked).
    """
    from pipelines.segmentation.extract import month_end

    params: dict[str, Any] = {"reference_date": month_end(reporting_month), "sex_codes": list(SEX_CODES)}
    if con is not None:
        from pipelines.segmentation.cohorts import codelists_from_warehouse
        from pipelines.segmentation.definitions import Definitions

        codes = codelists_from_warehouse(con, Definitions({}, {}, {}, {}), list(VALUE_CODELISTS.values()))
        for name, codelist in VALUE_CODELISTS.items():
            params[name] = sorted(codes[codelist])
    else:
        from reference_data.loader import read_codelist

        for name, codelist in VALUE_CODELISTS.items():
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
    if found.is_empty() or found.row(0, named=True)["share"] is None:
        return "-"
    return f"{found.row(0, named=True)['share']:.1%}"


def check_verdict(failed: bool, severity: str) -> str:
    """Return a check's result and what it means, never a severity that reads like a result.

    A check's severity says what a failure would do (ERROR blocks publication, WARN only
    warns); "passed (ERROR)" read as an error, so the role is written out in words.

    Examples:
        >>> check_verdict(False, "ERROR"), check_verdict(True, "ERROR")
        ('passed [blocking gate]', 'FAILED [blocking gate: publication blocked]')
        >>> check_verdict(True, "WARN")
        'FAILED [warning only: publication not blocked]'
    """
    role = "blocking gate" if severity == "ERROR" else "warning only"
    if not failed:
        return f"passed [{role}]"
    return f"FAILED [{role}: {'publication blocked' if severity == 'ERROR' else 'publication not blocked'}]"


def _month_report(rows: pl.DataFrame, month: date) -> str:
    if rows.is_empty():
        return f"no data-quality results recorded for {month:%Y-%m}"
    lines = [f"data quality for {month:%Y-%m} (run {rows['run_id'][0]})"]
    for (asset, check), group in sorted(rows.group_by("asset", "check_name"), key=lambda kv: kv[0]):
        lines.append(f"  {asset}:{check} {check_verdict((group['passed'] == False).any(), group['severity'][0])}")  # noqa: E712
        for r in group.iter_rows(named=True):
            mark = {True: "ok  ", False: "FAIL", None: "    "}[r["passed"]]
            column = f" [{r['column']}]" if r["column"] else ""
            count = f" {r['n']:,}" + (f" of {r['n_total']:,}" if r["n_total"] is not None else "") if r["n"] is not None else ""
            share = f" ({r['share']:.2%})" if r["share"] is not None else ""
            limit = f" threshold {r['threshold']:g}" if r["threshold"] is not None else ""
            lines.append(f"    {mark} {r['kind']}: {r['name']}{column}{count}{share}{limit}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The published (and printed) form of the history: the disclosure profile on every count.
# ---------------------------------------------------------------------------

# Kept in the private history only: the match methods and match rates are published, per
# practice and for the whole extract, in `published.deprivation_quality`, where they are
# protected together with the gap table; restating them here would add relations a reader
# could use against its hidden counts.
PRIVATE_KINDS = ("match_method", "match_rate")
# The disclosure audit's own verdicts are counts of rule breaches, recorded after the
# candidate it audits was built (see pipelines/disclosure_audit.py).
DISCLOSURE_ASSET_PREFIX = "audit/disclosure"


def controlled_rows(rows: pl.DataFrame, profile_name: str) -> pl.DataFrame:
    """Return data-quality rows as they may be published or printed: every count controlled.

    `n` and `n_total` get the disclosure profile; quarantined rows by rule add up to the
    table's quarantined rows, so those counts are protected with secondary suppression against
    that relation (`disclosure.complementary_suppression`); a share is recomputed from the
    controlled counts and left empty where one is hidden. Match methods and match rates are
    left out (`PRIVATE_KINDS`), and so are the disclosure audit's own rows.

    Examples:
        >>> import datetime as dt
        >>> rows = [QualityRow("quarantine_rule", "sex_missing", None, None, 3, 1000, 0.003),
        ...         QualityRow("quarantine_rule", "code_malformed", None, None, 9, 1000, 0.009),
        ...         QualityRow("quarantine_share", "patients", None, True, 12, 1000, 0.012, 0.05)]
        >>> frame = outcome_frame(CheckOutcome(True, "", rows), dt.date(2026, 10, 1), "staging/patients", "input_contract", "r1")
        >>> controlled_rows(frame, "nhs_suppress_1_7_round_5").select("name", "n", "n_total", "share").rows()
        [('sex_missing', None, 1000, None), ('code_malformed', None, 1000, None), ('patients', 10, 1000, 0.01)]
    """
    from pipelines.segmentation.disclosure import complementary_suppression, get_profile

    profile = get_profile(profile_name)
    kept = rows.filter(~pl.col("kind").is_in(PRIVATE_KINDS) & ~pl.col("asset").str.starts_with(DISCLOSURE_ASSET_PREFIX))
    kept = kept.with_row_index("_row")
    hidden: set[tuple[int, str]] = set()
    suppresses = profile.small_count_action in ("suppress", "redact") and profile.small_count_threshold > 0
    for column in ("n", "n_total"):
        values = {(r, column): int(v or 0) for r, v in zip(kept["_row"].to_list(), kept[column].to_list())}
        small = {k for k, v in values.items() if suppresses and 1 <= v <= profile.small_count_threshold}
        relations = []
        if column == "n":
            for (month, asset, check), group in kept.group_by("reporting_month", "asset", "check_name", maintain_order=True):
                totals = group.filter(pl.col("kind") == "quarantine_share")["_row"].to_list()
                parts = group.filter(pl.col("kind") == "quarantine_rule")["_row"].to_list()
                if totals and parts:
                    relations.append(((totals[0], "n"), [(totals[0], "n"), *[(p, "n") for p in parts]]))
        hidden |= complementary_suppression(values, small, relations, profile=profile) if small else set()
    hidden_value = pl.lit(None, pl.Int64) if profile.small_count_action != "redact" else pl.lit(0, pl.Int64)
    flags = {c: pl.Series(f"_hide_{c}", [(r, c) in hidden for r in kept["_row"].to_list()], dtype=pl.Boolean)
             for c in ("n", "n_total")}
    out = kept.with_columns(*flags.values()).with_columns(
        *[pl.when(pl.col(f"_hide_{c}") | pl.col(c).is_null()).then(hidden_value).otherwise(profile.control(c)).alias(c)
          for c in ("n", "n_total")],
    )
    visible = ~pl.col("_hide_n") & ~pl.col("_hide_n_total") & pl.col("n").is_not_null() & (pl.col("n_total") > 0)
    out = out.with_columns(pl.when(visible).then(pl.col("n") / pl.col("n_total")).alias("share"))
    return out.drop("_row", "_hide_n", "_hide_n_total").select(rows.columns)


def headline(rows: pl.DataFrame, month_label: str, details: str | None = None) -> str:
    """Return the one-line data-quality headline of a month from (controlled) rows.

    `details` is the command that shows the month in full, as the reader should type it
    (`settings_file.hint`: with `--warehouse` when a bare command would read another one).
    """
    quarantined = {r["name"]: r["n"] for r in rows.filter(kind="quarantine_share").iter_rows(named=True)}
    expectations = rows.filter(kind="expectation")
    warnings = expectations.filter(passed=False, severity="WARN").height

    def shown(value) -> str:
        return "suppressed" if value is None else f"{value:,}"

    return (f"  data quality: {expectations.filter(passed=True).height} of {expectations.height} expectations met"
            f"{f' ({warnings} cohort-sanity warning(s))' if warnings else ''}; quarantined rows: "
            f"{shown(quarantined.get('patients', 0))} patients, {shown(quarantined.get('events', 0))} events "
            f"(details: {details or f'core20 quality --month {month_label}'})")


def controlled_history(warehouse: Path) -> pl.DataFrame:
    """Return the data-quality history as `core20 quality` prints it: each month's rows controlled.

    Counts get the month's disclosure profile (`controlled_rows`); the match-rate rows are
    replaced by the one published definition, from the month's controlled deprivation-quality
    candidate (`audit.deprivation_quality`, the table that is published): patients with a
    national decile / patients with an address IMD can apply to (all but blank postcodes and
    addresses outside England), as the run summary and the report state it.
    """
    from pipelines.publication import month_profile
    from pipelines.warehouse import connect, table_exists

    frame = history(warehouse)
    if frame.is_empty():
        return frame
    parts = []
    with connect(warehouse, read_only=True) as con:
        has_quality = table_exists(con, "audit", "deprivation_quality")
        for (month,), rows in sorted(frame.group_by("reporting_month"), key=lambda kv: kv[0]):
            controlled = controlled_rows(rows, month_profile(con, month))
            if has_quality:
                rates = con.execute(
                    "select imd_vintage, n_matched, n_patients - coalesce(n_blank, 0) - coalesce(n_outside_england, 0), "
                    "match_rate from audit.deprivation_quality where reporting_month = ? and practice_code = 'ALL' "
                    "order by imd_vintage", [month]).fetchall()
                extra = pl.DataFrame(
                    [{"reporting_month": month, "asset": "population/patient_deprivation", "check_name": "decile_match_rate",
                      "kind": "match_rate", "name": v, "column": f"{v.lower()}_decile", "passed": None, "severity": "ERROR",
                      "n": n, "n_total": None, "share": rate, "threshold": None, "run_id": rows["run_id"][0],
                      "recorded_at": rows["recorded_at"][0]} for v, n, _, rate in rates],
                    schema=DATA_QUALITY.schema)
                controlled = pl.concat([controlled, extra])
            parts.append(controlled)
    return pl.concat(parts)
