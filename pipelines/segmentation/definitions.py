"""Load and validate the declarative register, cohort and indicator definitions.

The definitions are data (YAML under `reference_data/definitions/`), kept apart from the one
engine that evaluates them (`cohorts.py`) — the ehrQL habit: the *what* lives apart from the
*how*. This module only reads and checks them: every file holds one top-level key
(`registers`, `cohorts` or `indicators`) with a list of definitions, and every problem found
is reported as `<file>: <kind> '<id>': field '<path>': <what is wrong>` so the author can go
straight to the line. Unknown keys are errors, so a misspelt key is never silently ignored.

Two further top-level keys configure a definitions folder rather than define anything:
`ics` (the ICS's name, which cohorts are its PLUS groups and focus populations, and named
`parameters` that any definition can use as `${name}`, e.g. the flu campaign start) and
`codelists` (codelists pinned by this folder itself, each with path, sha256, source and
version — an ICS's own newer release overrides the shared one of the same id).

A window is exactly one of `within_months: N` (event_date in [R - N months + 1 day, R]),
`within_years: N` (12N months), `ever: true` (any date up to R) or `campaign_from: "MM-DD"`
(from the latest such day on or before R, e.g. "09-01" for a flu campaign).

A criterion is a mapping with exactly one key naming its type. Each type is one class in
its own file under `pipelines/segmentation/criteria/` (its schema, its compilation into the
month's patient model, its description and its `explain` evidence), so this module never
asks which type a criterion is: `has_event`, `no_event`, `count_events`, `latest_event_in`,
`latest_value_at_most`, `latest_value`, `has_record`, `age`, `on_register`, `in_cohort`,
`deprivation`, `ethnicity`, `all_of`, `any_of`, `not` - and whatever file is added there.

A cohort or indicator that the shared codelists or feeds cannot support says so with
`not_available_reason` instead of inventing codes; it is catalogued and never evaluated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from pipelines.segmentation import criteria as criterion_types
from pipelines.segmentation.criteria import codelist_refs, walk
from pipelines.segmentation.criteria.base import (
    AgeSpec,
    CodelistIds,
    Criterion,
    CriterionType,
    FeedValue,
    Identifier,
    Strict,
    Window,
    _as_list,
)
from pipelines.segmentation.criteria.ethnicity import ETHNIC_CATEGORIES, ETHNICITY_BROAD

DEFINITIONS_DIR = Path(__file__).resolve().parents[2] / "reference_data" / "definitions"

__all__ = [
    "AgeSpec", "CodelistIds", "Criterion", "DEFINITIONS_DIR", "DefinitionError", "Definitions", "ETHNIC_CATEGORIES",
    "ETHNICITY_BROAD", "Cohort", "Indicator", "Register", "Window", "codelist_refs", "describe_criterion",
    "load_definitions", "parse_definitions", "walk",
]

BREAKDOWNS = ("imd_quintile", "imd_decile", "core20", "ethnicity_broad", "ethnicity_16", "sex", "age_band")
Breakdown = Literal["imd_quintile", "imd_decile", "core20", "ethnicity_broad", "ethnicity_16", "sex", "age_band"]
_Strict = Strict


class DefinitionError(ValueError):
    """One or more definitions are malformed; the message lists every problem, one a line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def describe_criterion(criterion: Criterion) -> str:
    """Return one criterion (and everything nested in it) in words, for explain and attrition.

    Examples:
        >>> from pipelines.segmentation.criteria.age import Age
        >>> describe_criterion(Age(age=AgeSpec(min=40)))
        'aged 40 or over'
    """
    return criterion.describe()


# --- definitions -------------------------------------------------------------------------


class _Definition(_Strict):
    id: Identifier
    version: Annotated[int, Field(ge=1)]
    title: Annotated[str, Field(min_length=1)]
    description: Annotated[str, Field(min_length=1)]
    source: Annotated[str, Field(min_length=1)]


class Register(_Definition):
    """A QOF-style register: on it at R when the latest diagnosis code (≤ R) is later than
    the latest resolved code (≤ R), or there is no resolved code; optional age limits."""

    diagnosis: CodelistIds
    resolved: Annotated[list[Identifier], BeforeValidator(_as_list)] = Field(default_factory=list)
    age: AgeSpec | None = None
    # A second way onto the register, OR-ed with the diagnosis rule (the age limits apply to
    # both): e.g. QOF's mental health register also holds people issued lithium in the last
    # 6 months. Any criterion type.
    also: CriterionType | None = None


