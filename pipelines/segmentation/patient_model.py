"""The month's patient model: one row per patient, every fact the definitions use, made in one pass.

ehrQL's engines compile a whole dataset definition into one query; so does this module.
Every register, cohort and indicator is compiled (through each criterion class's
`compile`, see `pipelines/segmentation/criteria/`) into

- per-patient **aggregations** of the month's events, each a column of the model:
  counts of coded rows in a window, the latest date of a code set, the lowest value on the
  latest date with a reading, the deciding code on the latest diagnosis date, the latest
  ethnicity code, and per-feed "has a matching record" flags. All of them come from ONE
  `GROUP BY patient_id` over the events joined once to a small lookup of the codes any rule
  reads (one Boolean column per distinct code set), so the events are read once a month;
- **attributes** of the patient (age at R, sex, practice, both IMD vintages, geography,
  ethnicity);
- **flags**: `register__<id>`, `cohort__<id>`, `indicator__<id>__denominator` and
  `indicator__<id>__numerator` (the numerator only inside the denominator), each a
  never-null SQL Boolean over the columns above.

The query runs in DuckDB: in the warehouse over `staging.*` (nothing is copied into
Python), or over polars frames registered in an in-memory connection (the spec tests,
`explain`, `diff-definitions`). Registers, cohorts, indicators, attrition and `explain`
are selections from the model (`selections` below, `lineage.attrition`, `explain`).

Column names derive from what a column computes (code sets, window length), never from
the order rules were compiled in, so the same definitions give the same model layout in
every month and every process.

Shared semantics (DOMAIN.md sections 3-4):

- R, the reference date, is the last day of the reporting month; `reporting_month` is the
  first day of that month (the partition key of the staged tables).
- "within N months" = event_date in [R - N months + 1 day, R]; R - N months clamps to the
  month end, so R = 2024-02-29, 12 months starts on 2023-03-01. A campaign window
  (`campaign_from: "09-01"`) starts on the latest such day on or before R.
- Events after R are ignored everywhere: a backfilled extract gives the same answer.
- Age is whole years at R from date_of_birth (falling back to a staged `age`).
- A patient with unknown age, decile or ethnicity fails a criterion on it; `not` then
  includes them. Missing data is reported by the breakdowns, not guessed here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import polars as pl

from pipelines.segmentation.criteria.base import Criterion, Window
from pipelines.segmentation.sql import literal, quote

__all__ = ["ModelBuilder", "ModelSession", "FrameModel", "Sources", "flag_column", "literal", "quote"]

IMD_DECILE_COLUMNS = {"IMD2019": "imd2019_decile", "IMD2025": "imd2025_decile"}
# "Latest, then lowest" aggregates pack the date and a rank into one BIGINT and take its
# minimum: days before a far date (so the latest date is the smallest number) times 2^24
# plus the rank of the code (or of the ethnicity mapping). An integer state per patient
# instead of a struct of strings keeps a million patients' aggregation in memory (a struct
# min of codes made DuckDB spill, ~20x slower).
_FAR = "DATE '2400-01-01'"
_SHIFT = 16777216  # 2^24 > the number of distinct codes any month's rules read
# Ethnicity packs a validity tier above the date: 2^44 > (days to the far date, < 2^19) x 2^24.
_TIER_SHIFT = 17592186044416
# NHS ethnic categories that carry no ethnicity: Z "not stated" and 99 "not known".
UNSTATED_ETHNIC_CATEGORIES = ("Z", "99")


def _packed(rank: str) -> str:
    return f"(({_FAR} - event_date)::BIGINT * {_SHIFT} + {rank})"

# The attribute columns of the model (and of `population.patient_attributes`, a selection).
ATTRIBUTE_COLUMNS = (
    "reporting_month", "patient_id", "practice_code", "sex", "age",
    "imd2019_decile", "imd2025_decile", "imd_vintage", "imd_decile", "imd_quintile", "is_core20",
    "ethnic_category", "ethnicity_16", "ethnicity_broad", "sicbl_code", "icb_code",
)


def check_reference_date(reference_date: date) -> date:
    """Return the reporting month (first day) of R, raising unless R is a month's last day."""
    if (reference_date + timedelta(days=1)).day != 1:
        raise ValueError(
            f"reference date {reference_date} is not the last day of a month; registers and "
            "windows are evaluated as at the end of the reporting month"
        )
    return reference_date.replace(day=1)


def window_start(reference_date: date, months: int) -> date:
    """Return the first day of the N-month window ending on R: R - N months + 1 day.

    Examples:
        >>> window_start(date(2025, 3, 31), 12)
        datetime.date(2024, 4, 1)
        >>> window_start(date(2024, 2, 29), 12)
        datetime.date(2023, 3, 1)
    """
    shifted = pl.select(pl.lit(reference_date).dt.offset_by(f"-{months}mo")).item()
    return shifted + timedelta(days=1)


def _window_tag(window: Window | int | None) -> str:
    # Named by length, not by start date, so a column keeps its name from month to month.
    if window is None:
        return "ever"
    if isinstance(window, int):
        return f"{window}m"
    if window.months is not None:
        return f"{window.months}m"
    if window.campaign_from is not None:
        return "since_" + window.campaign_from.replace("-", "_")
    return "ever"


