"""Explain one patient: every register, cohort and indicator they are in or out of, and why.

For an auditor's "why is this patient in the SMI cohort?": each definition is compiled by
the same engine as the monthly figures (so the answer is the figure's answer), and every
rule in it is shown with its result and the evidence that decided it — the code, its
term and its date, the value read, the age or decile used.

This is patient-level output by design. It is returned as text for the console only: no
function here writes a table, a log line or run metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

import polars as pl
from pydantic import BaseModel

from pipelines.segmentation.cohorts import IMD_DECILE_COLUMNS, UNKNOWN, Compiler, check_reference_date
from pipelines.segmentation.definitions import (
    Age,
    Definitions,
    Deprivation,
    Ethnicity,
    HasEvent,
    HasRecord,
    InCohort,
    LatestEventIn,
    LatestValue,
    LatestValueAtMost,
    NoEvent,
    CountEvents,
    OnRegister,
    children,
    describe_criterion,
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


class _Evidence:
    """Read the single patient's rows and describe what decided each leaf rule."""

    def __init__(self, compiler: Compiler, events: pl.DataFrame, person: Mapping, feeds: Mapping[str, pl.DataFrame],
                 term_lookup: TermLookup | None):
        self.compiler = compiler
        self.events = events.filter(pl.col("event_date") <= compiler.reference_date)
        self.person = person
        self.feeds = feeds
        self.term_lookup = term_lookup

    def terms(self, codelist_ids) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.term_lookup is not None:
            for codelist_id in codelist_ids:
                out.update(self.term_lookup(codelist_id))
        return out

    def rows(self, codelist_ids, start: date | None, needs_value: bool = False) -> pl.DataFrame:
        codes = self.compiler.codes_of(codelist_ids)
        rows = self.events.filter(pl.col("code").is_in(codes))
        if start is not None:
            rows = rows.filter(pl.col("event_date") >= start)
        if needs_value:
            rows = rows.filter(pl.col("value").is_not_null())
        return rows.sort("event_date", "code")

    def latest(self, codelist_ids, start: date | None, what: str) -> str:
        rows = self.rows(codelist_ids, start)
        since = f" since {start}" if start else " on or before R"
        if rows.is_empty():
            return f"no {what} code{since}"
        last = rows.row(-1, named=True)
        extra = f"; {rows.height} in all" if rows.height > 1 else ""
        return f"latest {_text(last['code'], self.terms(codelist_ids))} on {last['event_date']}{extra}"

    def latest_value(self, codelist_ids, start: date | None) -> str:
        rows = self.rows(codelist_ids, start, needs_value=True)
        if rows.is_empty():
            return f"no {' / '.join(codelist_ids)} value{' since ' + str(start) if start else ''}"
        day = rows["event_date"].max()
        on_day = rows.filter(pl.col("event_date") == day).sort("value")
        first = on_day.row(0, named=True)
        return f"{first['value']:g} ({_text(first['code'], self.terms(codelist_ids))}) on {day}"

    def leaf(self, c: BaseModel) -> str:
        compiler = self.compiler
        if isinstance(c, (HasEvent, NoEvent, CountEvents)):
            spec = c.has_event if isinstance(c, HasEvent) else c.no_event if isinstance(c, NoEvent) else c.count_events
            start = compiler.start(spec)
            text = self.latest(spec.codelists, start, " / ".join(spec.codelists))
            if isinstance(c, CountEvents):
                text = f"{self.rows(spec.codelists, start).height} issue(s) counted; {text}"
            return text
        if isinstance(c, LatestEventIn):
            spec = c.latest_event_in
            rows = self.rows(spec.codelists, compiler.start(spec))
            if rows.is_empty():
                return f"no {' / '.join(spec.codelists)} code"
            day = rows["event_date"].max()
            codes = rows.filter(pl.col("event_date") == day)["code"].unique().sort().to_list()
            terms = self.terms(spec.codelists)
            return f"latest on {day}: {', '.join(_text(code, terms) for code in codes)}"
        if isinstance(c, LatestValueAtMost):
            spec = c.latest_value_at_most
            start = compiler.start(spec.within_months)
            return (f"systolic {self.latest_value(spec.systolic, start)}; diastolic "
                    f"{self.latest_value(spec.diastolic, start)}; age {self.person.get('age')}")
        if isinstance(c, LatestValue):
            spec = c.latest_value
            return self.latest_value(spec.codelists, compiler.start(spec))
        if isinstance(c, HasRecord):
            spec = c.has_record
            feed = FEEDS[spec.feed]
            rows = self.feeds.get(spec.feed, pl.DataFrame()).filter(pl.col(feed.date_column) <= compiler.reference_date)
            start = compiler.start(spec)
            if start is not None:
                rows = rows.filter(pl.col(feed.date_column) >= start)
            for column, values in spec.where.items():
                rows = rows.filter(pl.col(column).is_in(list(values)).fill_null(False))
            if rows.is_empty():
                return f"no matching {spec.feed} record"
            last = rows.sort(feed.date_column).row(-1, named=True)
            shown = ", ".join(f"{k} {v}" for k, v in last.items() if k not in ("patient_id", "reporting_month"))
            return f"{rows.height} matching record(s); latest: {shown}"
        if isinstance(c, Age):
            return f"age {self.person.get('age')} at R"
        if isinstance(c, Deprivation):
            decile = self.person.get("imd_decile")
            method = self.person.get("imd_method")
            return f"{self.person.get('imd_vintage')} decile {decile if decile is not None else 'none'}" + (
                f" ({method})" if method else "")
        if isinstance(c, Ethnicity):
            category = self.person.get("ethnic_category")
            broad = self.person.get("ethnicity_broad") or UNKNOWN
            return f"ethnic category {category}, {broad}" if category else "no ethnicity code recorded (Unknown)"
        if isinstance(c, InCohort):
            return f"see cohort {c.in_cohort}"
        return ""

    def register(self, register_id: str, defs: Definitions) -> str:
        register = defs.registers[register_id]
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
    compiler = Compiler(defs, codelists, reference_date)
    nodes: dict[int, pl.Expr] = {}
    results: list[tuple[str, str, object]] = []

    def compile_node(c: BaseModel) -> None:
        nodes[id(c)] = compiler.criterion(c)
        for _, child in children(c):
            compile_node(child)

    for kind in ("register", "cohort", "indicator"):
        for definition_id in sorted(defs.store(kind)):
            if defs.availability(kind, definition_id, present):
                continue
            if kind == "register":
                nodes[("register", definition_id)] = compiler.register(definition_id)  # type: ignore[index]
            for _, root in defs.roots(kind, definition_id):
                compile_node(root)
    feed_frames = {name: frame.lazy() for name, frame in feeds.items() if frame is not None}
    frame = compiler.frame(
        patient.lazy(), events.lazy(), deprivation.lazy() if deprivation is not None else None,
        ethnicity.lazy() if ethnicity is not None else None, imd_vintage, feed_frames,
    )
    values = frame.select(pl.col("age"), *[expr.alias(f"_n{i}") for i, expr in enumerate(nodes.values())]).collect()
    flags = {key: bool(values[f"_n{i}"].item()) for i, key in enumerate(nodes)}

    person = {"age": values["age"].item(), "imd_vintage": imd_vintage}
    if deprivation is not None and deprivation.height:
        row = deprivation.row(0, named=True)
        prefix = IMD_DECILE_COLUMNS[imd_vintage].replace("_decile", "")
        person["imd_decile"] = row.get(f"{prefix}_decile")
        person["imd_method"] = row.get(f"{prefix}_method")
    if ethnicity is not None and ethnicity.height:
        person.update({k: ethnicity.row(0, named=True).get(k) for k in ("ethnic_category", "ethnicity_broad", "ethnicity_16")})
    evidence = _Evidence(compiler, events, person, {k: v for k, v in feeds.items() if v is not None}, term_lookup)

    def explain_node(c: BaseModel, path: str) -> RuleResult:
        if isinstance(c, OnRegister):
            text = evidence.register(c.on_register, defs)
        else:
            text = evidence.leaf(c)
        return RuleResult(path, describe_criterion(c) if not children(c) else type(c).__name__.replace("Of", " of").lower(),
                          flags[id(c)], text, [explain_node(child, f"{path}.{sub}") for sub, child in children(c)])

    out: list[DefinitionResult] = []
    for kind in ("register", "cohort", "indicator"):
        for definition_id, definition in sorted(defs.store(kind).items()):
            reason = defs.availability(kind, definition_id, present)
            result = DefinitionResult(kind, definition_id, definition.version, definition.title, "", not_available_reason=reason)
            out.append(result)
            if reason:
                continue
            if kind == "register":
                is_on = flags[("register", definition_id)]  # type: ignore[index]
                result.verdict = "in" if is_on else "out"
                result.rules = [RuleResult("register", "latest diagnosis later than latest resolved code, on or before R",
                                           is_on, evidence.register(definition_id, defs))]
                continue
            result.rules = [explain_node(root, part) for part, root in defs.roots(kind, definition_id)]
            if kind == "cohort":
                result.verdict = "in" if result.rules[0].is_met else "out"
            else:
                in_denominator, in_numerator = (rule.is_met for rule in result.rules)
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