class ReportingFocus(_Strict):
    """Groups a cohort is reported with a focus on (a breakdown note, not a filter)."""

    breakdown: Breakdown
    groups: Annotated[list[str], Field(min_length=1)]
    note: str = ""


NotAvailableReason = Annotated[str, Field(min_length=1)] | None


class Cohort(_Definition):
    """A population an ICS chooses to focus on, stated as one criterion (or why it cannot be)."""

    criteria: CriterionType | None = None  # any registered criterion type
    reporting_focus: ReportingFocus | None = None
    not_available_reason: NotAvailableReason = None

    @model_validator(mode="after")
    def _criteria_or_reason(self) -> Cohort:
        if self.criteria is None and self.not_available_reason is None:
            raise ValueError("give criteria, or not_available_reason when no shared codelist supports the cohort")
        if self.criteria is not None and self.not_available_reason is not None:
            raise ValueError("a cohort with criteria is available: drop not_available_reason (or the criteria)")
        return self


class UnavailableComponent(_Strict):
    """A component of the published definition that no shared codelist covers."""

    component: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1)]


class Indicator(_Definition):
    """A numerator/denominator measure; the numerator is evaluated within the denominator.

    `value_type` says what the rate is (DOMAIN.md section 5): a 'proportion' of persons
    (Wilson intervals, Newcombe gaps; stored as a proportion, multiplier 1, shown as a
    percentage) or a 'rate' of events per population (Byar's limits, exact Poisson under 10
    events; stored per `multiplier` people, e.g. 100000 for per 100,000, and never shown with
    a % sign). `multiplier` does not change any count. An indicator no shared codelist or
    feed can support gives `not_available_reason` and no numerator.
    """

    clinical_area: Annotated[str, Field(min_length=1)]
    denominator: CriterionType | None = None
    numerator: CriterionType | None = None
    direction: Literal["higher_is_better", "lower_is_better"]
    target: Annotated[float, Field(ge=0, le=1)] | None = None
    value_type: Literal["proportion", "rate"] = "proportion"
    multiplier: Literal[1, 1000, 10000, 100000] | None = None
    breakdowns: list[Breakdown] = Field(default_factory=list)
    unavailable_components: list[UnavailableComponent] = Field(default_factory=list)
    not_available_reason: NotAvailableReason = None

    @model_validator(mode="after")
    def _unit(self) -> Indicator:
        if self.multiplier is None:
            object.__setattr__(self, "multiplier", 1 if self.value_type == "proportion" else 100000)
        if self.value_type == "proportion" and self.multiplier != 1:
            raise ValueError("a proportion is stored as a proportion (multiplier 1) and shown as a percentage; "
                             "use value_type: rate for a rate per 1,000, 10,000 or 100,000")
        if self.value_type == "rate" and self.multiplier == 1:
            raise ValueError("a rate needs a multiplier of 1000, 10000 or 100000 (e.g. per 100,000)")
        if self.value_type == "rate" and self.target is not None:
            raise ValueError("targets are proportions (0 to 1); a rate indicator cannot take one")
        return self

    @model_validator(mode="after")
    def _rules_or_reason(self) -> Indicator:
        if self.not_available_reason is None and (self.denominator is None or self.numerator is None):
            raise ValueError(
                "give denominator and numerator, or not_available_reason when no shared codelist or feed supports it"
            )
        if self.not_available_reason is not None and self.numerator is not None:
            raise ValueError("an indicator with a numerator is available: drop not_available_reason (or the numerator)")
        return self


class IcsConfig(_Strict):
    """ICS configuration: who the ICS is, which cohorts it reports as PLUS groups and focus
    populations, and named parameters its definitions use as `${name}`."""

    name: Annotated[str, Field(min_length=1)]
    plus_groups: list[Identifier] = Field(default_factory=list)
    focus_cohorts: list[Identifier] = Field(default_factory=list)
    parameters: dict[Identifier, FeedValue] = Field(default_factory=dict)


