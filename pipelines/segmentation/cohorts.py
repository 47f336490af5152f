"""Registers, cohorts and indicators: evaluated as selections from the month's patient model.

The engine is `pipelines.segmentation.patient_model`: every definition compiles (through its
criterion classes) into columns of one per-patient table made in one pass over the events.
This module keeps the analyst-facing entry points — `evaluate_registers`,
`evaluate_cohorts`, `evaluate_indicators` over polars frames (the spec tests and
`diff-definitions`), the codelist and ethnicity loaders, and the indicator and cohort
catalogues — and each evaluation is a selection from that model, never a second engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import polars as pl

from pipelines.segmentation.definitions import Definitions
from pipelines.segmentation.patient_model import (
    FrameModel,
    ModelBuilder,
    check_reference_date,
    cohort_membership_sql,
    patient_indicators_sql,
    register_membership_sql,
    window_start,
)
from pipelines.segmentation.schemas import INDICATOR_CATALOGUE

__all__ = ["check_reference_date", "window_start", "evaluate_registers", "evaluate_cohorts", "evaluate_indicators",
           "load_codelists", "derive_ethnicity", "build_ethnicity_codes", "indicator_catalogue", "cohort_catalogue"]

IMD_DECILE_COLUMNS = {"IMD2019": "imd2019_decile", "IMD2025": "imd2025_decile"}

# The 2001-census 6-group classification of the OpenSAFELY ethnicity codelist (`grouping_6`)
# mapped to the broad groups we report. Group 5 is "Chinese or Other Ethnic Groups": in the
# 2001 classification (and NHS ethnic category R) Chinese sits under "Other ethnic groups",
# not Asian, so it is reported as "Other ethnic group" here; ethnicity_16 keeps Chinese
# separate for anyone who needs the 2011-census grouping.
ETHNICITY_BROAD_BY_GROUP_6 = {
    "1": "White",
    "2": "Mixed",
    "3": "Asian or Asian British",
    "4": "Black or Black British",
    "5": "Other ethnic group",
}
NOT_STATED = "Not stated"  # a Z code was recorded: the patient was asked and did not say (or refused)
NOT_KNOWN = "Not known"  # "Ethnic group not recorded" (PRIMIS ETH_NORECORD) was coded: NHS category 99
UNKNOWN = "Unknown"  # no ethnicity code at all: never asked or never coded
# PRIMIS clusters of the not-stated file that mean "not known" rather than "not stated".
NOT_KNOWN_CLUSTERS = ("ETH_NORECORD",)


# --- codelists and ethnicity -------------------------------------------------------------


def load_codelists(
    definitions: Definitions, reference_dir: str | Path | None = None
) -> dict[str, frozenset[str]]:
    """Read the pinned codelists the definitions refer to, and only those.

    Arguments:
        definitions: validated definitions.
        reference_dir: the shared reference directory (see `reference_data.loader`).

    Returns:
        codelist id -> frozenset of codes. A codelist the definitions folder pins itself
        (its `codelists` section) is read from the folder and checked against that pin;
        every other one from the reference directory against the manifest. Either way a
        file that differs from its pin stops the run with a message naming it.
    """
    return {
        codelist_id: frozenset(read_definition_codelist(definitions, codelist_id, reference_dir)["code"].to_list())
        for codelist_id in sorted(definitions.codelist_ids())
    }


def codelists_from_warehouse(con, definitions: Definitions, codelist_ids=None) -> dict[str, frozenset[str]]:
    """Return the codelists the definitions name, the shared ones read from `reference.codelists`.

    The reference job loaded every pinned codelist with its sha256; a table whose sha256
    differs from today's pin is stale and stops the run (the reference job rebuilds it). A
    codelist the definitions folder pins itself is read from the folder and checked there.

    Arguments:
        con: a warehouse connection.
        definitions: validated definitions.
        codelist_ids: the codelists wanted (default every one the definitions name).
    """
    from reference_data.loader import ReferenceDataError, load_manifest

    wanted = sorted(codelist_ids if codelist_ids is not None else definitions.codelist_ids())
    local = [c for c in wanted if c in definitions.local_codelists]
    shared = [c for c in wanted if c not in definitions.local_codelists]
    out = {c: frozenset(read_definition_codelist(definitions, c)["code"].to_list()) for c in local}
    if shared:
        manifest = load_manifest()
        placeholders = ", ".join("?" for _ in shared)
        rows = pl.from_arrow(con.sql(
            f"SELECT codelist_id, any_value(sha256) AS sha256, list(code) AS codes FROM reference.codelists "
            f"WHERE codelist_id IN ({placeholders}) GROUP BY codelist_id", params=shared).to_arrow_table())
        found = {r["codelist_id"]: r for r in rows.iter_rows(named=True)}
        for codelist_id in shared:
            row = found.get(codelist_id)
            pin = manifest.entry(codelist_id).sha256
            if row is None or row["sha256"] != pin:
                raise ReferenceDataError(
                    f"codelist '{codelist_id}' in the warehouse table reference.codelists "
                    f"{'is missing' if row is None else 'was loaded from another version (sha256 ' + row['sha256'] + ')'}; "
                    f"reference_data/manifest.yaml pins sha256 {pin}. Run the reference_data job again (`core20 run` "
                    "does this itself when a pin changes)."
                )
            out[codelist_id] = frozenset(row["codes"])
    return out


def read_definition_codelist(
    definitions: Definitions, codelist_id: str, reference_dir: str | Path | None = None
) -> pl.DataFrame:
    """Return one codelist (code, term, ...) as the definitions folder pins it.

    Arguments:
        definitions: validated definitions (their folder may pin its own codelists).
        codelist_id: the codelist.
        reference_dir: the shared reference directory.

    Returns:
        The codelist's rows, every column as text.
    """
    from reference_data.loader import read_codelist, read_pinned_csv

    pin = definitions.local_codelists.get(codelist_id)
    if pin is None:
        return read_codelist(codelist_id, reference_dir)
    if definitions.directory is None:
        raise ValueError(f"codelist '{codelist_id}' is pinned by a definitions folder, but the folder is not known")
    return read_pinned_csv(definitions.directory / pin.path, pin.sha256, codelist_id, ["code", "term"])


def build_ethnicity_codes(snomed: pl.DataFrame, not_stated: pl.DataFrame) -> pl.DataFrame:
    """Return one row per ethnicity code: code, ethnic_category, ethnicity_16, ethnicity_broad.

    Arguments:
        snomed: the ethnicity codelist (code, grouping_6, label_16, nhs_ethnic_category).
        not_stated: the not-stated codelist (code, primis_cluster): ETH_NOTSTATED and
            ETH_NOTGIPTREF (declined, refused) map to Z "Not stated"; ETH_NORECORD
            ("Ethnic group not recorded") to 99 "Not known" - the NHS Data Dictionary keeps
            the two apart, and a "not recorded" code says nothing about whether the person
            was asked. Without a primis_cluster column every code is Z.

    Returns:
        The mapping `derive_ethnicity` joins events to.
    """
    stated = snomed.select(
        pl.col("code").cast(pl.String),
        pl.col("nhs_ethnic_category").cast(pl.String).alias("ethnic_category"),
        pl.col("label_16").cast(pl.String).alias("ethnicity_16"),
        pl.col("grouping_6").cast(pl.String).replace_strict(ETHNICITY_BROAD_BY_GROUP_6).alias("ethnicity_broad"),
    )
    cluster = pl.col("primis_cluster") if "primis_cluster" in not_stated.columns else pl.lit(None, dtype=pl.String)
    not_known = cluster.is_in(list(NOT_KNOWN_CLUSTERS)).fill_null(False)
    label = pl.when(not_known).then(pl.lit(NOT_KNOWN)).otherwise(pl.lit(NOT_STATED))
    unstated = not_stated.select(
        pl.col("code").cast(pl.String),
        pl.when(not_known).then(pl.lit("99")).otherwise(pl.lit("Z")).alias("ethnic_category"),
        label.alias("ethnicity_16"),
        label.alias("ethnicity_broad"),
    )
    return pl.concat([stated, unstated]).unique("code", keep="first", maintain_order=True)


def load_ethnicity_codes(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Read the pinned ethnicity and not-stated codelists into the `build_ethnicity_codes` mapping."""
    from reference_data.loader import read_codelist

    return build_ethnicity_codes(
        read_codelist("ethnicity_snomed", reference_dir), read_codelist("eth_not_stated", reference_dir)
    )


