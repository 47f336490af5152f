"""Compare two versions of the definitions on one month's data: who enters, who leaves, why.

For an auditor's "what changed when the codelist was updated?": both versions are
evaluated by the same engine on the same staged month, and for every register, cohort
and indicator the patients entering and leaving (members; an indicator's denominator and
numerator) are counted. The causes are named: the rule fields that differ (the
definition or anything it uses) and the codes added to or removed from the codelists it
reads, with how many of the movers carry each such code.

Both versions are built as patient models side by side in one DuckDB session (over the
warehouse's staged tables, or over frames) and compared there: only counts and codes
leave the session, never a patient identifier. The counts are unrounded (this is an
analyst's console tool, not a publication).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from pipelines.segmentation.definitions import Definitions
from pipelines.segmentation.patient_model import ModelBuilder, ModelSession, flag_column, literal, quote


@dataclass(frozen=True)
class MonthData:
    """One month's staged inputs (the private layer): frames, or a session over the warehouse."""

    patients: pl.LazyFrame | None
    events: pl.LazyFrame | None
    deprivation: pl.LazyFrame | None
    ethnicity: pl.LazyFrame | None
    feeds: Mapping[str, pl.LazyFrame | None]
    reference_date: date
    imd_vintage: str = "IMD2025"
    session: ModelSession | None = None

    def open(self) -> ModelSession:
        """Return the session the models are built in."""
        if self.session is not None:
            return self.session
        return ModelSession.from_frames(self.reference_date.replace(day=1), self.patients, self.events,
                                        self.deprivation, self.ethnicity, self.feeds)

    def present(self) -> list[str]:
        """Return the optional feeds the month supplied."""
        if self.session is not None:
            return [name for name, relation in self.session.sources.feeds.items() if relation is not None]
        return [name for name, frame in self.feeds.items() if frame is not None]


@dataclass
class PartChange:
    """How one population of a definition moved (members, denominator or numerator)."""

    part: str
    n_old: int
    n_new: int
    n_entered: int
    n_left: int


@dataclass
class DefinitionChange:
    """One definition's movers and their causes."""

    kind: str
    definition_id: str
    status: str  # changed, unchanged, added, removed, not available
    parts: list[PartChange] = field(default_factory=list)
    rule_changes: list[str] = field(default_factory=list)
    code_changes: list[str] = field(default_factory=list)

    @property
    def n_movers(self) -> int:
        """Return the patients entering or leaving any of its populations."""
        return sum(p.n_entered + p.n_left for p in self.parts)


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{path}.{k}" if path else str(k)))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{path}[{i}]"))
        return out
    return {path: value}


def rule_changes(old: Definitions, new: Definitions, kind: str, definition_id: str) -> list[str]:
    """Return the fields that differ between two versions of a definition and what it uses.

    Examples:
        >>> from pipelines.segmentation.definitions import parse_definitions
        >>> text = "registers:\\n  - id: r\\n    version: 1\\n    title: t\\n    description: d\\n    source: s\\n    diagnosis: [mh_cod]\\n"
        >>> a = parse_definitions({"r.yaml": text}, known_codelists={"mh_cod", "smhres"})
        >>> b = parse_definitions({"r.yaml": text + "    resolved: [smhres]\\n"}, known_codelists={"mh_cod", "smhres"})
        >>> rule_changes(a, b, "register", "r")
        ["register 'r': resolved: [] -> ['smhres']"]
    """
    keys = sorted(set(old.dependencies(kind, definition_id)) | set(new.dependencies(kind, definition_id)))
    changes = []
    for k, i in keys:
        before = _flatten(old.canonical(k, i)) if i in old.store(k) else {}
        after = _flatten(new.canonical(k, i)) if i in new.store(k) else {}
        for path in sorted(set(before) | set(after)):
            if path in ("title", "description", "source"):
                continue
            if before.get(path, []) != after.get(path, []):
                changes.append(f"{k} '{i}': {path}: {before.get(path, [])} -> {after.get(path, [])}")
    return changes


def _parts(kind: str) -> list[str]:
    return ["members"] if kind != "indicator" else ["denominator", "numerator"]


def _flag(builder: ModelBuilder, kind: str, definition_id: str, part: str) -> str | None:
    # The model column of one population, or None when that version does not evaluate it.
    if definition_id not in builder.planned[kind]:
        return None
    return flag_column(kind, definition_id, "" if part == "members" else part)