class LocalCodelist(_Strict):
    """A codelist pinned by a definitions folder itself (path relative to the folder)."""

    path: Annotated[str, Field(min_length=1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    source: Annotated[str, Field(min_length=1)]
    version: Annotated[str, Field(min_length=1)]
    description: str = ""


KINDS: dict[str, tuple[str, type[_Definition]]] = {
    "registers": ("register", Register),
    "cohorts": ("cohort", Cohort),
    "indicators": ("indicator", Indicator),
}
CONFIG_SECTIONS = ("ics", "codelists")
for _model in (Register, Cohort, Indicator):
    criterion_types.add_dependent(_model)


@dataclass(frozen=True)
class Definitions:
    """Every validated definition, by id, with the file each came from, and the folder's
    ICS configuration and own codelist pins."""

    registers: dict[str, Register]
    cohorts: dict[str, Cohort]
    indicators: dict[str, Indicator]
    files: dict[tuple[str, str], str]
    ics: IcsConfig | None = None
    local_codelists: dict[str, LocalCodelist] = dataclass_field(default_factory=dict)
    directory: Path | None = None

    def store(self, kind: str) -> Mapping[str, _Definition]:
        """Return the definitions of one kind ('register', 'cohort' or 'indicator') by id."""
        return {"register": self.registers, "cohort": self.cohorts, "indicator": self.indicators}[kind]

    def roots(self, kind: str, definition_id: str) -> list[tuple[str, Criterion]]:
        """Return the (field, criterion) roots of a definition (a register's: its `also` rule, if any)."""
        if kind == "register":
            parts = [("also", self.registers[definition_id].also)]
        elif kind == "cohort":
            parts = [("criteria", self.cohorts[definition_id].criteria)]
        elif kind == "indicator":
            ind = self.indicators[definition_id]
            parts = [("denominator", ind.denominator), ("numerator", ind.numerator)]
        else:
            raise KeyError(f"unknown definition kind '{kind}'")
        return [(name, c) for name, c in parts if c is not None]

    def criteria(self) -> Iterator[tuple[str, str, str, Criterion]]:
        """Yield (kind, id, path, criterion) for every criterion in every definition."""
        for kind in ("register", "cohort", "indicator"):
            for definition_id in self.store(kind):
                for part, root in self.roots(kind, definition_id):
                    for path, c in walk(root, part):
                        yield kind, definition_id, path, c

    def by_construction(self, indicator_id: str, cohort_id: str) -> str | None:
        """Return why an indicator x cohort comparison is true by construction, or None.

        A cohort whose own rules (followed through `in_cohort`) hold the indicator's numerator
        rule, or any rule the numerator is built from, decides that numerator for its members
        (e.g. bp_case_finding within "no BP in 5 years": 0 of N by definition). DOMAIN.md
        section 4: such a comparison is never published as a finding.

        Examples:
            >>> defs = load_definitions()
            >>> defs.by_construction("bp_case_finding", "nn_cvd_focus")[:40]
            "cohort 'nn_cvd_focus' uses the numerator"
            >>> defs.by_construction("smi_health_check", "nn_cvd_focus") is None
            True
        """
        indicator = self.indicators.get(indicator_id)
        if indicator is None or indicator.numerator is None or cohort_id not in self.cohorts:
            return None

        def canonical(criterion: Criterion) -> str:
            return json.dumps(criterion.model_dump(mode="json", by_alias=True), sort_keys=True)

        numerator_rules = {canonical(c): c for _, c in walk(indicator.numerator, "numerator")
                           if not c.children()}
        numerator_rules[canonical(indicator.numerator)] = indicator.numerator
        pending, seen = [cohort_id], set()
        while pending:
            current = pending.pop()
            if current in seen or current not in self.cohorts:
                continue
            seen.add(current)
            for _, root in self.roots("cohort", current):
                for _, criterion in walk(root, "criteria"):
                    key = canonical(criterion)
                    if key in numerator_rules:
                        return (f"cohort '{cohort_id}' uses the numerator rule of '{indicator_id}' "
                                f"({numerator_rules[key].describe()}), so its members' result is fixed by the "
                                "cohort's own definition")
                    pending.extend(i for k, i in criterion.uses() if k == "cohort")
        return None

    def codelist_ids(self) -> frozenset[str]:
        """Return every codelist id any definition names."""
        ids = {c for r in self.registers.values() for c in (*r.diagnosis, *r.resolved)}
        for _, _, path, criterion in self.criteria():
            ids.update(codelist_id for _, codelist_id in codelist_refs(criterion, path))
        return frozenset(ids)

    def dependencies(self, kind: str, definition_id: str) -> list[tuple[str, str]]:
        """Return the (kind, id) of a definition and every register/cohort it uses, sorted."""
        seen: set[tuple[str, str]] = set()
        stack = [(kind, definition_id)]
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            for _, root in self.roots(*key):
                for _, c in walk(root, ""):
                    stack.extend(c.uses())
        return sorted(seen)

    def codelists_used(self, kind: str, definition_id: str) -> set[str]:
        """Return every codelist a definition reads, through the registers and cohorts it uses too."""
        used: set[str] = set()
        for k, i in self.dependencies(kind, definition_id):
            if k == "register":
                used.update(self.registers[i].diagnosis, self.registers[i].resolved)
            for part, root in self.roots(k, i):
                for path, c in walk(root, part):
                    used.update(codelist_id for _, codelist_id in codelist_refs(c, path))
        return used

    def feeds_used(self, kind: str, definition_id: str) -> list[str]:
        """Return the optional feeds a definition (or anything it uses) reads, sorted."""
        feeds = {
            feed
            for k, i in self.dependencies(kind, definition_id)
            for _, root in self.roots(k, i)
            for _, c in walk(root, "")
            for feed in c.feeds()
        }
        return sorted(feeds)

    def availability(self, kind: str, definition_id: str, feeds_present: Iterator[str] | None = None) -> str | None:
        """Return why a definition cannot be evaluated this month, or None when it can.

        Arguments:
            kind, definition_id: the definition.
            feeds_present: the optional feeds the month's extract supplied; None = all of them.
        """
        for k, i in self.dependencies(kind, definition_id):
            reason = getattr(self.store(k)[i], "not_available_reason", None)
            if reason:
                return reason if (k, i) == (kind, definition_id) else f"uses {k} '{i}', which is not available: {reason}"
        if feeds_present is not None:
            present = set(feeds_present)
            missing = [f for f in self.feeds_used(kind, definition_id) if f not in present]
            if missing:
                return f"linked feed(s) {missing} not supplied in this month's extract"
        return None

    def canonical(self, kind: str, definition_id: str) -> dict[str, Any]:
        """Return the validated definition as plain data (what the hash and the registry store)."""
        return self.store(kind)[definition_id].model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)

    def definition_text(self, kind: str, definition_id: str) -> str:
        """Return the validated definition as YAML (parameters substituted), for the registry."""
        return yaml.safe_dump(self.canonical(kind, definition_id), sort_keys=False, allow_unicode=True, width=100)

    def definition_hash(self, kind: str, definition_id: str) -> str:
        """Return the sha256 of the canonical text of a definition and everything it uses.

        The canonical text is sorted-key JSON of the validated definitions, so whitespace,
        comments and key order in the YAML do not change it, while any change to the rule —
        including a register or cohort it refers to — does.
        """
        payload = [{"kind": k, "definition": self.canonical(k, i)} for k, i in self.dependencies(kind, definition_id)]
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def ics_hash(self) -> str | None:
        """Return the sha256 of the canonical ICS configuration, if there is one."""
        if self.ics is None:
            return None
        text = json.dumps(self.ics.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def cohort_role(self, cohort_id: str) -> str:
        """Return a cohort's role in the ICS configuration: core20, plus_group, focus or building_block."""
        if cohort_id == "core20":
            return "core20"
        if self.ics is not None and cohort_id in self.ics.plus_groups:
            return "plus_group"
        if self.ics is not None and cohort_id in self.ics.focus_cohorts:
            return "focus"
        return "building_block"


def _format_loc(loc: tuple[Any, ...]) -> str:
    # Pydantic puts a tagged union's tag in the location before the field of the same name
    # ("all_of", "all_of", 2); collapse the pair so the path reads as the YAML does.
    parts: list[str] = []
    items = list(loc)
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, str) and i + 1 < len(items) and items[i + 1] == item:
            i += 1
            continue
        if isinstance(item, str) and item.startswith("function-"):
            i += 1
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
        i += 1
    return "".join(parts)


def _format_error(error: Mapping[str, Any]) -> tuple[str, str]:
    path = _format_loc(tuple(error["loc"]))
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = error.get("ctx", {}).get("tag")
        expected = ", ".join(criterion_types.types())
        found = f"unknown criterion type '{tag}'" if tag else "a criterion must be a mapping with one key"
        return path, f"{found}; expected exactly one of: {expected}"
    if kind == "extra_forbidden":
        name = path.rsplit(".", 1)[-1]
        return path, f"unknown key '{name}'"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return path, message


_PARAMETER = re.compile(r"^\$\{([a-z][a-z0-9_]*)\}$")


def _substitute(value: Any, parameters: Mapping[str, Any], path: str, unknown: list[tuple[str, str]]) -> Any:
    """Return `value` with every `${name}` string replaced by the ICS parameter of that name."""
    if isinstance(value, str):
        match = _PARAMETER.match(value)
        if match is None:
            return value
        if match.group(1) not in parameters:
            unknown.append((path, match.group(1)))
            return value
        return parameters[match.group(1)]
    if isinstance(value, Mapping):
        return {k: _substitute(v, parameters, f"{path}.{k}" if path else str(k), unknown) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, parameters, f"{path}[{i}]", unknown) for i, v in enumerate(value)]
    return value