def derive_ethnicity(
    events: pl.LazyFrame,
    ethnicity_codes: pl.DataFrame | pl.LazyFrame,
    reference_date: date | None = None,
) -> pl.LazyFrame:
    """Return each patient's ethnicity from their latest VALID ethnicity code dated on or before R.

    The latest stated code (NHS category A-S) wins (DOMAIN.md section 3, the CVDPREVENT /
    GDPPR rule): a later "not stated" (Z) or "not known" (99) code never overrides an
    earlier stated one. Only a patient with no stated code at all takes the latest of
    their not-stated / not-known codes (on one date, Z before 99). When stated codes on
    the latest date disagree, the lowest category letter wins, so the answer never depends
    on row order. Patients with no ethnicity code are absent: downstream they are
    'Unknown', kept apart from 'Not stated' and 'Not known'.
    This is the patient model's own ethnicity aggregation (`patient_model`), run on its own.

    Arguments:
        events: coded events (patient_id, code, event_date).
        ethnicity_codes: the mapping from `build_ethnicity_codes` / `load_ethnicity_codes`.
        reference_date: R; events after it are ignored. None keeps every event.

    Returns:
        patient_id, ethnic_category (A-S or Z), ethnicity_16, ethnicity_broad.
    """
    from pipelines.segmentation.extract import month_end

    mapping = ethnicity_codes.collect() if isinstance(ethnicity_codes, pl.LazyFrame) else ethnicity_codes
    frame = events.collect() if isinstance(events, pl.LazyFrame) else events
    if "value" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("value"))
    builder = ModelBuilder(Definitions({}, {}, {}, {}), {}, month_end(reference_date or date(2000, 1, 1)))
    builder.events_until = reference_date
    model = FrameModel(builder, frame.select("patient_id").unique(), frame.drop("reporting_month", strict=False),
                       ethnicity_codes=mapping)
    result = model.query(f"select patient_id, ethnic_category, ethnicity_16, ethnicity_broad from ({model.model_sql()}) "
                         "where ethnic_category is not null")
    return result.lazy()


