"""The base of every criterion type, the specs criteria share, and the criterion registry.

A criterion type is one class (STYLE habit 10): its pydantic schema, how it compiles into
the month's patient model, its plain-English description and its `explain` evidence live
together in one file of this package. Subclassing `Criterion` with a `key` registers the
class under that YAML key; `pipelines.segmentation.criteria` imports every module of the
package, so a new file is picked up without touching any other.

What a criterion may ask of the engine (`pipelines.segmentation.patient_model.ModelBuilder`)
and of an explanation (`pipelines.segmentation.explain.PatientEvidence`) is listed in the
two Protocols below: the whole contract between a criterion and the rest of the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, ClassVar, Literal, Protocol, Sequence, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
WINDOW_KEYS = ("within_months", "within_years", "ever", "campaign_from")
FeedValue = Union[bool, int, float, str]


def _as_list(value: Any) -> Any:
    # A single codelist id may be written without brackets: `codelists: mh_cod`.
    return [value] if isinstance(value, str) else value


CodelistIds = Annotated[list[Identifier], BeforeValidator(_as_list), Field(min_length=1)]


class Strict(BaseModel):
    """A frozen model that rejects unknown keys, so a misspelt key is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Window(Strict):
    """A look-back window ending on the reference date R: exactly one of the four keys.

    `within_months: N` means event_date in [R - N months + 1 day, R]; `within_years: N` is
    12N months; `ever: true` is every date up to R; `campaign_from: "MM-DD"` starts on the
    latest such day on or before R. Events after R are ignored everywhere.
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
        """Return the window length in months, or None for `ever` and campaigns."""
        if self.within_months is not None:
            return self.within_months
        if self.within_years is not None:
            return 12 * self.within_years
        return None


class AgeSpec(Strict):
    """Age limits in whole years at R, both inclusive."""

    min: Annotated[int, Field(ge=0)] | None = None
    max: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> AgeSpec:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def describe(self) -> str:
        """Return the limits in words.

        Examples:
            >>> AgeSpec(min=40).describe(), AgeSpec(min=0, max=17).describe()
            ('aged 40 or over', 'aged 0 to 17')
        """
        if self.min is not None and self.max is not None:
            return f"aged {self.min} to {self.max}"
        return f"aged {self.min} or over" if self.min is not None else f"aged {self.max} or under"

    def sql(self, age: str) -> str:
        """Return a never-null SQL test of the age column `age` (unknown age fails)."""
        parts = []
        if self.min is not None:
            parts.append(f"{age} >= {self.min}")
        if self.max is not None:
            parts.append(f"{age} <= {self.max}")
        return f"coalesce({' and '.join(parts)}, false)"


def codes_text(codelist_ids: Sequence[str]) -> str:
    """Return codelist ids as they read in a rule, e.g. 'bp_cod / systolic_blood_pressure_qof'."""
    return " / ".join(codelist_ids)


# --- what a criterion may ask of the engine and of an explanation ------------------------


class ModelContext(Protocol):
    """The engine's side of the contract (implemented by `patient_model.ModelBuilder`).

    Each event method registers one per-patient aggregation of the month's single pass over
    the events (deduplicated by what it computes) and returns the SQL name of its column in
    the patient model; `aggregate` adds a criterion's own aggregate to that same pass;
    `criterion` compiles a nested criterion; `derived` registers a per-patient table of the
    criterion's own making, over the same coded events, for what one aggregate per patient
    cannot express (e.g. a per-day reading pair), joined into the same model.
    """

    reference_date: date

    def window_start(self, window: Window | int | None) -> date | None: ...
    def count(self, codelist_ids: Sequence[str], window: Window | int | None = None) -> str: ...
    def latest_date(self, codelist_ids: Sequence[str], window: Window | int | None = None,
                    exclude: Sequence[str] = ()) -> str: ...
    def latest_value(self, codelist_ids: Sequence[str], window: Window | int | None = None) -> str: ...
    def aggregate(self, label: str, codelist_ids: Sequence[str], window: Window | int | None, expression: str, *,
                  fill: str = "", needs_value: bool = False) -> str: ...
    def feed_any(self, feed: str, window: Window, where: dict[str, list[Any]]) -> str: ...
    def attribute(self, name: str) -> str: ...
    def register(self, register_id: str) -> str: ...
    def cohort(self, cohort_id: str) -> str: ...
    def criterion(self, criterion: Criterion) -> str: ...
    def mask(self, codelist_ids: Sequence[str], window: Window | int | None = None, needs_value: bool = False) -> str: ...
    def derived(self, key: str, columns: Sequence[str], select: str) -> dict[str, str]: ...


class EvidenceContext(Protocol):
    """An explanation's side of the contract (implemented by `explain.PatientEvidence`)."""

    reference_date: date
    person: dict[str, Any]

    def window_start(self, window: Window | int | None) -> date | None: ...
    def latest(self, codelist_ids: Sequence[str], start: date | None, what: str) -> str: ...
    def latest_value(self, codelist_ids: Sequence[str], start: date | None) -> str: ...
    def latest_codes(self, codelist_ids: Sequence[str], start: date | None) -> str: ...
    def n_rows(self, codelist_ids: Sequence[str], start: date | None) -> int: ...
    def rows(self, codelist_ids: Sequence[str], start: date | None, needs_value: bool = False): ...
    def feed_rows(self, feed: str, start: date | None, where: dict[str, list[Any]]): ...
    def register(self, register_id: str) -> str: ...
    def terms(self, codelist_ids: Sequence[str]) -> dict[str, str]: ...