def _parse_file(
    file_name: str, raw: Any, problems: list[str], parameters: Mapping[str, Any]
) -> tuple[str, list[_Definition]]:
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in KINDS:
        problems.append(
            f"{file_name}: the file must hold exactly one top-level key, one of "
            f"{', '.join((*KINDS, *CONFIG_SECTIONS))}, with a list of definitions (or the configuration)"
        )
        return "", []
    section = next(iter(raw))
    kind, model = KINDS[section]
    items = raw[section]
    if not isinstance(items, list):
        problems.append(f"{file_name}: '{section}' must be a list of definitions")
        return section, []
    parsed = []
    for index, item in enumerate(items):
        name = item.get("id") if isinstance(item, Mapping) else None
        label = f"{kind} '{name}'" if name else f"{kind} #{index + 1}"
        unknown: list[tuple[str, str]] = []
        item = _substitute(item, parameters, "", unknown)
        for path, parameter in unknown:
            problems.append(
                f"{file_name}: {label}: field '{path}': unknown parameter '{parameter}'; define it under "
                "ics.parameters"
            )
        if unknown:
            continue  # validating the unsubstituted text would only repeat the problem
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as error:
            for detail in error.errors():
                path, message = _format_error(detail)
                problems.append(f"{file_name}: {label}: field '{path}': {message}")
    return section, parsed