# --- public evaluators: selections from the patient model ---------------------------------


def _present(feeds: Mapping[str, pl.LazyFrame | None] | None) -> list[str]:
    return [name for name, frame in (feeds or {}).items() if frame is not None]


def model_of(
    defs: Definitions,
    kind: str,
    patients: pl.LazyFrame,
    events: pl.LazyFrame,
    codelists: Mapping[str, frozenset[str]],
    reference_date: date,
    *,
    deprivation: pl.LazyFrame | None = None,
    ethnicity: pl.LazyFrame | None = None,
    imd_vintage: str = "IMD2019",
    ids: Sequence[str] | None = None,
    feeds: Mapping[str, pl.LazyFrame | None] | None = None,
) -> tuple[ModelBuilder, FrameModel, str]:
    """Return the builder, the frame-backed model and its table, planned for one kind of definition."""
    builder = ModelBuilder(defs, codelists, reference_date, imd_vintage).plan(
        [kind], feeds_present=_present(feeds), ids={kind: ids} if ids is not None else None)
    model = FrameModel(builder, patients, events, deprivation, ethnicity, feeds)
    return builder, model, model.materialise()


def evaluate_registers(
    defs: Definitions,
    patients: pl.LazyFrame,
    events: pl.LazyFrame,
    codelists: Mapping[str, frozenset[str]],
    reference_date: date,
    register_ids: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """Return who is on each register at R, with the deciding diagnosis code and date.

    Arguments:
        defs: validated definitions.
        patients: staged patients (patient_id, date_of_birth and/or age).
        events: staged events (patient_id, code, event_date, value).
        codelists: codelist id -> codes (see `load_codelists`).
        reference_date: R, the last day of the reporting month.
        register_ids: registers to evaluate; default all.

    Returns:
        reporting_month, patient_id, register_id, register_version, diagnosis_date,
        diagnosis_code — members only; the latest diagnosis code (the lowest code on the
        latest diagnosis date) answers "why is this patient on the register".
    """
    builder, model, table = model_of(defs, "register", patients, events, codelists, reference_date, ids=register_ids)
    return model.query(register_membership_sql(builder, table) + " order by register_id, patient_id").lazy()


def evaluate_cohorts(
    defs: Definitions,
    patients: pl.LazyFrame,
    events: pl.LazyFrame,
    deprivation: pl.LazyFrame,
    codelists: Mapping[str, frozenset[str]],
    reference_date: date,
    imd_vintage: str = "IMD2019",
    ethnicity: pl.LazyFrame | None = None,
    cohort_ids: Sequence[str] | None = None,
    feeds: Mapping[str, pl.LazyFrame | None] | None = None,
) -> pl.LazyFrame:
    """Return the members of each cohort at R.

    Arguments:
        defs: validated definitions.
        patients, events: staged tables (see `evaluate_registers`).
        deprivation: PATIENT_DEPRIVATION rows (patient_id, imd2019_decile, imd2025_decile).
        codelists: codelist id -> codes.
        reference_date: R, the last day of the reporting month.
        imd_vintage: which national decile `deprivation` criteria use.
        ethnicity: `derive_ethnicity` output; needed only by `ethnicity` criteria.
        cohort_ids: cohorts to evaluate; default every available one.
        feeds: optional linked feeds by name (None or absent: not supplied).

    Returns:
        reporting_month, patient_id, cohort_id, cohort_version — members only. Cohorts
        that are not available (no codelist, feed absent) have no rows.
    """
    builder, model, table = model_of(defs, "cohort", patients, events, codelists, reference_date, deprivation=deprivation,
                                     ethnicity=ethnicity, imd_vintage=imd_vintage, ids=cohort_ids, feeds=feeds)
    return model.query(cohort_membership_sql(builder, table) + " order by cohort_id, patient_id").lazy()


def evaluate_indicators(
    defs: Definitions,
    patients: pl.LazyFrame,
    events: pl.LazyFrame,
    deprivation: pl.LazyFrame,
    codelists: Mapping[str, frozenset[str]],
    reference_date: date,
    imd_vintage: str = "IMD2019",
    ethnicity: pl.LazyFrame | None = None,
    indicator_ids: Sequence[str] | None = None,
    feeds: Mapping[str, pl.LazyFrame | None] | None = None,
) -> pl.LazyFrame:
    """Return one row per denominator patient per indicator, saying if they meet the numerator.

    Arguments:
        defs, patients, events, deprivation, codelists, reference_date, imd_vintage,
        ethnicity: as for `evaluate_cohorts`.
        indicator_ids: indicators to evaluate; default every available one.
        feeds: optional linked feeds by name (None or absent: not supplied).

    Returns:
        reporting_month, patient_id, indicator_id, indicator_version, is_numerator.
        Indicators that are not available this month (see `indicator_catalogue`) have no
        rows: they are not evaluated, so they can never read as a zero rate.
    """
    builder, model, table = model_of(defs, "indicator", patients, events, codelists, reference_date,
                                     deprivation=deprivation, ethnicity=ethnicity, imd_vintage=imd_vintage,
                                     ids=indicator_ids, feeds=feeds)
    return model.query(patient_indicators_sql(builder, table) + " order by indicator_id, patient_id").lazy()


# The catalogue's columns are declared once, in its published contract; the month is added by the asset.
INDICATOR_CATALOGUE_SCHEMA = {name: dtype for name, dtype in INDICATOR_CATALOGUE.schema.items() if name != "reporting_month"}


def indicator_catalogue(defs: Definitions, feeds_present: Sequence[str] | None = None) -> pl.DataFrame:
    """Return one row per indicator: what it is, which way is better, whether it is available.

    Arguments:
        defs: validated definitions.
        feeds_present: the optional feeds this month's extract supplied; None treats every
            feed as present (availability then reflects codelists only).

    Returns:
        indicator_id, indicator_version, title, clinical_area, direction, target,
        unavailable_components ("component: reason"), definition_hash (sha256 of the
        canonical text of the indicator and every register/cohort it uses), is_available
        and not_available_reason (a missing codelist or an absent feed: reported, never a
        zero rate), value_type ('proportion' of persons or 'rate' of events per population) and
        multiplier (1 = a proportion, 100000 = per 100,000), requires_feeds,
        codelists, and the denominator and numerator rules in words.
    """
    rows = []
    for ind in sorted(defs.indicators.values(), key=lambda i: i.id):
        reason = defs.availability("indicator", ind.id, feeds_present)
        codelists = sorted(defs.codelists_used("indicator", ind.id))
        rows.append({
            "indicator_id": ind.id,
            "indicator_version": ind.version,
            "title": ind.title,
            "clinical_area": ind.clinical_area,
            "direction": ind.direction,
            "target": ind.target,
            "unavailable_components": [f"{u.component}: {u.reason}" for u in ind.unavailable_components],
            "definition_hash": defs.definition_hash("indicator", ind.id),
            "is_available": reason is None,
            "not_available_reason": reason,
            "value_type": ind.value_type,
            "multiplier": ind.multiplier,
            "requires_feeds": defs.feeds_used("indicator", ind.id),
            "codelists": codelists,
            "denominator_rule": ind.denominator.describe() if ind.denominator is not None else None,
            "numerator_rule": ind.numerator.describe() if ind.numerator is not None else None,
        })
    return pl.DataFrame(rows, schema=INDICATOR_CATALOGUE_SCHEMA)


COHORT_CATALOGUE_SCHEMA = {
    "cohort_id": pl.String,
    "cohort_version": pl.Int32,
    "title": pl.String,
    "role": pl.String,
    "definition_hash": pl.String,
    "is_available": pl.Boolean,
    "not_available_reason": pl.String,
    "rule": pl.String,
    "reporting_focus": pl.String,
}


def cohort_catalogue(defs: Definitions, feeds_present: Sequence[str] | None = None) -> pl.DataFrame:
    """Return one row per cohort: its role for this ICS, availability, hash and rule in words.

    Arguments:
        defs: validated definitions (with the ICS configuration, which names the PLUS groups).
        feeds_present: as for `indicator_catalogue`.

    Returns:
        cohort_id, cohort_version, title, role (core20, plus_group, focus or
        building_block, from the ICS configuration), definition_hash, is_available,
        not_available_reason, rule, reporting_focus (the groups a cohort is reported with
        a focus on, if any).
    """
    rows = []
    for cohort in sorted(defs.cohorts.values(), key=lambda c: c.id):
        reason = defs.availability("cohort", cohort.id, feeds_present)
        focus = cohort.reporting_focus
        rows.append({
            "cohort_id": cohort.id,
            "cohort_version": cohort.version,
            "title": cohort.title,
            "role": defs.cohort_role(cohort.id),
            "definition_hash": defs.definition_hash("cohort", cohort.id),
            "is_available": reason is None,
            "not_available_reason": reason,
            "rule": cohort.criteria.describe() if cohort.criteria is not None else None,
            "reporting_focus": f"{focus.breakdown}: {', '.join(focus.groups)}" if focus is not None else None,
        })
    return pl.DataFrame(rows, schema=COHORT_CATALOGUE_SCHEMA)


REPORTED_ROLES = ("core20", "plus_group", "focus")


def reported_cohorts(membership: pl.DataFrame, catalogue: pl.DataFrame) -> pl.DataFrame:
    """Return the members of the cohorts the ICS reports by: Core20, its PLUS groups and focus cohorts.

    Which PLUS groups an ICS uses is its configuration (ics.yaml), recorded as each cohort's
    `role` in the cohort catalogue; building blocks (e.g. `cvd_risk`) and cohorts that only
    restate a breakdown the gap table already has are left out of the gap table's cohort
    breakdowns.

    Examples:
        >>> m = pl.DataFrame({"patient_id": ["a", "b"], "cohort_id": ["smi", "cvd_risk"]})
        >>> c = pl.DataFrame({"cohort_id": ["smi", "cvd_risk"], "role": ["plus_group", "building_block"]})
        >>> reported_cohorts(m, c)["cohort_id"].to_list()
        ['smi']
    """
    chosen = catalogue.filter(pl.col("role").is_in(REPORTED_ROLES)).select("cohort_id").unique()
    return membership.join(chosen, on="cohort_id", how="semi")
