"""Load and validate the declarative register, cohort and indicator definitions.

The definitions are data (YAML under `reference_data/definitions/`), kept apart from the one
engine that evaluates them (`cohorts.py`) — the ehrQL habit: the *what* lives apart from the
*how*. This module only reads and checks them: every file holds one top-level key
(`registers`, `cohorts` or `indicators`) with a list of definitions, and every problem found
is reported as `<file>: <kind> '<id>': field '<path>': <what is wrong>` so the author can go
straight to the line. Unknown keys are errors, so a misspelt key is never silently ignored.

A criterion is a mapping with exactly one key naming its type:

    has_event / no_event      {codelists, within_months | within_years | ever: true}
    count_events              {codelists, within_months | within_years | ever, at_least}
    latest_event_in           {codelists, matches, window}: the latest code among `codelists`
                              is in `matches` (e.g. current smoker = latest of LSMOK/EXSMOK is LSMOK)
    latest_value_at_most      {systolic, diastolic, within_months, thresholds}
    age                       {min, max} (whole years at the reference date, both inclusive)
    on_register / in_cohort   a register / cohort id
    deprivation               {imd_deciles: [1, 2]} (national deciles, the run's IMD vintage)
    ethnicity                 {categories: [M, N]} and/or {broad: [...]}
    all_of / any_of           a list of criteria
    not                       one criterion
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

DEFINITIONS_DIR = Path(__file__).resolve().parents[2] / "reference_data" / "definitions"

# NHS Data Dictionary ethnic category letters (2001 census groups A-S) and Z "not stated".
ETHNIC_CATEGORIES = ("A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "Z")
ETHNICITY_BROAD = (
    "White",
    "Mixed",
    "Asian or Asian British",
    "Black or Black British",
    "Other ethnic group",
    "Not stated",
    "Unknown",
)
BREAKDOWNS = ("imd_quintile", "imd_decile", "core20", "ethnicity_broad", "ethnicity_16", "sex", "age_band")

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
Breakdown = Literal["imd_quintile", "imd_decile", "core20", "ethnicity_broad", "ethnicity_16", "sex", "age_band"]


class DefinitionError(ValueError):
    """One or more definitions are malformed; the message lists every problem, one a line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _as_list(value: Any) -> Any:
    # A single codelist id may be written without brackets: `codelists: mh_cod`.
    return [value] if isinstance(value, str) else value