def _parse_config(file_name: str, section: str, body: Any, problems: list[str]) -> Any:
    """Validate an `ics` or `codelists` section; return the model(s) or None."""
    try:
        if section == "ics":
            return IcsConfig.model_validate(body)
        if not isinstance(body, Mapping):
            problems.append(f"{file_name}: 'codelists' must map codelist ids to their pins")
            return None
        pins = {}
        for codelist_id, entry in body.items():
            try:
                pins[str(codelist_id)] = LocalCodelist.model_validate(entry)
            except ValidationError as error:
                for detail in error.errors():
                    path, message = _format_error(detail)
                    problems.append(f"{file_name}: codelist '{codelist_id}': field '{path}': {message}")
        return pins
    except ValidationError as error:
        for detail in error.errors():
            path, message = _format_error(detail)
            problems.append(f"{file_name}: ics: field '{path}': {message}")
    return None


def _safe_load(text: str):
    """Return `yaml.safe_load(text)`, parsed by libyaml where PyYAML has it.

    A month reads the definitions several times; PyYAML's pure-Python parser took about 70 ms
    a time on the library's files, libyaml's 8 ms, building the same objects (the safe
    constructor is the same). A text libyaml rejects is parsed again by the Python parser,
    whose message quotes the offending line, so an analyst's error reads as before.
    """
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.load(text, Loader=loader)  # noqa: S506 - the safe loader, in C
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def parse_definitions(
    texts: Mapping[str, str],
    known_codelists: frozenset[str] | set[str] | None = None,
    directory: str | Path | None = None,
) -> Definitions:
    """Parse and validate definition files given as text.

    Arguments:
        texts: file name -> YAML text (the names appear in error messages).
        known_codelists: the codelist ids a definition may name besides the folder's own
            pins; default: the `codelists` of the reference manifest.
        directory: the folder the texts came from (where its own codelist files live).

    Returns:
        The validated Definitions.

    Raises:
        DefinitionError listing every problem as `<file>: <kind> '<id>': field '<path>': ...`.
    """
    if known_codelists is None:
        from reference_data.loader import load_manifest

        known_codelists = frozenset(load_manifest().codelists)
    problems: list[str] = []
    raws: dict[str, Any] = {}
    ics: IcsConfig | None = None
    local: dict[str, LocalCodelist] = {}
    config_files: dict[str, str] = {}
    for file_name, text in texts.items():
        try:
            raw = _safe_load(text)
        except yaml.YAMLError as error:
            problems.append(f"{file_name}: not valid YAML: {error}")
            continue
        section = next(iter(raw)) if isinstance(raw, Mapping) and len(raw) == 1 else None
        if section in CONFIG_SECTIONS:
            if section in config_files:
                problems.append(f"{file_name}: '{section}' is also given in {config_files[section]}; give it once")
                continue
            config_files[section] = file_name
            parsed = _parse_config(file_name, section, raw[section], problems)
            if section == "ics":
                ics = parsed
            elif parsed is not None:
                local = parsed
            continue
        raws[file_name] = raw
    parameters = ics.parameters if ics is not None else {}
    store: dict[str, dict[str, _Definition]] = {section: {} for section in KINDS}
    files: dict[tuple[str, str], str] = {}
    for file_name, raw in raws.items():
        section, parsed = _parse_file(file_name, raw, problems, parameters)
        for definition in parsed:
            kind = KINDS[section][0]
            if definition.id in store[section]:
                problems.append(
                    f"{file_name}: {kind} '{definition.id}': field 'id': duplicate id "
                    f"(also in {files[(kind, definition.id)]})"
                )
                continue
            store[section][definition.id] = definition
            files[(kind, definition.id)] = file_name
    defs = Definitions(
        store["registers"], store["cohorts"], store["indicators"], files,  # type: ignore[arg-type]
        ics=ics, local_codelists=local, directory=Path(directory) if directory is not None else None,
    )
    problems.extend(_check_references(defs, frozenset(known_codelists) | frozenset(local), config_files.get("ics")))
    if problems:
        raise DefinitionError(problems)
    return defs