def _name(*parts: str) -> str:
    name = "__".join(p for p in parts if p)
    if len(name) <= 96:
        return name
    return name[:80] + "__" + hashlib.sha256(name.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Mask:
    """Events a rule reads: a code set, a window start and whether a value is needed."""

    code_set: int
    start: date | None
    needs_value: bool

    def sql(self) -> str:
        parts = [f"_cs{self.code_set}"]
        if self.start is not None:
            parts.append(f"event_date >= {literal(self.start)}")
        if self.needs_value:
            parts.append("value is not null and not isnan(value)")  # a NaN is no reading
        return " and ".join(parts)


@dataclass(frozen=True)
class Aggregation:
    """One per-patient aggregation of the events: a column of the model."""

    name: str
    kind: str  # count | latest_date | latest_code | latest_value | custom
    mask: Mask
    expression: str = ""  # a custom aggregate over the masked rows (kind "custom")
    fill: str = ""  # what a patient without such rows gets (kind "custom"); "" leaves null

    def sql(self) -> str:
        # The built-in kinds aggregate a CASE (null outside the mask) rather than use FILTER:
        # DuckDB evaluates forty-odd FILTER clauses as as many selective updates of every
        # chunk, and the same aggregates over CASE expressions take about 30% less time
        # (measured on a 250,000-patient slice, identical columns). A criterion's own
        # aggregate expression keeps FILTER: it cannot be rewritten without parsing it.
        mask = self.mask.sql()
        if self.kind == "custom":
            return f"{self.expression} filter (where {mask})"
        if self.kind == "count":
            return f"count(case when {mask} then 1 end)"
        if self.kind == "latest_date":
            return f"max(case when {mask} then event_date end)"
        if self.kind == "latest_code":
            # The lowest code on the latest date (codes are ranked in sorted order), so the
            # answer never depends on row order.
            return f"min(case when {mask} then {_packed('_rank')} end)"
        # QOF: the latest reading is the lowest value on the latest date with a reading.
        return f"min(case when {mask} then {{'nd': {_FAR} - event_date, 'v': value}} end)"

    def output(self) -> str:
        column = f"agg.{quote(self.name)}"
        if self.kind == "custom" and self.fill:
            return f"coalesce({column}, {self.fill})"
        if self.kind == "count":
            return f"coalesce({column}, 0)::INTEGER"
        if self.kind == "latest_code":
            return f"{quote('_code_' + self.name)}.code"
        if self.kind == "latest_value":
            return f"{column}.v"
        return column


@dataclass
class Sources:
    """Where the model reads the month's data: SQL relations (tables, views or registered frames).

    `patients` must hold patient_id and date_of_birth and/or age; sex, practice_code and
    reporting_month when present are carried into the model. `events`: patient_id, code,
    event_date, value. `deprivation`: PATIENT_DEPRIVATION rows. `ethnicity`: a derived
    ethnicity per patient (patient_id, ethnic_category, ethnicity_16, ethnicity_broad), or
    else `ethnicity_codes` (code -> category, see `cohorts.build_ethnicity_codes`) to derive
    it in the same pass. `feeds`: feed -> staged rows, None when the month lacks the feed.
    A relation with a `reporting_month` column is read for `month` only. In the warehouse
    the events are keyed (`staging.event_rows`: patient_key, code_key) and `event_codes`
    names the month's code dictionary; the patients then carry `patient_key`. `keyed` names
    the patient-level relations (deprivation, ethnicity, feeds) whose month's rows carry
    the patients' `patient_key` too, written in key order (`ModelSession.model_sqls` finds
    them): a slice of patients reads them by a key range, as it reads the events.
    """

    patients: str
    events: str | None = None
    event_codes: str | None = None  # set when `events` is keyed (patient_key, code_key): the code dictionary
    deprivation: str | None = None
    ethnicity: str | None = None
    ethnicity_codes: str | None = None
    feeds: Mapping[str, str | None] = field(default_factory=dict)
    month: date | None = None
    columns: Mapping[str, Sequence[str]] = field(default_factory=dict)  # relation -> its columns
    keyed: frozenset[str] = frozenset()


class ModelBuilder:
    """Compile definitions into the patient model's columns and its one query.

    Criterion classes call the public methods below (the `criteria.base.ModelContext`
    protocol); each returns the SQL name of a model column (an aggregation or attribute)
    or a SQL expression over them.

    Arguments:
        defs: validated definitions (`definitions.Definitions`).
        codelists: codelist id -> codes (`cohorts.load_codelists`).
        reference_date: R, the last day of the reporting month.
        imd_vintage: the national decile `deprivation` criteria and Core20 use.
    """

    def __init__(self, defs, codelists: Mapping[str, frozenset[str]], reference_date: date, imd_vintage: str = "IMD2019"):
        if imd_vintage not in IMD_DECILE_COLUMNS:
            raise ValueError(f"imd_vintage must be one of {sorted(IMD_DECILE_COLUMNS)}, got {imd_vintage!r}")
        self.defs = defs
        self.codelists = codelists
        self.reference_date = reference_date
        self.month = check_reference_date(reference_date)
        self.imd_vintage = imd_vintage
        self.code_sets: dict[frozenset[str], int] = {}
        self.aggregations: dict[tuple, Aggregation] = {}
        self.feed_aggregations: dict[str, dict[str, str]] = {}  # feed -> column -> SQL aggregate
        self.derived_tables: dict[str, tuple[dict[str, str], str]] = {}  # key -> (model name -> own column, select)
        self.attributes_used: set[str] = set()
        self.flags: dict[str, str] = {}  # model column -> SQL Boolean
        self._registers: dict[str, str] = {}
        self._cohorts: dict[str, str] = {}
        self.planned: dict[str, list[str]] = {"register": [], "cohort": [], "indicator": []}
        self.sealed = False  # set once the model query is made: later rules may only reuse its columns
        self.events_until: date | None = reference_date  # events after it are ignored (None: keep all)

    # -- codes and windows

    def codes(self, codelist_ids: Sequence[str]) -> frozenset[str]:
        """Return the union of the codes of the codelists (each must have been loaded)."""
        missing = [c for c in codelist_ids if c not in self.codelists]
        if missing:
            raise KeyError(f"codelist(s) {missing} were not loaded; pass them in `codelists`")
        return frozenset().union(*(self.codelists[c] for c in codelist_ids))

    def window_start(self, window: Window | int | None) -> date | None:
        """Return the first day of a window ending on R (None: every date up to R)."""
        if window is None:
            return None
        if isinstance(window, int):
            return window_start(self.reference_date, window)
        if window.months is not None:
            return window_start(self.reference_date, window.months)
        return window.campaign_start(self.reference_date)

    def _code_set(self, codes: frozenset[str]) -> int:
        if codes not in self.code_sets:
            self.code_sets[codes] = len(self.code_sets)
        return self.code_sets[codes]

    def _aggregate(self, kind: str, codelist_ids: Sequence[str], window: Window | int | None,
                   exclude: Sequence[str] = (), needs_value: bool = False, expression: str = "", fill: str = "",
                   label: str = "") -> str:
        codes = self.codes(codelist_ids) - (self.codes(exclude) if exclude else frozenset())
        mask = Mask(self._code_set(codes), self.window_start(window), needs_value)
        key = (kind, mask, expression, fill)
        if key not in self.aggregations and self.sealed:
            # A selection may only read what the model holds: compile before building the model.
            raise RuntimeError(f"{kind} of {list(codelist_ids)} is not a column of the model built already")
        if key not in self.aggregations:
            codes_label = "+".join(codelist_ids) + ("-" + "+".join(exclude) if exclude else "")
            name = _name(label or kind, codes_label, _window_tag(window))
            if kind == "custom":  # two custom aggregates may share a label: the expression tells them apart
                name = _name(name, hashlib.sha256(f"{expression}|{fill}".encode()).hexdigest()[:8])
            self.aggregations[key] = Aggregation(name, kind, mask, expression, fill)
        return quote(self.aggregations[key].name)

    # -- the ModelContext protocol

    def mask(self, codelist_ids: Sequence[str], window: Window | int | None = None, needs_value: bool = False) -> str:
        """Return a SQL test, over the month's coded events, of rows in the codelists and window."""
        return Mask(self._code_set(self.codes(codelist_ids)), self.window_start(window), needs_value).sql()

    def count(self, codelist_ids: Sequence[str], window: Window | int | None = None) -> str:
        """Return the column counting each patient's coded rows of the codelists in the window (0 when none)."""
        return self._aggregate("count", codelist_ids, window)

    def latest_date(self, codelist_ids: Sequence[str], window: Window | int | None = None,
                    exclude: Sequence[str] = ()) -> str:
        """Return the column of each patient's latest date of a code in the codelists (null when none)."""
        return self._aggregate("latest_date", codelist_ids, window, exclude)

    def latest_code(self, codelist_ids: Sequence[str], window: Window | int | None = None) -> str:
        """Return the column of the lowest code on each patient's latest date of the codelists."""
        return self._aggregate("latest_code", codelist_ids, window)

    def latest_value(self, codelist_ids: Sequence[str], window: Window | int | None = None) -> str:
        """Return the column of the lowest value on the latest date with a reading of the codelists."""
        return self._aggregate("latest_value", codelist_ids, window, needs_value=True)

    def aggregate(self, label: str, codelist_ids: Sequence[str], window: Window | int | None, expression: str, *,
                  fill: str = "", needs_value: bool = False) -> str:
        """Return the column of a criterion's own aggregate over the patient's rows of the codelists in the window.

        The aggregate joins the month's single GROUP BY over the events (no second pass).

        Arguments:
            label: a short name for the column (e.g. 'any_value_at_least').
            codelist_ids, window: which rows it aggregates.
            expression: a DuckDB aggregate over those rows' `event_date`, `code` and `value`,
                e.g. 'bool_or(value >= 48)'.
            fill: the SQL value a patient without such rows gets (e.g. 'false'); "" leaves null.
            needs_value: only rows with a value (not null, not NaN).
        """
        return self._aggregate("custom", codelist_ids, window, needs_value=needs_value, expression=expression,
                               fill=fill, label=label)

    def feed_any(self, feed: str, window: Window, where: dict[str, list[Any]]) -> str:
        """Return the column saying whether the patient has a row of `feed` in the window matching `where`."""
        from pipelines.segmentation.schemas import FEEDS

        date_column = FEEDS[feed].date_column
        start = self.window_start(window)
        parts = [f"{quote(date_column)} >= {literal(start)}"] if start is not None else []
        for column, values in sorted(where.items()):
            parts.append(f"coalesce({quote(column)} in ({', '.join(literal(v) for v in values)}), false)")
        condition = " and ".join(parts) or "true"
        columns = self.feed_aggregations.setdefault(feed, {})
        for name, sql in columns.items():
            if sql == f"bool_or({condition})":
                return quote(name)
        where_tag = "_".join(f"{k}" for k in sorted(where))
        name = _name("feed", feed, _window_tag(window), where_tag, str(len(columns)) if columns else "")
        columns[name] = f"bool_or({condition})"
        return quote(name)

    def attribute(self, name: str) -> str:
        """Return the model column of a patient attribute (age, imd_decile, ethnic_category, ethnicity_broad)."""
        self.attributes_used.add(name)
        return quote(name)

    def derived(self, key: str, columns: Sequence[str], select: str) -> dict[str, str]:
        """Register a per-patient table a criterion builds itself; return its columns' model names.

        Arguments:
            key: names the table (the same key returns the same columns).
            columns: the columns `select` produces beside `patient`.
            select: a SELECT over `{events}` (the month's coded events: `patient`, `code`,
                `event_date`, `value` and one `_cs<n>` column per code set; see `mask`)
                returning one row per `patient`.
        """
        if key not in self.derived_tables:
            self.derived_tables[key] = ({_name("derived", key, c): c for c in columns}, select)
        return {own: quote(name) for name, own in self.derived_tables[key][0].items()}

    def criterion(self, criterion: Criterion) -> str:
        """Return a never-null SQL Boolean for one criterion (compiled by its own class)."""
        return criterion.compile(self)

    def register(self, register_id: str) -> str:
        """Return whether each patient is on a register at R (the QOF rule)."""
        if register_id not in self._registers:
            definition = self.defs.registers[register_id]
            diagnosed = self.latest_date(definition.diagnosis)
            on = f"{diagnosed} is not null"
            if definition.resolved:
                resolved = self.latest_date(definition.resolved)
                # Strictly later: a resolved code on the same date as the latest diagnosis
                # takes the patient off (QOF: the diagnosis must be *after* the resolution).
                on += f" and ({resolved} is null or {diagnosed} > {resolved})"
            if definition.also is not None:  # a second way onto the register (e.g. lithium for QOF MH)
                on = f"coalesce({on}, false) or {self.criterion(definition.also)}"
            if definition.age is not None:
                on += f" and {definition.age.sql(self.attribute('age'))}"
            self._registers[register_id] = f"coalesce({on}, false)"
        return self._registers[register_id]

    def cohort(self, cohort_id: str) -> str:
        """Return whether each patient is in a cohort at R."""
        if cohort_id not in self._cohorts:
            self._cohorts[cohort_id] = self.criterion(self.defs.cohorts[cohort_id].criteria)
        return self._cohorts[cohort_id]

    # -- planning the model

    def plan(self, kinds: Sequence[str] = ("register", "cohort", "indicator"), *,
             feeds_present: Sequence[str] | None = None, ids: Mapping[str, Sequence[str]] | None = None) -> ModelBuilder:
        """Add the flag columns of every available definition of `kinds` (or the `ids` asked for)."""
        for kind in kinds:
            chosen = select_available(self.defs, kind, (ids or {}).get(kind), feeds_present)
            for definition_id in chosen:
                if definition_id in self.planned[kind]:
                    continue
                self.planned[kind].append(definition_id)
                if kind == "register":
                    self.flags[flag_column("register", definition_id)] = self.register(definition_id)
                    self.latest_code(self.defs.registers[definition_id].diagnosis)
                elif kind == "cohort":
                    self.flags[flag_column("cohort", definition_id)] = self.cohort(definition_id)
                else:
                    definition = self.defs.indicators[definition_id]
                    denominator = self.criterion(definition.denominator)
                    self.flags[flag_column("indicator", definition_id, "denominator")] = denominator
                    # The numerator only counts inside the denominator.
                    self.flags[flag_column("indicator", definition_id, "numerator")] = (
                        f"({denominator} and {self.criterion(definition.numerator)})")
        return self

    def code_table(self, ethnicity_codes: pl.DataFrame | None = None) -> pl.DataFrame:
        """Return the lookup the events join once: code, one `_cs<n>` Boolean per code set
        (and the ethnicity mapping, when ethnicity is derived in the same pass)."""
        codes = sorted(set().union(*self.code_sets) if self.code_sets else set())
        frame = pl.DataFrame({"code": codes}, schema={"code": pl.String})
        frame = frame.with_columns(
            pl.col("code").is_in(sorted(code_set)).alias(f"_cs{i}") for code_set, i in self.code_sets.items()
        )
        if ethnicity_codes is not None:
            unstated = pl.col("ethnic_category").is_in(list(UNSTATED_ETHNIC_CATEGORIES))
            mapping = ethnicity_codes.select("code", "ethnic_category", "ethnicity_16", "ethnicity_broad").with_columns(
                # Ranked so that the smallest wins a tie on the latest date: a stated category
                # before "not stated" (Z) before "not known" (99), then the lowest letter, then the labels.
                pl.struct(unstated.alias("_unstated"), (pl.col("ethnic_category") == "99").alias("_not_known"),
                          "ethnic_category", "ethnicity_16", "ethnicity_broad", "code")
                .rank("dense").cast(pl.Int64).alias("_eth_rank"),
                # 0: a valid (stated) ethnicity; 1: not stated / not known, read only when no valid code exists.
                unstated.cast(pl.Int64).alias("_eth_tier"))
            frame = frame.join(mapping, on="code", how="full", coalesce=True).with_columns(
                pl.col(f"_cs{i}").fill_null(False) for i in self.code_sets.values()
            )
        # Codes ranked in sorted order: the "lowest code" of a tie is the smallest rank.
        return frame.sort("code").with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_rank"))

    def sql(self, sources: Sources, code_table: str = "_model_codes", *, extra: Sequence[str] = (),
            keys: tuple[int, int] | None = None) -> str:
        """Return the model query: one row per patient, attributes, aggregations and flags.

        Arguments:
            sources: the month's relations.
            code_table: the registered `code_table()` relation.
            extra: more `expression AS name` items for the final select (e.g. explain's nodes).
            keys: only the patients whose `patient_key` is in this closed range (keyed
                events only): the model of a big month is built a slice of patients at a
                time (`ModelSession.model_sqls`), each slice's aggregation small enough to
                stay in memory; the slices' rows together are the whole model.
        """
        self.sealed = True
        month, r = sources.month, literal(self.reference_date)
        if keys is not None and sources.event_codes is None:
            raise ValueError("a slice of patients (keys) needs keyed events (staging.event_rows)")
        # Patient-level relations (deprivation, ethnicity, feeds): a slice keeps only its patients'
        # rows, or each slice's join would read the whole month (measured at 5,000,000 patients:
        # 0.5-1.2 s of CPU a slice for the deprivation alone, 20 slices). Those written with the
        # patients' keys in key order are read by the slice's key range, which DuckDB answers
        # from the row groups' zone maps; the others by `patient_id in` the slice's patients, a
        # semi-join over the whole month's rows in every slice (0.08 s a slice at 5M for the
        # deprivation, 0.08 s for the four feeds).
        by_id = ({sources.deprivation, sources.ethnicity, *sources.feeds.values()} - {None}) if keys is not None else set()
        sliced = ({sources.patients, sources.events} | (by_id & sources.keyed)) if keys is not None else set()

        def scoped(relation: str) -> str:
            has_month = "reporting_month" in sources.columns.get(relation, ())
            conditions = [f"reporting_month = {literal(month)}"] if (month and has_month) else []
            if relation in sliced:
                conditions.append(f"patient_key between {int(keys[0])} and {int(keys[1])}")
            elif relation in by_id:
                conditions.append(f"patient_id in (select patient_id from {scoped(sources.patients)})")
            return f"(select * from {relation} where {' and '.join(conditions)})" if conditions else relation

        patient_columns = set(sources.columns.get(sources.patients, ()))
        derive_ethnicity = sources.ethnicity is None and sources.ethnicity_codes is not None
        ctes: list[str] = []
        needs_events = bool(self.aggregations or self.derived_tables or derive_ethnicity)
        if needs_events:
            if sources.events is None:
                raise ValueError("the definitions read coded events but no events were given")
            lookup_columns = ", ".join(
                ["c.code", "c._rank"] + [f"c._cs{i}" for i in self.code_sets.values()]
                + (["c._eth_rank", "c._eth_tier"] if derive_ethnicity else [])
            )
            until = f" where e.event_date <= {literal(self.events_until)}" if self.events_until else ""
            if sources.event_codes is not None:  # keyed events: the code dictionary joins the lookup once
                ctes.append(
                    f"coded as (select e.patient_key as patient, e.event_date, e.value, {lookup_columns} "
                    f"from {scoped(sources.events)} e join (select k.code_key, l.* from {scoped(sources.event_codes)} k "
                    f"join {code_table} l on l.code = k.code) c on c.code_key = e.code_key{until})"
                )
            else:
                ctes.append(
                    f"coded as (select e.patient_id as patient, e.event_date, e.value, {lookup_columns} "
                    f"from {scoped(sources.events)} e join {code_table} c on c.code = e.code{until})"
                )
            items = [f"{a.sql()} as {quote(a.name)}" for a in self.aggregations.values()]
            if derive_ethnicity:
                # The latest VALID ethnicity code on or before R wins (DOMAIN.md section 3): a later
                # "not stated" (Z) or "not known" (99) code never overrides an earlier stated one,
                # and decides only when no stated code exists (the tier sits above the date in
                # the packed number). On a tie a stated category beats Z, Z beats 99, then the
                # lowest category letter: never row order. Null for a code with no ethnicity
                # (min skips it: no FILTER clause, which DuckDB evaluates more slowly).
                items.append(f"min(_eth_tier * {_TIER_SHIFT} + {_packed('_eth_rank')}) as _ethnicity")
            if items:
                ctes.append(f"agg as (select patient, {', '.join(items)} from coded group by patient)")
        for key, (columns, select) in sorted(self.derived_tables.items()):
            body = select.format(events="coded")
            ctes.append(f"{quote('d_' + key)} as ({body})")
        for feed_name, columns in sorted(self.feed_aggregations.items()):
            from pipelines.segmentation.schemas import FEEDS

            relation = sources.feeds.get(feed_name)
            if relation is None:
                raise ValueError(
                    f"a definition reads the '{feed_name}' feed but none was given; leave out definitions whose "
                    "feed is absent (see Definitions.availability)"
                )
            date_column = quote(FEEDS[feed_name].date_column)
            items = ", ".join(f"{sql} as {quote(name)}" for name, sql in columns.items())
            ctes.append(f"{quote('f_' + feed_name)} as (select patient_id, {items} from {scoped(relation)} "
                        f"where {date_column} <= {r} group by patient_id)")

        # -- attributes
        age_parts = []
        if "date_of_birth" in patient_columns:
            md = self.reference_date.month * 100 + self.reference_date.day
            age_parts.append(f"({self.reference_date.year} - year(p.date_of_birth) - "
                             f"(month(p.date_of_birth) * 100 + day(p.date_of_birth) > {md})::INTEGER)")
        if "age" in patient_columns:
            age_parts.append("p.age::INTEGER")
        age = f"coalesce({', '.join(age_parts)})::INTEGER" if age_parts else "NULL::INTEGER"
        select = [f"{literal(self.month)} as reporting_month", "p.patient_id",
                  "p.practice_code" if "practice_code" in patient_columns else "NULL::VARCHAR as practice_code",
                  "p.sex" if "sex" in patient_columns else "NULL::VARCHAR as sex",
                  f"{age} as age"]
        joins = []
        if sources.deprivation is not None:
            joins.append(f"left join {scoped(sources.deprivation)} d on d.patient_id = p.patient_id")
            decile = f"d.{IMD_DECILE_COLUMNS[self.imd_vintage]}"
            prefix = IMD_DECILE_COLUMNS[self.imd_vintage].replace("_decile", "")
            dep_columns = set(sources.columns.get(sources.deprivation, ()))
            select += ["d.imd2019_decile::TINYINT as imd2019_decile", "d.imd2025_decile::TINYINT as imd2025_decile",
                       f"{literal(self.imd_vintage)} as imd_vintage", f"{decile}::TINYINT as imd_decile",
                       f"((({decile})::SMALLINT + 1) // 2)::TINYINT as imd_quintile",
                       f"case when {decile} is null then null else {decile} in (1, 2) end as is_core20",
                       f"d.{prefix}_method as imd_method" if f"{prefix}_method" in dep_columns else "NULL::VARCHAR as imd_method",
                       *(f"d.{c}" if c in dep_columns else f"NULL::VARCHAR as {c}" for c in ("sicbl_code", "icb_code"))]
        else:
            if "imd_decile" in self.attributes_used:
                raise ValueError("a definition uses `deprivation` but no deprivation frame was given")
            select += ["NULL::TINYINT as imd2019_decile", "NULL::TINYINT as imd2025_decile",
                       f"{literal(self.imd_vintage)} as imd_vintage", "NULL::TINYINT as imd_decile",
                       "NULL::TINYINT as imd_quintile", "NULL::BOOLEAN as is_core20", "NULL::VARCHAR as imd_method",
                       "NULL::VARCHAR as sicbl_code", "NULL::VARCHAR as icb_code"]
        if sources.ethnicity is not None:
            joins.append(f"left join {scoped(sources.ethnicity)} eth on eth.patient_id = p.patient_id")
            eth_columns = set(sources.columns.get(sources.ethnicity, ()))
            select += [f"eth.{c}" if c in eth_columns else f"NULL::VARCHAR as {c}"
                       for c in ("ethnic_category", "ethnicity_16", "ethnicity_broad")]
        elif derive_ethnicity:
            joins.append(f"left join {code_table} _eth on _eth._eth_rank = agg._ethnicity % {_SHIFT}")
            select += ["_eth.ethnic_category", "_eth.ethnicity_16", "_eth.ethnicity_broad"]
        else:
            if self.attributes_used & {"ethnic_category", "ethnicity_broad"}:
                raise ValueError("a definition uses `ethnicity` but no ethnicity frame was given (see derive_ethnicity)")
            select += ["NULL::VARCHAR as ethnic_category", "NULL::VARCHAR as ethnicity_16", "NULL::VARCHAR as ethnicity_broad"]
        patient_ref = "p.patient_key" if sources.event_codes is not None else "p.patient_id"
        if any(c.startswith("agg ") for c in ctes):
            joins.insert(0, f"left join agg on agg.patient = {patient_ref}")
            for a in self.aggregations.values():
                if a.kind == "latest_code":
                    alias = quote("_code_" + a.name)
                    joins.append(f"left join {code_table} {alias} on {alias}._rank = agg.{quote(a.name)} % {_SHIFT}")
            select += [f"{a.output()} as {quote(a.name)}" for a in self.aggregations.values()]
        for key, (columns, _) in sorted(self.derived_tables.items()):
            alias = quote("d_" + key)
            joins.append(f"left join {alias} on {alias}.patient = {patient_ref}")
            select += [f"{alias}.{quote(own)} as {quote(name)}" for name, own in columns.items()]
        for feed_name, columns in sorted(self.feed_aggregations.items()):
            alias = quote("f_" + feed_name)
            joins.append(f"left join {alias} on {alias}.patient_id = p.patient_id")
            select += [f"coalesce({alias}.{quote(n)}, false) as {quote(n)}" for n in columns]
        base = f"select {', '.join(select)} from {scoped(sources.patients)} p {' '.join(joins)}"
        ctes.append(f"base as ({base})")
        finals = ["base.*"] + [f"{sql} as {quote(name)}" for name, sql in self.flags.items()] + list(extra)
        return "with " + ",\n".join(ctes) + f"\nselect {', '.join(finals)} from base"


def flag_column(kind: str, definition_id: str, part: str = "") -> str:
    """Return the model column of a definition's flag, e.g. 'indicator__bp_case_finding__numerator'."""
    return "__".join(p for p in (kind, definition_id, part) if p)


def select_available(defs, kind: str, ids: Sequence[str] | None, feeds_present: Sequence[str] | None) -> list[str]:
    """Return the definitions of `kind` to evaluate: those asked for, or every available one.

    One asked for by id that cannot be evaluated (no codelist, its feed absent) is an error
    naming why; by default those are left out (they are catalogued as not available).
    """
    store = defs.store(kind)
    if ids is None:
        chosen = sorted(store)
    else:
        unknown = [i for i in ids if i not in store]
        if unknown:
            raise KeyError(f"unknown {kind} id(s) {unknown}")
        chosen = list(ids)
    reasons = {i: defs.availability(kind, i, feeds_present) for i in chosen}
    if ids is not None:
        blocked = {i: r for i, r in reasons.items() if r}
        if blocked:
            raise ValueError(f"{kind}(s) not available: " + "; ".join(f"{i}: {r}" for i, r in blocked.items()))
    return [i for i in chosen if not reasons[i]]


# --- selections: the long tables are views of the model -----------------------------------


def _union(parts: list[str], empty: str) -> str:
    return " union all ".join(parts) if parts else f"{empty} limit 0"


def register_membership_sql(builder: ModelBuilder, model: str) -> str:
    """Return the register members (reporting_month, patient_id, register_id, register_version,
    diagnosis_date, diagnosis_code) selected from the model relation `model`."""
    parts = []
    for register_id in builder.planned["register"]:
        definition = builder.defs.registers[register_id]
        parts.append(
            f"select reporting_month, patient_id, {literal(register_id)} as register_id, "
            f"{definition.version}::INTEGER as register_version, {builder.latest_date(definition.diagnosis)} as diagnosis_date, "
            f"{builder.latest_code(definition.diagnosis)} as diagnosis_code from {model} "
            f"where {quote(flag_column('register', register_id))}"
        )
    return _union(parts, "select NULL::DATE as reporting_month, NULL::VARCHAR as patient_id, NULL::VARCHAR as register_id, "
                         "NULL::INTEGER as register_version, NULL::DATE as diagnosis_date, NULL::VARCHAR as diagnosis_code")


def cohort_membership_sql(builder: ModelBuilder, model: str) -> str:
    """Return the cohort members (reporting_month, patient_id, cohort_id, cohort_version) selected from the model."""
    parts = [
        f"select reporting_month, patient_id, {literal(cohort_id)} as cohort_id, "
        f"{builder.defs.cohorts[cohort_id].version}::INTEGER as cohort_version from {model} "
        f"where {quote(flag_column('cohort', cohort_id))}"
        for cohort_id in builder.planned["cohort"]
    ]
    return _union(parts, "select NULL::DATE as reporting_month, NULL::VARCHAR as patient_id, NULL::VARCHAR as cohort_id, "
                         "NULL::INTEGER as cohort_version")


def patient_indicators_sql(builder: ModelBuilder, model: str) -> str:
    """Return one row per denominator patient per indicator (reporting_month, patient_id, indicator_id,
    indicator_version, is_numerator) selected from the model."""
    parts = [
        f"select reporting_month, patient_id, {literal(indicator_id)} as indicator_id, "
        f"{builder.defs.indicators[indicator_id].version}::INTEGER as indicator_version, "
        f"{quote(flag_column('indicator', indicator_id, 'numerator'))} as is_numerator from {model} "
        f"where {quote(flag_column('indicator', indicator_id, 'denominator'))}"
        for indicator_id in builder.planned["indicator"]
    ]
    return _union(parts, "select NULL::DATE as reporting_month, NULL::VARCHAR as patient_id, NULL::VARCHAR as indicator_id, "
                         "NULL::INTEGER as indicator_version, NULL::BOOLEAN as is_numerator")


def patient_attributes_sql(model: str) -> str:
    """Return the breakdown attributes of every patient (`ATTRIBUTE_COLUMNS`) selected from the model."""
    return f"select {', '.join(quote(c) for c in ATTRIBUTE_COLUMNS)} from {model}"


# --- running the model over polars frames (tests, explain, diff-definitions) ---------------

_FRAME_TYPES = {"patient_id": pl.String, "code": pl.String, "event_date": pl.Date, "value": pl.Float64,
                "date_of_birth": pl.Date, "reporting_month": pl.Date, "practice_code": pl.String, "sex": pl.String}


def _frame(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    frame = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    # All-null columns can arrive typed Null; give the columns the model reads their types.
    return frame.with_columns(
        pl.col(name).cast(dtype) for name, dtype in _FRAME_TYPES.items() if name in frame.columns and frame.schema[name] == pl.Null
    )


SLICE_ENV = "CORE20_MODEL_SLICE_PATIENTS"
# One DuckDB row group (122,880 rows, DuckDB's default `row_group_size`). The model's GROUP BY
# hands its rows to the insert on every thread; a thread holding a row group or more writes it
# to the file at once and keeps its remainder as a row group of its own, a few hundred rows.
# Slices of 250,000 left 13 such small groups in the 1M month's model, and the first
# checkpoint merged them, compressing the whole 158-column table a second time (1.8 s; the
# tables read from it, 1-2 s more; 12-19 s at 5M, where it fell in the gap table's commit). A
# slice no larger than one row group gives no thread a full group of its own, so DuckDB packs
# the slices' rows into full groups as it goes, and the checkpoint has nothing to merge: at
# 1M, 0.8 s of checkpoints in the month instead of 3.6 s, for about 1.2 s more aggregation
# (9 slices' planning instead of 4; README "Performance").
DEFAULT_SLICE_PATIENTS = 122_880


def patient_slices(low: int | None, high: int | None, slice_patients: int | None = None) -> list[tuple[int, int]]:
    """Return the closed ranges of patient keys, in order, a month of keys `low`..`high` is cut into.

    Staging writes each slice's events together (`extract.stage_events`) and the model
    aggregates a slice at a time (`ModelSession.model_sqls`): both cut the same ranges, so a
    slice of the model reads exactly the rows written for it.

    Arguments:
        low, high: the month's least and greatest patient key (None: no patients, no slice).
        slice_patients: patients per slice (default $CORE20_MODEL_SLICE_PATIENTS or 122,880).

    Examples:
        >>> patient_slices(1, 10, 4)
        [(1, 4), (5, 8), (9, 10)]
        >>> patient_slices(1, 3, 4)
        [(1, 3)]
    """
    size = int(slice_patients or os.environ.get(SLICE_ENV) or DEFAULT_SLICE_PATIENTS)
    if size < 1:
        raise ValueError(f"{SLICE_ENV} must be a positive number of patients; got {size}")
    if low is None or high is None:
        return []
    return [(start, min(start + size - 1, high)) for start in range(low, high + 1, size)]


class ModelSession:
    """A DuckDB connection holding the month's sources, in which patient models are built.

    `from_frames` registers polars frames in a private in-memory connection (spec tests,
    explain, the frame APIs); `in_warehouse` reads the staged tables of a month where they
    are (nothing is copied into Python). Several models (e.g. old and new definitions in
    `diff-definitions`) can be built side by side in one session.
    """

    def __init__(self, con, sources: Sources, ethnicity_codes: pl.DataFrame | None = None):
        self.con = con
        self.sources = sources
        self.ethnicity_codes = ethnicity_codes

    @classmethod
    def from_frames(cls, month: date, patients, events=None, deprivation=None, ethnicity=None,
                    feeds: Mapping[str, Any] | None = None, ethnicity_codes: pl.DataFrame | None = None) -> ModelSession:
        """Return a session over polars frames (a frame without columns stands for "not given")."""
        import duckdb

        con = duckdb.connect()
        named = {"_patients": patients, "_events": events, "_deprivation": deprivation, "_ethnicity": ethnicity}
        named |= {f"_feed_{name}": frame for name, frame in (feeds or {}).items()}
        columns: dict[str, list[str]] = {}
        for name, frame in named.items():
            data = _frame(frame) if frame is not None else None
            if data is not None and data.width:
                con.register(name, data.to_arrow())
                columns[name] = data.columns
            elif name not in ("_patients", "_events") and not name.startswith("_feed_"):
                named[name] = None
        sources = Sources(
            patients="_patients",
            events="_events" if events is not None else None,
            deprivation="_deprivation" if named["_deprivation"] is not None else None,
            ethnicity="_ethnicity" if named["_ethnicity"] is not None else None,
            feeds={name: (f"_feed_{name}" if frame is not None else None) for name, frame in (feeds or {}).items()},
            month=month,
            columns=columns,
        )
        return cls(con, sources, ethnicity_codes)

    @classmethod
    def in_warehouse(cls, con, month: date, feeds_present: Sequence[str], ethnicity_codes: pl.DataFrame | None = None,
                     *, tables: Mapping[str, str] | None = None) -> ModelSession:
        """Return a session over a month's staged tables in an open warehouse connection.

        Arguments:
            con: a warehouse connection (read-only is enough: models are temporary tables).
            month: the reporting month (first day).
            feeds_present: the optional feeds the month's extract supplied.
            ethnicity_codes: the ethnicity mapping, to derive ethnicity in the model's pass.
            tables: overrides of the relations read (patients, events, deprivation).
        """
        from pipelines.segmentation.schemas import FEEDS

        chosen = {"patients": "staging.patients", "events": "staging.event_rows", "event_codes": "staging.event_codes",
                  "deprivation": "population.patient_deprivation", **(tables or {})}
        feeds = {name: (f"staging.{quote(name)}" if name in feeds_present else None) for name in FEEDS}
        relations = [chosen["patients"], chosen["events"], chosen["event_codes"], chosen["deprivation"],
                     *[f for f in feeds.values() if f]]
        columns = {relation: [row[0] for row in con.execute(f"describe select * from {relation}").fetchall()]
                   for relation in relations}
        sources = Sources(patients=chosen["patients"], events=chosen["events"], event_codes=chosen["event_codes"],
                          deprivation=chosen["deprivation"], feeds=feeds, month=month, columns=columns)
        return cls(con, sources, ethnicity_codes)

    def query(self, sql: str) -> pl.DataFrame:
        """Return the result of a query in the session as a polars frame."""
        return pl.from_arrow(self.con.sql(sql).to_arrow_table())

    def model_sql(self, builder: ModelBuilder, extra: Sequence[str] = (), codes: str = "_model_codes",
                  keys: tuple[int, int] | None = None, keyed: frozenset[str] = frozenset()) -> str:
        """Register the builder's code lookup as `codes` and return its model query (of a slice of `keys`,
        reading the `keyed` relations by that key range)."""
        derive = self.sources.ethnicity is None and self.ethnicity_codes is not None
        self.con.register(codes, builder.code_table(self.ethnicity_codes if derive else None).to_arrow())
        sources = Sources(**{**self.sources.__dict__, "ethnicity_codes": codes if derive else None, "keyed": keyed})
        return builder.sql(sources, codes, extra=extra, keys=keys)

    def keyed_relations(self, say: Callable[[str], None] | None = None) -> frozenset[str]:
        """Return the patient-level relations (deprivation, ethnicity, feeds) whose month's rows all carry the staged patients' `patient_key`.

        The month's deprivation and feed tables are written with the staged patients' keys
        (`assets/population.py`, `feeds.stage_feed`). A table written before that, or a month
        of it written before, has no key or null keys: a slice must not read such a month by
        a key range, which would find none of its rows, so it reads it by patient id. Nor
        may it read stale keys: staging re-materialised alone (a changed extract, in the
        Dagster UI) numbers the patients again, and a deprivation or feed table written
        before then keeps the old numbers, so a key range would silently drop or miss
        patients whose key moved. A relation is keyed only if every one of the month's rows
        has its patient's current key: one anti-join of all the relations' rows against
        the patients, counted by relation (1M patients, deprivation and four feeds: 71 ms;
        a query per relation, each reading the patients again, 129 ms).

        Arguments:
            say: called with one line naming each relation whose keys are stale (never a
                patient's value): its rows were written before the staged patients, so the
                analyst should re-materialise it; the model reads it by patient id meanwhile.
        """
        month = literal(self.sources.month)
        candidates = sorted(
            relation for relation in {self.sources.deprivation, self.sources.ethnicity, *self.sources.feeds.values()} - {None}
            if {"patient_key", "reporting_month"} <= set(self.sources.columns.get(relation, ())))
        if not candidates:
            return frozenset()
        rows = " union all ".join(f"select {i} as relation, patient_id, patient_key from {relation} "
                                  f"where reporting_month = {month}" for i, relation in enumerate(candidates))
        # Rows whose pair is not a staged patient's: a null key (a month older than the keys) or a stale one.
        unmatched = {candidates[i]: n_stale for i, n_stale in self.con.execute(
            f"select relation, count(r.patient_key) from ({rows}) r "
            f"anti join (select patient_id, patient_key from {self.sources.patients} where reporting_month = {month}) p "
            f"on p.patient_id = r.patient_id and p.patient_key = r.patient_key group by relation").fetchall()}
        for relation, n_stale in sorted(unmatched.items()):
            if n_stale and say is not None:
                say(f"{relation}: {n_stale:,} of the {self.sources.month:%Y-%m} rows carry a patient_key that is not their "
                    f"staged patient's ({self.sources.patients} was staged again after they were written); read by "
                    f"patient id instead. Materialise {relation} again for this month to bring it up to date.")
        return frozenset(candidates) - set(unmatched)

    def model_sqls(self, builder: ModelBuilder, slice_patients: int | None = None,
                   say: Callable[[str], None] | None = None) -> list[str]:
        """Return the model as queries over slices of at most `slice_patients` patients, in key order.

        One GROUP BY over a million patients' events holds every patient's aggregates at
        once and spills; slices of consecutive patient keys each aggregate only their own
        rows — which lie together, as staging writes the events a slice at a time
        (`patient_slices`), so a slice reads just its part of the table — and keep the
        memory a slice needs, not a month. The slices' rows together are exactly the one-query model (each patient's
        row reads only that patient's events). Unkeyed sources give one query.

        Arguments:
            builder: the planned model.
            slice_patients: patients per slice (default $CORE20_MODEL_SLICE_PATIENTS or 122,880).
            say: told of each relation whose stored keys are stale (`keyed_relations`).
        """
        if self.sources.event_codes is None:
            patient_slices(None, None, slice_patients)  # (checks the size)
            return [self.model_sql(builder)]
        low, high = self.con.execute(
            f"select min(patient_key), max(patient_key) from {self.sources.patients} "
            f"where reporting_month = {literal(self.sources.month)}").fetchall()[0]
        slices = patient_slices(low, high, slice_patients)
        if len(slices) < 2:
            return [self.model_sql(builder)]
        keyed = self.keyed_relations(say)
        return [self.model_sql(builder, keys=keys, keyed=keyed) for keys in slices]

    def materialise(self, builder: ModelBuilder, table: str = "_model", extra: Sequence[str] = ()) -> str:
        """Build the model as the temporary table `table`; return its name."""
        self.con.execute(f"create or replace temp table {table} as {self.model_sql(builder, extra, f'{table}_codes')}").fetchall()
        return table


class FrameModel:
    """One patient model over polars frames (see `ModelSession.from_frames`)."""

    def __init__(self, builder: ModelBuilder, patients, events=None, deprivation=None, ethnicity=None,
                 feeds: Mapping[str, Any] | None = None, ethnicity_codes: pl.DataFrame | None = None):
        self.builder = builder
        self.session = ModelSession.from_frames(builder.month, patients, events, deprivation, ethnicity, feeds, ethnicity_codes)

    def query(self, sql: str) -> pl.DataFrame:
        """Return the result of a query over the frames and the model."""
        return self.session.query(sql)

    def model_sql(self, extra: Sequence[str] = ()) -> str:
        """Return the model query (its code lookup registered)."""
        return self.session.model_sql(self.builder, extra)

    def materialise(self, extra: Sequence[str] = ()) -> str:
        """Build the model as the temporary table `_model`; return its name."""
        return self.session.materialise(self.builder, "_model", extra)