CodelistIds = Annotated[list[Identifier], BeforeValidator(_as_list), Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- criteria ----------------------------------------------------------------------------


class Window(_Strict):
    """A look-back window ending on the reference date R: exactly one of the three keys.

    `within_months: N` means event_date in [R - N months + 1 day, R]; `within_years: N` is
    12N months; `ever: true` is every date up to R. Events after R are ignored everywhere.
    """

    within_months: Annotated[int, Field(gt=0)] | None = None
    within_years: Annotated[int, Field(gt=0)] | None = None
    ever: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Window:
        given = [k for k in ("within_months", "within_years", "ever") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of within_months, within_years, ever: true (found {given or 'none'})"
            )
        return self

    @property
    def months(self) -> int | None:
        """Return the window length in months, or None for `ever`."""
        if self.within_months is not None:
            return self.within_months
        if self.within_years is not None:
            return 12 * self.within_years
        return None


class EventSpec(Window):
    codelists: CodelistIds


class CountSpec(Window):
    codelists: CodelistIds
    at_least: Annotated[int, Field(gt=0)]


class LatestEventInSpec(Window):
    codelists: CodelistIds
    matches: CodelistIds

    @model_validator(mode="after")
    def _matches_among_codelists(self) -> LatestEventInSpec:
        extra = [m for m in self.matches if m not in self.codelists]
        if extra:
            raise ValueError(f"matches {extra} must also be listed in codelists")
        return self


class Threshold(_Strict):
    """One age band's BP limits; readings exactly at a limit count as controlled (QOF)."""

    age_below: int | None = None
    age_from: int | None = None
    systolic: Annotated[float, Field(gt=0)]
    diastolic: Annotated[float, Field(gt=0)]


class LatestValueSpec(_Strict):
    systolic: CodelistIds
    diastolic: CodelistIds
    within_months: Annotated[int, Field(gt=0)]
    thresholds: Annotated[list[Threshold], Field(min_length=1)]


class AgeSpec(_Strict):
    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> AgeSpec:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class DeprivationSpec(_Strict):
    imd_deciles: Annotated[list[Annotated[int, Field(ge=1, le=10)]], Field(min_length=1)]


class EthnicitySpec(_Strict):
    categories: list[Literal[ETHNIC_CATEGORIES]] | None = None  # type: ignore[valid-type]
    broad: list[Literal[ETHNICITY_BROAD]] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _some(self) -> EthnicitySpec:
        if not self.categories and not self.broad:
            raise ValueError("give categories (NHS letters A-S, Z) or broad groups")
        return self


class HasEvent(_Strict):
    has_event: EventSpec


class NoEvent(_Strict):
    no_event: EventSpec


class CountEvents(_Strict):
    count_events: CountSpec


class LatestEventIn(_Strict):
    latest_event_in: LatestEventInSpec


class LatestValueAtMost(_Strict):
    latest_value_at_most: LatestValueSpec


class Age(_Strict):
    age: AgeSpec


class OnRegister(_Strict):
    on_register: Identifier


class InCohort(_Strict):
    in_cohort: Identifier


class Deprivation(_Strict):
    deprivation: DeprivationSpec


class Ethnicity(_Strict):
    ethnicity: EthnicitySpec


class AllOf(_Strict):
    all_of: Annotated[list[Criterion], Field(min_length=1)]


class AnyOf(_Strict):
    any_of: Annotated[list[Criterion], Field(min_length=1)]


class Not(_Strict):
    not_: Criterion = Field(alias="not")


CRITERION_TYPES: dict[str, type[_Strict]] = {
    "has_event": HasEvent,
    "no_event": NoEvent,
    "count_events": CountEvents,
    "latest_event_in": LatestEventIn,
    "latest_value_at_most": LatestValueAtMost,
    "age": Age,
    "on_register": OnRegister,
    "in_cohort": InCohort,
    "deprivation": Deprivation,
    "ethnicity": Ethnicity,
    "all_of": AllOf,
    "any_of": AnyOf,
    "not": Not,
}
_TYPE_OF_CLASS = {cls: tag for tag, cls in CRITERION_TYPES.items()}


def _criterion_tag(value: Any) -> str | None:
    # The criterion's type is its one key; several keys are reported as an unknown type.
    if isinstance(value, BaseModel):
        return _TYPE_OF_CLASS.get(type(value))
    if isinstance(value, Mapping):
        return "+".join(str(k) for k in value) if value else None
    return None


Criterion = Annotated[
    Union[tuple(Annotated[cls, Tag(tag)] for tag, cls in CRITERION_TYPES.items())],  # type: ignore[valid-type]
    Discriminator(_criterion_tag),
]

for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


def criterion_type(criterion: BaseModel) -> str:
    """Return a criterion's type name (its YAML key)."""
    return _TYPE_OF_CLASS[type(criterion)]


def children(criterion: BaseModel) -> list[tuple[str, BaseModel]]:
    """Return the (relative path, child) pairs of a combining criterion; [] for a leaf."""
    if isinstance(criterion, AllOf):
        return [(f"all_of[{i}]", c) for i, c in enumerate(criterion.all_of)]
    if isinstance(criterion, AnyOf):
        return [(f"any_of[{i}]", c) for i, c in enumerate(criterion.any_of)]
    if isinstance(criterion, Not):
        return [("not", criterion.not_)]
    return []


def walk(criterion: BaseModel, path: str) -> Iterator[tuple[str, BaseModel]]:
    """Yield (path, criterion) for a criterion and everything nested in it, depth first."""
    yield path, criterion
    for sub, child in children(criterion):
        yield from walk(child, f"{path}.{sub}")


def codelist_refs(criterion: BaseModel, path: str) -> Iterator[tuple[str, str]]:
    """Yield (field path, codelist id) for every codelist a single criterion names."""
    tag = criterion_type(criterion)
    spec = getattr(criterion, tag if tag != "not" else "not_")
    for field in ("codelists", "matches", "systolic", "diastolic"):
        ids = getattr(spec, field, None)
        if isinstance(ids, list):
            for i, codelist_id in enumerate(ids):
                yield f"{path}.{tag}.{field}[{i}]", codelist_id


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


class ReportingFocus(_Strict):
    """Groups a cohort is reported with a focus on (a breakdown note, not a filter)."""

    breakdown: Breakdown
    groups: Annotated[list[str], Field(min_length=1)]
    note: str = ""


class Cohort(_Definition):
    """A population an ICS chooses to focus on, stated as one criterion."""

    criteria: Criterion
    reporting_focus: ReportingFocus | None = None


class UnavailableComponent(_Strict):
    """A component of the published definition that no shared codelist covers."""

    component: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=1)]


class Indicator(_Definition):
    """A numerator/denominator measure; the numerator is evaluated within the denominator."""

    clinical_area: Annotated[str, Field(min_length=1)]
    denominator: Criterion
    numerator: Criterion
    direction: Literal["higher_is_better", "lower_is_better"]
    target: Annotated[float, Field(ge=0, le=1)] | None = None
    breakdowns: list[Breakdown] = Field(default_factory=list)
    unavailable_components: list[UnavailableComponent] = Field(default_factory=list)


KINDS: dict[str, tuple[str, type[_Definition]]] = {
    "registers": ("register", Register),
    "cohorts": ("cohort", Cohort),
    "indicators": ("indicator", Indicator),
}


