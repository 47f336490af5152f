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

A criterion is a mapping with exactly one key naming its type:

    has_event / no_event      {codelists, window}
    count_events              {codelists, window, at_least}
    latest_event_in           {codelists, matches, window}: the latest code among `codelists`
                              is in `matches` (e.g. current smoker = latest of LSMOK/EXSMOK is LSMOK)
    latest_value_at_most      {systolic, diastolic, within_months, thresholds} (blood pressure)
    latest_value              {codelists, window, at_least and/or at_most}: the lowest value on
                              the latest date with a value (e.g. QRISK score >= 10)
    has_record                {feed, window, where: {column: [values]}}: a row of an optional
                              linked feed (see schemas.FEEDS)
    age                       {min, max} (whole years at the reference date, both inclusive)
    on_register / in_cohort   a register / cohort id
    deprivation               {imd_deciles: [1, 2]} (national deciles, the run's IMD vintage)
    ethnicity                 {categories: [M, N]} and/or {broad: [...]}
    all_of / any_of           a list of criteria
    not                       one criterion

A cohort or indicator that the shared codelists or feeds cannot support says so with
`not_available_reason` instead of inventing codes; it is catalogued and never evaluated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field as dataclass_field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import polars as pl
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
WINDOW_KEYS = ("within_months", "within_years", "ever", "campaign_from")
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
    campaign_from: Annotated[str, Field(pattern=r"^[0-9]{2}-[0-9]{2}$")] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Window:
        given = [k for k in WINDOW_KEYS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of within_months, within_years, ever: true, campaign_from: MM-DD "
                f"(found {given or 'none'})"
            )
        if self.campaign_from is not None:
            month, day = (int(part) for part in self.campaign_from.split("-"))
            try:
                date(2001, month, day)  # a non-leap year: 29 February is no campaign start
            except ValueError:
                raise ValueError(f"campaign_from '{self.campaign_from}' is not a day of the year (MM-DD)") from None
        return self

    def campaign_start(self, reference_date: date) -> date | None:
        """Return the first day of the campaign current at R (None unless `campaign_from`).

        Examples:
            >>> Window(campaign_from="09-01").campaign_start(date(2026, 2, 28))
            datetime.date(2025, 9, 1)
            >>> Window(campaign_from="09-01").campaign_start(date(2026, 9, 30))
            datetime.date(2026, 9, 1)
        """
        if self.campaign_from is None:
            return None
        month, day = (int(part) for part in self.campaign_from.split("-"))
        start = date(reference_date.year, month, day)
        return start if start <= reference_date else date(reference_date.year - 1, month, day)

    def describe(self) -> str:
        """Return the window in words.

        Examples:
            >>> Window(within_years=5).describe()
            'within 5 years'
        """
        if self.within_months is not None:
            return f"within {self.within_months} months"
        if self.within_years is not None:
            return f"within {self.within_years} years"
        if self.campaign_from is not None:
            return f"since the latest {self.campaign_from} (campaign)"
        return "ever"

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


class LatestValueRangeSpec(Window):
    """The latest value of a coded observation inside a window against limits (both inclusive)."""

    codelists: CodelistIds
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _limits(self) -> LatestValueRangeSpec:
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most or both")
        return self


FeedValue = Union[bool, int, float, str]


class RecordSpec(Window):
    """A row of an optional linked feed dated inside the window, matching every `where` column."""

    feed: Identifier
    where: dict[Identifier, Annotated[list[FeedValue], Field(min_length=1)]] = Field(default_factory=dict)


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


class LatestValue(_Strict):
    latest_value: LatestValueRangeSpec


class HasRecord(_Strict):
    has_record: RecordSpec


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
    "latest_value": LatestValue,
    "has_record": HasRecord,
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


def describe_criterion(criterion: BaseModel) -> str:
    """Return one criterion (and everything nested in it) in words, for explain and attrition.

    Examples:
        >>> describe_criterion(Age(age=AgeSpec(min=40)))
        'aged 40 or over'
        >>> describe_criterion(HasEvent.model_validate({"has_event": {"codelists": ["bp_cod"], "within_years": 5}}))
        'a bp_cod code within 5 years'
    """
    if isinstance(criterion, (HasEvent, NoEvent)):
        spec = criterion.has_event if isinstance(criterion, HasEvent) else criterion.no_event
        prefix = "a" if isinstance(criterion, HasEvent) else "no"
        return f"{prefix} {' / '.join(spec.codelists)} code {spec.describe()}"
    if isinstance(criterion, CountEvents):
        spec = criterion.count_events
        return f"at least {spec.at_least} {' / '.join(spec.codelists)} codes {spec.describe()}"
    if isinstance(criterion, LatestEventIn):
        spec = criterion.latest_event_in
        return f"the latest {' / '.join(spec.codelists)} code ({spec.describe()}) is {' / '.join(spec.matches)}"
    if isinstance(criterion, LatestValueAtMost):
        spec = criterion.latest_value_at_most
        bands = []
        for t in spec.thresholds:
            ages = "all ages"
            if t.age_from is not None and t.age_below is not None:
                ages = f"aged {t.age_from}-{t.age_below - 1}"
            elif t.age_from is not None:
                ages = f"aged {t.age_from}+"
            elif t.age_below is not None:
                ages = f"under {t.age_below}"
            bands.append(f"{t.systolic:g}/{t.diastolic:g} {ages}")
        return (
            f"latest {' / '.join(spec.systolic)} and {' / '.join(spec.diastolic)} readings within "
            f"{spec.within_months} months at or below {', '.join(bands)}"
        )
    if isinstance(criterion, LatestValue):
        spec = criterion.latest_value
        limits = []
        if spec.at_least is not None:
            limits.append(f">= {spec.at_least:g}")
        if spec.at_most is not None:
            limits.append(f"<= {spec.at_most:g}")
        return f"latest {' / '.join(spec.codelists)} value {spec.describe()} {' and '.join(limits)}"
    if isinstance(criterion, HasRecord):
        spec = criterion.has_record
        where = "".join(f" with {column} in {values}" for column, values in spec.where.items())
        return f"a {spec.feed} record {spec.describe()}{where}"
    if isinstance(criterion, Age):
        low, high = criterion.age.min, criterion.age.max
        if low is not None and high is not None:
            return f"aged {low} to {high}"
        return f"aged {low} or over" if low is not None else f"aged {high} or under"
    if isinstance(criterion, OnRegister):
        return f"on register {criterion.on_register}"
    if isinstance(criterion, InCohort):
        return f"in cohort {criterion.in_cohort}"
    if isinstance(criterion, Deprivation):
        return f"national IMD decile in {criterion.deprivation.imd_deciles}"
    if isinstance(criterion, Ethnicity):
        parts = []
        if criterion.ethnicity.categories:
            parts.append(f"NHS ethnic category in {list(criterion.ethnicity.categories)}")
        if criterion.ethnicity.broad:
            parts.append(f"broad ethnic group in {list(criterion.ethnicity.broad)}")
        return " or ".join(parts)
    if isinstance(criterion, AllOf):
        return "all of (" + "; ".join(describe_criterion(c) for c in criterion.all_of) + ")"
    if isinstance(criterion, AnyOf):
        return "any of (" + "; ".join(describe_criterion(c) for c in criterion.any_of) + ")"
    if isinstance(criterion, Not):
        return "not " + describe_criterion(criterion.not_)
    raise TypeError(f"no description for criterion {type(criterion).__name__}")


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


NotAvailableReason = Annotated[str, Field(min_length=1)] | None


class Cohort(_Definition):
    """A population an ICS chooses to focus on, stated as one criterion (or why it cannot be)."""

    criteria: Criterion | None = None
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
    denominator: Criterion | None = None
    numerator: Criterion | None = None
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

    def roots(self, kind: str, definition_id: str) -> list[tuple[str, BaseModel]]:
        """Return the (field, criterion) roots of a cohort or indicator (none for a register)."""
        if kind == "cohort":
            parts = [("criteria", self.cohorts[definition_id].criteria)]
        elif kind == "indicator":
            ind = self.indicators[definition_id]
            parts = [("denominator", ind.denominator), ("numerator", ind.numerator)]
        else:
            parts = []
        return [(name, c) for name, c in parts if c is not None]

    def criteria(self) -> Iterator[tuple[str, str, str, BaseModel]]:
        """Yield (kind, id, path, criterion) for every criterion in every definition."""
        for kind in ("cohort", "indicator"):
            for definition_id in self.store(kind):
                for part, root in self.roots(kind, definition_id):
                    for path, c in walk(root, part):
                        yield kind, definition_id, path, c

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
                    if isinstance(c, OnRegister):
                        stack.append(("register", c.on_register))
                    elif isinstance(c, InCohort):
                        stack.append(("cohort", c.in_cohort))
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
            c.has_record.feed
            for k, i in self.dependencies(kind, definition_id)
            for _, root in self.roots(k, i)
            for _, c in walk(root, "")
            if isinstance(c, HasRecord)
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
            raw = yaml.safe_load(text)
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


def _check_feed(spec: RecordSpec) -> list[tuple[str, str]]:
    """Return (field, problem) pairs for a has_record criterion: unknown feed, column or value type."""
    from pipelines.segmentation.schemas import FEEDS

    if spec.feed not in FEEDS:
        return [("feed", f"unknown feed '{spec.feed}'; expected one of {sorted(FEEDS)}")]
    table = FEEDS[spec.feed].table
    problems = []
    for column, values in spec.where.items():
        if column not in table.names or column == "patient_id":
            problems.append((f"where.{column}", f"feed '{spec.feed}' has no such column; it has {table.names[1:]}"))
            continue
        dtype = table.column(column).dtype
        expected = bool if dtype == pl.Boolean else int if dtype.is_integer() else str if dtype == pl.String else float
        if any(type(v) is not expected for v in values):
            problems.append((f"where.{column}", f"values must be {expected.__name__} (the column is {dtype})"))
    return problems


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
        if isinstance(criterion, OnRegister) and criterion.on_register not in defs.registers:
            problems.append(f"{where(kind, definition_id, path + '.on_register')}: unknown register '{criterion.on_register}'")
        if isinstance(criterion, InCohort) and criterion.in_cohort not in defs.cohorts:
            problems.append(f"{where(kind, definition_id, path + '.in_cohort')}: unknown cohort '{criterion.in_cohort}'")
        if isinstance(criterion, HasRecord):
            for field_path, problem in _check_feed(criterion.has_record):
                problems.append(f"{where(kind, definition_id, f'{path}.has_record.{field_path}')}: {problem}")
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
        cohort_id: [c.in_cohort for _, root in defs.roots("cohort", cohort_id) for _, c in walk(root, "") if isinstance(c, InCohort)]
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
