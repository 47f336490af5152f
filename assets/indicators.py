"""Indicator assets: per-patient numerator flags for every indicator whose inputs are present."""


import dagster as dg
import polars as pl

from assets.cohorts import ATTRIBUTES, DEPRIVATION, compiled_inputs, month_of
from assets.feeds import FEED_INS, feeds_of
from assets.staging import EVENTS, MONTH_META, PATIENTS
from pipelines import quality
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY
from pipelines.resources import PipelineSettings, ReferenceData, Warehouse
from pipelines.segmentation import cohorts
from pipelines.segmentation.extract import month_end


@dg.asset(
    key=["indicators", "patient_indicators"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="indicators",
    ins={"patients": dg.AssetIn(PATIENTS), "events": dg.AssetIn(EVENTS), "deprivation": dg.AssetIn(DEPRIVATION),
         "attributes": dg.AssetIn(ATTRIBUTES), **FEED_INS},
    description="One row per denominator patient per indicator, with whether they meet the numerator (private).",
)
def patient_indicators(context: dg.AssetExecutionContext, reference_data: ReferenceData, settings: PipelineSettings,
                       patients: pl.DataFrame, events: pl.DataFrame, deprivation: pl.DataFrame, attributes: pl.DataFrame,
                       feed_availability: pl.DataFrame, **feeds: pl.DataFrame) -> dg.Output:
    defs, codelists = compiled_inputs(reference_data, settings)
    results = cohorts.evaluate_indicators(
        defs, patients.lazy(), events.lazy(), deprivation.lazy(), codelists, month_end(month_of(context)),
        imd_vintage=settings.primary_imd_vintage, ethnicity=attributes.lazy(), feeds=feeds_of(feed_availability, feeds),
    ).collect()
    counts = results.group_by("indicator_id").agg(pl.len(), pl.col("is_numerator").sum()).sort("indicator_id")
    return dg.Output(results, metadata={f"{i}": f"{num} of {den}" for i, den, num in counts.iter_rows()})


@dg.asset(
    key=["indicators", "indicator_catalogue"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="indicators",
    ins={"feed_availability": FEED_INS["feed_availability"]},
    description="Every indicator for the month: version, direction, target, hash, and whether it is available "
                "(an indicator whose codelist or feed is missing is reported as not available, never as zero).",
)
def indicator_catalogue(context: dg.AssetExecutionContext, settings: PipelineSettings,
                        feed_availability: pl.DataFrame) -> dg.Output:
    from pipelines.segmentation import definitions

    present = feed_availability.filter("is_present")["feed"].to_list()
    catalogue = cohorts.indicator_catalogue(definitions.load_definitions(settings.definitions_path()), present)
    table = catalogue.with_columns(pl.lit(month_of(context)).alias("reporting_month")).select(
        "reporting_month", pl.exclude("reporting_month")
    )
    unavailable = table.filter(~pl.col("is_available"))["indicator_id"].to_list()
    return dg.Output(table, metadata={"n_available": table.height - len(unavailable), "not_available": ", ".join(unavailable)})


AUDIT_CATALOGUE = dg.AssetKey(["audit", "indicator_catalogue"])


@dg.asset(
    key=AUDIT_CATALOGUE, partitions_def=MONTHLY, metadata=MONTH_META, group_name="gaps",
    ins={"catalogue": dg.AssetIn(["indicators", "indicator_catalogue"])},
    check_specs=[dg.AssetCheckSpec("published_invariants", asset=AUDIT_CATALOGUE, blocking=True,
                                   description="expectations/audit.indicator_catalogue.json")],
    description="Candidate indicator catalogue for the month, published with the gap table once gated.",
)
def audit_indicator_catalogue(context: dg.AssetExecutionContext, warehouse: Warehouse, catalogue: pl.DataFrame):
    yield dg.Output(catalogue, metadata={"n_rows": catalogue.height})
    gate = run_suite(catalogue, "audit.indicator_catalogue")
    yield quality.check_result(context, warehouse.file(), AUDIT_CATALOGUE, "published_invariants", quality.gate_outcome(gate))