# --- the base class and the registry ------------------------------------------------------

REGISTRY: dict[str, type[Criterion]] = {}


class CriterionType:
    """Annotation for "any registered criterion": a tagged union built from the registry.

    The schema is made each time pydantic builds a model that holds a criterion, from the
    types registered then; registering a type rebuilds those models
    (`criteria.rebuild`), so a type added later is accepted everywhere, nested too.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pipelines.segmentation.criteria import criterion_union

        return handler.generate_schema(criterion_union())


class Criterion(Strict):
    """A rule that holds or not for each patient at R: a mapping with exactly one key, `key`.

    Subclasses declare `key` (the YAML key) and one field of that name (or alias) holding
    their spec, and implement `describe`, `compile` and, when they read data, `evidence`.
    The other methods have defaults that suit a leaf; combinations override `children`.
    """

    key: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Called once pydantic has finished the class (fields known): register it by key.
        super().__pydantic_init_subclass__(**kwargs)
        if cls.key:
            from pipelines.segmentation.criteria import register_type

            register_type(cls)

    @property
    def spec(self) -> Any:
        """Return the criterion's one field (its spec)."""
        return getattr(self, next(iter(type(self).model_fields)))

    # -- structure

    def children(self) -> list[tuple[str, Criterion]]:
        """Return (relative path, child) pairs of a combination; [] for a leaf."""
        return []

    def steps(self, path: str) -> list[tuple[str, Criterion]]:
        """Return the rules attrition counts one by one: the criterion itself, unless it splits."""
        return [(path, self)]

    def codelists(self) -> Iterator[tuple[str, str]]:
        """Yield (field, codelist id) for every codelist this criterion (not its children) names.

        The default reads the spec's `codelists` and `matches` fields; a type that names
        codelists under other fields overrides it.
        """
        for field in ("codelists", "matches"):
            ids = getattr(self.spec, field, None)
            if isinstance(ids, list):
                for i, codelist_id in enumerate(ids):
                    yield f"{field}[{i}]", codelist_id

    def uses(self) -> list[tuple[str, str]]:
        """Return the (kind, id) of the registers and cohorts this criterion refers to."""
        return []

    def feeds(self) -> list[str]:
        """Return the optional linked feeds this criterion reads."""
        return []

    def check(self, registers: set[str], cohorts: set[str]) -> list[tuple[str, str]]:
        """Return (field, problem) for names that point nowhere (beyond codelists, checked centrally)."""
        return []

    # -- meaning

    def describe(self) -> str:
        """Return the rule in words, for the catalogue, attrition and explain."""
        raise NotImplementedError(f"criterion type '{self.key}' has no description")

    def compile(self, model: ModelContext) -> str:
        """Return a never-null SQL boolean over the patient model's columns."""
        raise NotImplementedError(f"criterion type '{self.key}' has no compilation")

    def evidence(self, patient: EvidenceContext) -> str:
        """Return what decided the rule for one patient (codes, dates, values), for explain."""
        return ""

    def label(self) -> str:
        """Return the rule's heading in explain: its description, or its type for a combination."""
        return self.describe() if not self.children() else self.key.replace("_", " ")