def diff_definitions(
    old: Definitions,
    new: Definitions,
    old_codelists: Mapping[str, frozenset[str]],
    new_codelists: Mapping[str, frozenset[str]],
    data: MonthData,
    term_lookup=None,
) -> list[DefinitionChange]:
    """Return, per definition, who enters and leaves between two definition versions, and why.

    Arguments:
        old, new: the two validated definition versions.
        old_codelists, new_codelists: each version's codelists (see `cohorts.load_codelists`).
        data: the month to evaluate both on.
        term_lookup: optional codelist id -> {code: term}, to name changed codes.

    Returns:
        One DefinitionChange per definition in either version, changed ones first.
    """
    present = data.present()
    session = data.open()
    builders = {}
    for label, defs, codelists in (("_old", old, old_codelists), ("_new", new, new_codelists)):
        builders[label] = ModelBuilder(defs, codelists, data.reference_date, data.imd_vintage).plan(feeds_present=present)
        session.materialise(builders[label], label)
    keys = [(kind, definition_id) for kind in ("register", "cohort", "indicator")
            for definition_id in sorted(set(old.store(kind)) | set(new.store(kind)))]

    def column(label: str, kind: str, definition_id: str, part: str) -> str:
        name = _flag(builders[label], kind, definition_id, part)
        return f"{label}.{quote(name)}" if name else "false"

    counts_sql, moved = [], {}
    for kind, definition_id in keys:
        movers = []
        for part in _parts(kind):
            a, b = column("_old", kind, definition_id, part), column("_new", kind, definition_id, part)
            tag = f"{kind}:{definition_id}:{part}"
            counts_sql += [f"count(*) filter (where {a}) as {quote(tag + ':old')}",
                           f"count(*) filter (where {b}) as {quote(tag + ':new')}",
                           f"count(*) filter (where {b} and not {a}) as {quote(tag + ':entered')}",
                           f"count(*) filter (where {a} and not {b}) as {quote(tag + ':left')}"]
            movers.append(f"({a} <> {b})")
        moved[(kind, definition_id)] = " or ".join(movers)
    joined = "_old join _new on _new.patient_id = _old.patient_id"
    counts = session.query(f"select {', '.join(counts_sql)} from {joined}").row(0, named=True)
    events = session.sources.events
    month_filter = (f" and e.reporting_month = {literal(data.reference_date.replace(day=1))}"
                    if "reporting_month" in session.sources.columns.get(events, ()) else "")
    if session.sources.event_codes is not None:
        # Keyed events (staging.event_rows: patient_key, code_key) carry no code or patient id:
        # count carriers on the readable view over them, one month of it.
        events = "staging.events"
        month_filter = f" and e.reporting_month = {literal(data.reference_date.replace(day=1))}"
    changes = []
    for kind, definition_id in keys:
        in_old, in_new = definition_id in old.store(kind), definition_id in new.store(kind)
        change = DefinitionChange(kind, definition_id, "added" if not in_old else "removed" if not in_new else "unchanged")
        if in_old and in_new:
            change.rule_changes = rule_changes(old, new, kind, definition_id)
            if old.definition_hash(kind, definition_id) != new.definition_hash(kind, definition_id):
                change.status = "changed"
        reasons = [d.availability(kind, definition_id, present) for d, ok in ((old, in_old), (new, in_new)) if ok]
        if any(reasons):
            change.status = "not available"
        for part in _parts(kind):
            tag = f"{kind}:{definition_id}:{part}"
            change.parts.append(PartChange(part, counts[tag + ":old"], counts[tag + ":new"], counts[tag + ":entered"],
                                           counts[tag + ":left"]))
        n_movers = None
        used = (old.codelists_used(kind, definition_id) if in_old else set()) | (
            new.codelists_used(kind, definition_id) if in_new else set())
        for codelist_id in sorted(used):
            codes_old = old_codelists.get(codelist_id, frozenset())
            codes_new = new_codelists.get(codelist_id, frozenset())
            if codes_old == codes_new:
                continue
            if change.status == "unchanged":
                change.status = "changed"
            movers = f"select _old.patient_id from {joined} where {moved[(kind, definition_id)]}"
            if n_movers is None:
                n_movers = session.query(f"select count(*) as n from ({movers})")["n"].item()
            terms = term_lookup(codelist_id) if term_lookup else {}
            for verb, codes in (("added to", codes_new - codes_old), ("removed from", codes_old - codes_new)):
                for code in sorted(codes):
                    carriers = session.query(
                        f"select count(distinct e.patient_id) as n from {events} e where e.code = {literal(code)} "
                        f"and e.event_date <= {literal(data.reference_date)}{month_filter} "
                        f"and e.patient_id in ({movers})")["n"].item()
                    term = f" ({terms[code]})" if code in terms else ""
                    change.code_changes.append(f"code {code}{term} {verb} {codelist_id}: {carriers} of {n_movers} mover(s) have it")
        changes.append(change)
    order = {"changed": 0, "added": 1, "removed": 2, "not available": 3, "unchanged": 4}
    return sorted(changes, key=lambda c: (order[c.status], c.n_movers == 0, c.kind, c.definition_id))


def format_changes(changes: list[DefinitionChange]) -> list[str]:
    """Return the console lines of a diff: changed definitions in full, unchanged ones counted."""
    lines = []
    quiet = [c for c in changes if c.status in ("unchanged", "not available") and c.n_movers == 0 and not c.rule_changes]
    for change in changes:
        if change in quiet:
            continue
        lines.append(f"{change.kind} {change.definition_id}: {change.status}")
        for part in change.parts:
            lines.append(
                f"    {part.part:<12} {part.n_old:>9,} -> {part.n_new:>9,}   entered {part.n_entered:>7,}   left {part.n_left:>7,}"
            )
        for text in change.rule_changes:
            lines.append(f"    rule: {text}")
        for text in change.code_changes:
            lines.append(f"    codelist: {text}")
    lines.append(f"{len(quiet)} other definition(s): no change and no movers")
    return lines
