"""Explain one patient: every register, cohort and indicator they are in or out of, and why.

For an auditor's "why is this patient in the SMI cohort?": the patient's row of the month's
patient model is built by the same engine as the monthly figures (so the answer is the
figure's answer), every rule of every definition is a selection from that row, and each
rule is shown with its result and the evidence that decided it — the code, its term and
its date, the value read, the age or decile used — which each criterion class describes
itself (`Criterion.evidence`).

This is patient-level output by design. It is returned as text for the console only: no
function here writes a table, a log line or run metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from pipelines.segmentation.criteria import walk
from pipelines.segmentation.criteria.base import Criterion, Window
from pipelines.segmentation.definitions import Definitions
from pipelines.segmentation.patient_model import (
    FrameModel,
    ModelBuilder,
    check_reference_date,
    flag_column,
    quote,
)
from pipelines.segmentation.schemas import FEEDS

TermLookup = Callable[[str], Mapping[str, str]]


@dataclass
class RuleResult:
    """One rule (a node of a definition) with its result and the evidence for it."""

    path: str
    rule: str
    is_met: bool
    evidence: str = ""
    children: list[RuleResult] = field(default_factory=list)


@dataclass
class DefinitionResult:
    """One definition's verdict for the patient."""

    kind: str
    definition_id: str
    version: int
    title: str
    verdict: str  # "in" / "out" (registers, cohorts); "numerator" / "not in numerator" / "not in denominator"
    rules: list[RuleResult] = field(default_factory=list)
    not_available_reason: str | None = None


@dataclass
class Explanation:
    """Everything `explain_patient` found, ready to print."""

    reference_date: date
    facts: list[str]
    results: list[DefinitionResult]

    def lines(self) -> list[str]:
        """Return the explanation as console lines."""
        out = [f"Explanation as at {self.reference_date} (R, the last day of the reporting month)"]
        out += [f"  {fact}" for fact in self.facts]
        for kind, heading in (("register", "Registers"), ("cohort", "Cohorts"), ("indicator", "Indicators")):
            out.append(f"\n{heading}")
            for result in (r for r in self.results if r.kind == kind):
                if result.not_available_reason:
                    out.append(f"  --  {result.definition_id} v{result.version}: not available - {result.not_available_reason}")
                    continue
                out.append(f"  {result.verdict.upper():<4} {result.definition_id} v{result.version}: {result.title}")
                for rule in result.rules:
                    out.extend(_rule_lines(rule, 6))
        return out


def _rule_lines(rule: RuleResult, indent: int) -> list[str]:
    mark = "met    " if rule.is_met else "not met"
    evidence = f" -- {rule.evidence}" if rule.evidence else ""
    lines = [f"{' ' * indent}[{mark}] {rule.path}: {rule.rule}{evidence}"]
    for child in rule.children:
        lines.extend(_rule_lines(child, indent + 4))
    return lines


def _text(code: str, terms: Mapping[str, str]) -> str:
    term = terms.get(code)
    return f"{code} ({term})" if term else code


