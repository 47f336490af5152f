"""Cohort assets: QOF-style registers and cohorts compiled from the versioned definitions."""


import dagster as dg
import polars as pl

from assets.feeds import FEED_INS, feeds_of
from assets.staging import EVENTS, MONTH_META, PATIENTS
from pipelines import quality
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY
from pipelines.resources import PipelineSettings, ReferenceData, Warehouse
from pipelines.segmentation import cohorts, definitions
from pipelines.segmentation.extract import month_end

DEPRIVATION = dg.AssetKey(["population", "patient_deprivation"])
REGISTERS = dg.AssetKey(["cohorts", "register_membership"])
ATTRIBUTES = dg.AssetKey(["population", "patient_attributes"])


def month_of(context: dg.AssetExecutionContext):
    """Return the first day of the partition's month."""
    return MONTHLY.time_window_for_partition_key(context.partition_key).start.date()


def compiled_inputs(reference_data: ReferenceData, settings: PipelineSettings | None = None):
    """Return the run's definitions and the pinned codelists they reference (sha256-checked)."""
    defs = definitions.load_definitions(settings.definitions_path() if settings is not None else None)
    return defs, cohorts.load_codelists(defs, reference_data.path())


@dg.asset(
    key=REGISTERS, partitions_def=MONTHLY, metadata=MONTH_META, group_name="cohorts",
    ins={"patients": dg.AssetIn(PATIENTS), "events": dg.AssetIn(EVENTS)},
    check_specs=[dg.AssetCheckSpec("register_prevalence", asset=REGISTERS, blocking=False,
                                   description="expectations/cohorts.register_membership.json (warnings, not blocks)")],
    description="Patients on each clinical register at month end, with the deciding diagnosis code and date.",
)
def register_membership(context: dg.AssetExecutionContext, reference_data: ReferenceData, settings: PipelineSettings,
                        warehouse: Warehouse, patients: pl.DataFrame, events: pl.DataFrame):
    defs, codelists = compiled_inputs(reference_data, settings)
    members = cohorts.evaluate_registers(defs, patients.lazy(), events.lazy(), codelists, month_end(month_of(context))).collect()
    counts = members.group_by("register_id").len().sort("register_id")
    yield dg.Output(members, metadata={f"n_{r}": n for r, n in counts.iter_rows()})
    prevalence = quality.register_prevalence(members, patients.height, sorted(defs.registers))
    outcome = quality.gate_outcome(run_suite(prevalence, "cohorts.register_membership"), severity="WARN")
    yield quality.check_result(context, warehouse.file(), REGISTERS, "register_prevalence", outcome)


@dg.asset(
    key=["cohorts", "cohort_membership"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="cohorts",
    ins={"patients": dg.AssetIn(PATIENTS), "events": dg.AssetIn(EVENTS), "deprivation": dg.AssetIn(DEPRIVATION),
         "attributes": dg.AssetIn(ATTRIBUTES), **FEED_INS},
    description="Members of each Core20 / PLUS / combined cohort at month end (Core20 on the primary IMD vintage).",
)
def cohort_membership(context: dg.AssetExecutionContext, reference_data: ReferenceData, settings: PipelineSettings,
                      patients: pl.DataFrame, events: pl.DataFrame, deprivation: pl.DataFrame, attributes: pl.DataFrame,
                      feed_availability: pl.DataFrame, **feeds: pl.DataFrame) -> dg.Output:
    defs, codelists = compiled_inputs(reference_data, settings)
    members = cohorts.evaluate_cohorts(
        defs, patients.lazy(), events.lazy(), deprivation.lazy(), codelists, month_end(month_of(context)),
        imd_vintage=settings.primary_imd_vintage, ethnicity=attributes.lazy(), feeds=feeds_of(feed_availability, feeds),
    ).collect()
    counts = members.group_by("cohort_id").len().sort("cohort_id")
    return dg.Output(members, metadata={f"n_{c}": n for c, n in counts.iter_rows()})


@dg.asset(
    key=["cohorts", "cohort_catalogue"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="cohorts",
    ins={"feed_availability": FEED_INS["feed_availability"]},
    description="Every cohort with its role for this ICS (Core20, PLUS group, focus), availability, hash and rule.",
)
def cohort_catalogue(context: dg.AssetExecutionContext, settings: PipelineSettings, feed_availability: pl.DataFrame) -> pl.DataFrame:
    defs = definitions.load_definitions(settings.definitions_path())
    present = feed_availability.filter("is_present")["feed"].to_list()
    return cohorts.cohort_catalogue(defs, present).select(pl.lit(month_of(context)).alias("reporting_month"), pl.all())