def _check_references(defs: Definitions, known_codelists: frozenset[str], ics_file: str | None = None) -> list[str]:
    """Return problems with names that point nowhere: codelists, registers, cohorts, feeds, cycles."""
    problems = []

    def where(kind: str, definition_id: str, path: str) -> str:
        return f"{defs.files[(kind, definition_id)]}: {kind} '{definition_id}': field '{path}'"

    for register in defs.registers.values():
        for field in ("diagnosis", "resolved"):
            for i, codelist_id in enumerate(getattr(register, field)):
                if codelist_id not in known_codelists:
                    problems.append(f"{where('register', register.id, f'{field}[{i}]')}: unknown codelist '{codelist_id}'")
    for kind, definition_id, path, criterion in defs.criteria():
        for field_path, codelist_id in codelist_refs(criterion, path):
            if codelist_id not in known_codelists:
                problems.append(f"{where(kind, definition_id, field_path)}: unknown codelist '{codelist_id}'")
        for field, problem in criterion.check(set(defs.registers), set(defs.cohorts)):
            field_path = f"{path}.{criterion.key}" + (f".{field}" if field else "")
            problems.append(f"{where(kind, definition_id, field_path)}: {problem}")
    if defs.ics is not None:
        for field in ("plus_groups", "focus_cohorts"):
            for i, cohort_id in enumerate(getattr(defs.ics, field)):
                if cohort_id not in defs.cohorts:
                    problems.append(f"{ics_file}: ics: field '{field}[{i}]': unknown cohort '{cohort_id}'")
    if not problems:
        problems.extend(_check_cycles(defs, where))
    return problems


def _check_cycles(defs: Definitions, where: Any) -> list[str]:
    # A cohort defined (directly or not) in terms of itself has no meaning; find such loops.
    uses = {
        cohort_id: [i for _, root in defs.roots("cohort", cohort_id) for _, c in walk(root, "") for k, i in c.uses() if k == "cohort"]
        for cohort_id in defs.cohorts
    }
    problems = []
    for start in uses:
        stack, seen = list(uses[start]), set()
        while stack:
            current = stack.pop()
            if current == start:
                problems.append(f"{where('cohort', start, 'criteria')}: cohort refers to itself through in_cohort")
                break
            if current not in seen:
                seen.add(current)
                stack.extend(uses.get(current, []))
    return problems


def load_definitions(
    directory: str | Path | None = None, known_codelists: frozenset[str] | set[str] | None = None
) -> Definitions:
    """Read and validate every `*.yaml` definition file in a directory.

    Arguments:
        directory: the folder of definition files; default `reference_data/definitions`.
        known_codelists: see `parse_definitions`.

    Returns:
        The validated Definitions.
    """
    folder = Path(directory) if directory is not None else DEFINITIONS_DIR
    if not folder.is_dir():
        raise DefinitionError([f"{folder}: definitions folder does not exist"])
    texts = {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.yaml"))}
    if not texts:
        raise DefinitionError([f"{folder}: no *.yaml definition files found"])
    return parse_definitions(texts, known_codelists, directory=folder.resolve())