class PatientEvidence:
    """One patient's rows, read for the evidence each criterion class gives (`EvidenceContext`)."""

    def __init__(self, builder: ModelBuilder, defs: Definitions, events: pl.DataFrame, person: dict[str, Any],
                 feeds: Mapping[str, pl.DataFrame], term_lookup: TermLookup | None):
        self.builder = builder
        self.defs = defs
        self.reference_date = builder.reference_date
        self.events = events.filter(pl.col("event_date") <= builder.reference_date)
        self.person = person
        self.feeds = feeds
        self.term_lookup = term_lookup

    def window_start(self, window: Window | int | None) -> date | None:
        return self.builder.window_start(window)

    def terms(self, codelist_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.term_lookup is not None:
            for codelist_id in codelist_ids:
                out.update(self.term_lookup(codelist_id))
        return out

    def rows(self, codelist_ids: Sequence[str], start: date | None, needs_value: bool = False) -> pl.DataFrame:
        rows = self.events.filter(pl.col("code").is_in(sorted(self.builder.codes(codelist_ids))))
        if start is not None:
            rows = rows.filter(pl.col("event_date") >= start)
        if needs_value:
            rows = rows.filter(pl.col("value").is_not_null())
        return rows.sort("event_date", "code")

    def n_rows(self, codelist_ids: Sequence[str], start: date | None) -> int:
        return self.rows(codelist_ids, start).height

    def latest(self, codelist_ids: Sequence[str], start: date | None, what: str) -> str:
        rows = self.rows(codelist_ids, start)
        since = f" since {start}" if start else " on or before R"
        if rows.is_empty():
            return f"no {what} code{since}"
        last = rows.row(-1, named=True)
        extra = f"; {rows.height} in all" if rows.height > 1 else ""
        return f"latest {_text(last['code'], self.terms(codelist_ids))} on {last['event_date']}{extra}"

    def latest_codes(self, codelist_ids: Sequence[str], start: date | None) -> str:
        rows = self.rows(codelist_ids, start)
        if rows.is_empty():
            return f"no {' / '.join(codelist_ids)} code"
        day = rows["event_date"].max()
        codes = rows.filter(pl.col("event_date") == day)["code"].unique().sort().to_list()
        terms = self.terms(codelist_ids)
        return f"latest on {day}: {', '.join(_text(code, terms) for code in codes)}"

    def latest_value(self, codelist_ids: Sequence[str], start: date | None) -> str:
        rows = self.rows(codelist_ids, start, needs_value=True)
        if rows.is_empty():
            return f"no {' / '.join(codelist_ids)} value{' since ' + str(start) if start else ''}"
        day = rows["event_date"].max()
        first = rows.filter(pl.col("event_date") == day).sort("value").row(0, named=True)
        return f"{first['value']:g} ({_text(first['code'], self.terms(codelist_ids))}) on {day}"

    def feed_rows(self, feed: str, start: date | None, where: Mapping[str, list[Any]]) -> tuple[pl.DataFrame, str]:
        date_column = FEEDS[feed].date_column
        rows = self.feeds.get(feed, pl.DataFrame()).filter(pl.col(date_column) <= self.reference_date)
        if start is not None:
            rows = rows.filter(pl.col(date_column) >= start)
        for column, values in where.items():
            rows = rows.filter(pl.col(column).is_in(list(values)).fill_null(False))
        return rows, date_column

    def register(self, register_id: str) -> str:
        register = self.defs.registers[register_id]
        text = self.latest(register.diagnosis, None, "diagnosis")
        if register.resolved:
            text += f"; resolved: {self.latest(register.resolved, None, 'resolved')}"
        return text


def explain_patient(
    defs: Definitions,
    codelists: Mapping[str, frozenset[str]],
    patient: pl.DataFrame,
    events: pl.DataFrame,
    reference_date: date,
    *,
    deprivation: pl.DataFrame | None = None,
    ethnicity: pl.DataFrame | None = None,
    feeds: Mapping[str, pl.DataFrame | None] | None = None,
    imd_vintage: str = "IMD2025",
    term_lookup: TermLookup | None = None,
) -> Explanation:
    """Return why one patient is in or out of every register, cohort and indicator.

    Arguments:
        defs: validated definitions.
        codelists: codelist id -> codes (see `cohorts.load_codelists`).
        patient: the patient's staged row (patient_id, date_of_birth and/or age); one row.
        events: the patient's events (patient_id, code, event_date, value).
        reference_date: R, the last day of the reporting month.
        deprivation: the patient's `population.patient_deprivation` row.
        ethnicity: the patient's ethnicity (ethnic_category, ethnicity_broad), if any.
        feeds: the patient's rows of each optional feed; None for a feed the month lacked.
        imd_vintage: the vintage Core20 is flagged on.
        term_lookup: codelist id -> {code: term}, to print terms beside codes.

    Returns:
        An Explanation; `.lines()` gives the console text.
    """
    check_reference_date(reference_date)
    if patient.height != 1:
        raise ValueError(f"explain_patient needs exactly one patient row, got {patient.height}")
    feeds = dict(feeds or {})
    present = [name for name, frame in feeds.items() if frame is not None]
    builder = ModelBuilder(defs, codelists, reference_date, imd_vintage).plan(feeds_present=present)
    # Every node of every available definition is a selection from the patient's model row.
    nodes: dict[int, str] = {}
    for kind in ("register", "cohort", "indicator"):
        for definition_id in builder.planned[kind]:
            for part, root in defs.roots(kind, definition_id):
                for _, node in walk(root, part):
                    nodes[id(node)] = builder.criterion(node)
    model = FrameModel(builder, patient, events, deprivation, ethnicity,
                       {name: frame for name, frame in feeds.items() if frame is not None})
    table = model.materialise()
    selected = [quote(name) for name in builder.flags] + [f"{sql} as _n{i}" for i, sql in enumerate(nodes.values())]
    row = model.query(f"select age, imd_decile, imd_method, ethnic_category, ethnicity_16, ethnicity_broad, "
                      f"{', '.join(selected)} from {table}").row(0, named=True)
    node_flags = {key: bool(row[f"_n{i}"]) for i, key in enumerate(nodes)}

    person: dict[str, Any] = {"age": row["age"], "imd_vintage": imd_vintage}
    if deprivation is not None and deprivation.height:
        person |= {"imd_decile": row["imd_decile"], "imd_method": row["imd_method"]}
    if ethnicity is not None and ethnicity.height:
        person |= {k: ethnicity.row(0, named=True).get(k) for k in ("ethnic_category", "ethnicity_broad", "ethnicity_16")}
    evidence = PatientEvidence(builder, defs, events, person, {k: v for k, v in feeds.items() if v is not None}, term_lookup)

    def explain_node(c: Criterion, path: str) -> RuleResult:
        return RuleResult(path, c.label(), node_flags[id(c)], c.evidence(evidence),
                          [explain_node(child, f"{path}.{sub}") for sub, child in c.children()])

    out: list[DefinitionResult] = []
    for kind in ("register", "cohort", "indicator"):
        for definition_id, definition in sorted(defs.store(kind).items()):
            reason = defs.availability(kind, definition_id, present)
            result = DefinitionResult(kind, definition_id, definition.version, definition.title, "", not_available_reason=reason)
            out.append(result)
            if reason:
                continue
            if kind == "register":
                is_on = bool(row[flag_column("register", definition_id)])
                result.verdict = "in" if is_on else "out"
                result.rules = [RuleResult("register", "latest diagnosis later than latest resolved code, on or before R",
                                           is_on, evidence.register(definition_id))]
                result.rules += [explain_node(root, part) for part, root in defs.roots(kind, definition_id)]
                continue
            result.rules = [explain_node(root, part) for part, root in defs.roots(kind, definition_id)]
            if kind == "cohort":
                result.verdict = "in" if row[flag_column("cohort", definition_id)] else "out"
            else:
                in_denominator = bool(row[flag_column("indicator", definition_id, "denominator")])
                in_numerator = bool(row[flag_column("indicator", definition_id, "numerator")])
                result.verdict = ("num" if in_numerator else "den") if in_denominator else "out"
                if not in_denominator:
                    result.rules = result.rules[:1]  # the numerator only counts inside the denominator
    facts = [
        f"age {person['age']} at R; {imd_vintage} decile {person.get('imd_decile', 'none')} ({person.get('imd_method') or 'no deprivation row'})",
        f"ethnicity: {person.get('ethnicity_16') or 'no ethnicity code recorded'}"
        + (f" (category {person['ethnic_category']})" if person.get("ethnic_category") else ""),
        "optional feeds supplied this month: " + (", ".join(sorted(present)) or "none"),
        "indicator verdicts: NUM = in the denominator and the numerator; DEN = in the denominator only; OUT = not in the denominator",
    ]
    return Explanation(reference_date, facts, out)