@dataclass(frozen=True)
class Definitions:
    """Every validated definition, by id, with the file each came from."""

    registers: dict[str, Register]
    cohorts: dict[str, Cohort]
    indicators: dict[str, Indicator]
    files: dict[tuple[str, str], str]

    def criteria(self) -> Iterator[tuple[str, str, str, BaseModel]]:
        """Yield (kind, id, path, criterion) for every criterion in every definition."""
        for cohort in self.cohorts.values():
            for path, c in walk(cohort.criteria, "criteria"):
                yield "cohort", cohort.id, path, c
        for ind in self.indicators.values():
            for part in ("denominator", "numerator"):
                for path, c in walk(getattr(ind, part), part):
                    yield "indicator", ind.id, path, c

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
            k, i = key
            roots = []
            if k == "cohort":
                roots = [self.cohorts[i].criteria]
            elif k == "indicator":
                roots = [self.indicators[i].denominator, self.indicators[i].numerator]
            for root in roots:
                for _, c in walk(root, ""):
                    if isinstance(c, OnRegister):
                        stack.append(("register", c.on_register))
                    elif isinstance(c, InCohort):
                        stack.append(("cohort", c.in_cohort))
        return sorted(seen)

    def definition_hash(self, kind: str, definition_id: str) -> str:
        """Return the sha256 of the canonical text of a definition and everything it uses.

        The canonical text is sorted-key JSON of the validated definitions, so whitespace,
        comments and key order in the YAML do not change it, while any change to the rule —
        including a register or cohort it refers to — does.
        """
        store = {"register": self.registers, "cohort": self.cohorts, "indicator": self.indicators}
        payload = [
            {"kind": k, "definition": store[k][i].model_dump(mode="json", by_alias=True, exclude_none=True)}
            for k, i in self.dependencies(kind, definition_id)
        ]
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
        expected = ", ".join(CRITERION_TYPES)
        found = f"unknown criterion type '{tag}'" if tag else "a criterion must be a mapping with one key"
        return path, f"{found}; expected exactly one of: {expected}"
    if kind == "extra_forbidden":
        name = path.rsplit(".", 1)[-1]
        return path, f"unknown key '{name}'"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return path, message


def _parse_file(file_name: str, raw: Any, problems: list[str]) -> tuple[str, list[_Definition]]:
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in KINDS:
        problems.append(
            f"{file_name}: the file must hold exactly one top-level key, one of "
            f"{', '.join(KINDS)}, with a list of definitions"
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
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as error:
            for detail in error.errors():
                path, message = _format_error(detail)
                problems.append(f"{file_name}: {label}: field '{path}': {message}")
    return section, parsed


def parse_definitions(
    texts: Mapping[str, str], known_codelists: frozenset[str] | set[str] | None = None
) -> Definitions:
    """Parse and validate definition files given as text.

    Arguments:
        texts: file name -> YAML text (the names appear in error messages).
        known_codelists: the codelist ids a definition may name; default: the `codelists`
            of the reference manifest.

    Returns:
        The validated Definitions.

    Raises:
        DefinitionError listing every problem as `<file>: <kind> '<id>': field '<path>': ...`.
    """
    if known_codelists is None:
        from reference_data.loader import load_manifest

        known_codelists = frozenset(load_manifest().codelists)
    problems: list[str] = []
    store: dict[str, dict[str, _Definition]] = {section: {} for section in KINDS}
    files: dict[tuple[str, str], str] = {}
    for file_name, text in texts.items():
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problems.append(f"{file_name}: not valid YAML: {error}")
            continue
        section, parsed = _parse_file(file_name, raw, problems)
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
    defs = Definitions(store["registers"], store["cohorts"], store["indicators"], files)  # type: ignore[arg-type]
    problems.extend(_check_references(defs, frozenset(known_codelists)))
    if problems:
        raise DefinitionError(problems)
    return defs


def _check_references(defs: Definitions, known_codelists: frozenset[str]) -> list[str]:
    """Return problems with names that point nowhere: codelists, registers, cohorts, cycles."""
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
        if isinstance(criterion, OnRegister) and criterion.on_register not in defs.registers:
            problems.append(f"{where(kind, definition_id, path + '.on_register')}: unknown register '{criterion.on_register}'")
        if isinstance(criterion, InCohort) and criterion.in_cohort not in defs.cohorts:
            problems.append(f"{where(kind, definition_id, path + '.in_cohort')}: unknown cohort '{criterion.in_cohort}'")
    if not problems:
        problems.extend(_check_cycles(defs, where))
    return problems


def _check_cycles(defs: Definitions, where: Any) -> list[str]:
    # A cohort defined (directly or not) in terms of itself has no meaning; find such loops.
    uses = {
        cohort.id: [c.in_cohort for _, c in walk(cohort.criteria, "") if isinstance(c, InCohort)]
        for cohort in defs.cohorts.values()
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
    texts = {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.yaml"))}
    if not texts:
        raise DefinitionError([f"{folder}: no *.yaml definition files found"])
    return parse_definitions(texts, known_codelists)
