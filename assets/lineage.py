"""The audit trail (schema `lineage`): definitions used, the run manifest and attrition.

None of these tables holds a patient-level value: definitions and their hashes, file
checksums and settings, and counts of patients per rule.
"""


import dagster as dg
import polars as pl

from assets.cohorts import ATTRIBUTES, DEPRIVATION, compiled_inputs, month_of
from assets.feeds import FEED_INS, feeds_of
from assets.staging import EVENTS, MONTH_META, PATIENTS
from pipelines.partitions import MONTHLY
from pipelines.resources import PipelineSettings, ReferenceData, Warehouse
from pipelines.segmentation import definitions, lineage
from pipelines.segmentation.extract import month_end
from pipelines.warehouse import connect

USAGE = dg.AssetKey(["lineage", "definition_usage"])


def _present(feed_availability: pl.DataFrame) -> list[str]:
    return feed_availability.filter("is_present")["feed"].to_list()


@dg.asset(
    key=USAGE, partitions_def=MONTHLY, metadata=MONTH_META, group_name="lineage",
    ins={"feed_availability": FEED_INS["feed_availability"]},
    description="Every register, cohort, indicator and ICS definition the month used: full text, version and hash.",
)
def definition_usage(context: dg.AssetExecutionContext, settings: PipelineSettings,
                     feed_availability: pl.DataFrame) -> pl.DataFrame:
    defs = definitions.load_definitions(settings.definitions_path())
    return lineage.definition_usage(defs, month_of(context), _present(feed_availability))


@dg.asset(
    key=["lineage", "definitions_registry"], partitions_def=MONTHLY, group_name="lineage", deps=[USAGE],
    description="View over definition_usage: each definition version with its full text and first and last month used.",
)
def definitions_registry(warehouse: Warehouse) -> dg.MaterializeResult:
    with connect(warehouse.file()) as con:
        con.execute(lineage.REGISTRY_VIEW_SQL)
        n = con.execute("select count(*) from lineage.definitions_registry").fetchall()[0][0]
    return dg.MaterializeResult(metadata={"n_definition_versions": n, "view": "lineage.definitions_registry"})


@dg.asset(
    key=["lineage", "run_manifest"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="lineage",
    ins={"feed_availability": FEED_INS["feed_availability"]},
    description="What the month's figures depend on: definition hashes, codelist and reference sha256s, IMD vintage, "
                "settings, feeds and code version.",
)
def run_manifest(context: dg.AssetExecutionContext, settings: PipelineSettings,
                 feed_availability: pl.DataFrame) -> pl.DataFrame:
    defs = definitions.load_definitions(settings.definitions_path())
    chosen = {
        "primary_imd_vintage": settings.primary_imd_vintage,
        "imd_vintages_attached": "IMD2019 (IoD2019, LSOA 2011); IMD2025 (IoD2025, LSOA 2021)",
        "disclosure_profile": settings.disclosure_profile,
        "min_decile_match_rate": settings.min_decile_match_rate,
        "practice_fallback": settings.practice_fallback,
    }
    return lineage.run_manifest(defs, month_of(context), run_id=context.run.run_id, settings=chosen,
                                feeds_present=_present(feed_availability), definitions_dir=defs.directory)


@dg.asset(
    key=["lineage", "attrition"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="lineage",
    ins={"patients": dg.AssetIn(PATIENTS), "events": dg.AssetIn(EVENTS), "deprivation": dg.AssetIn(DEPRIVATION),
         "attributes": dg.AssetIn(ATTRIBUTES), **FEED_INS},
    description="Per register, cohort and indicator: patients each rule kept and removed, in order (counts only).",
)
def attrition(context: dg.AssetExecutionContext, reference_data: ReferenceData, settings: PipelineSettings,
              patients: pl.DataFrame, events: pl.DataFrame, deprivation: pl.DataFrame, attributes: pl.DataFrame,
              feed_availability: pl.DataFrame, **feeds: pl.DataFrame) -> pl.DataFrame:
    defs, codelists = compiled_inputs(reference_data, settings)
    return lineage.attrition(
        defs, patients.lazy(), events.lazy(), deprivation.lazy(), codelists, month_end(month_of(context)),
        imd_vintage=settings.primary_imd_vintage, ethnicity=attributes.lazy(), feeds=feeds_of(feed_availability, feeds),
    )


LINEAGE_ASSETS = [definition_usage, definitions_registry, run_manifest, attrition]
