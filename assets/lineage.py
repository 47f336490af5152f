"""The month's definitions: catalogues, the audit trail (schema `lineage`) and the catalogue's candidate.

One step reads the definitions folder once and writes what depends only on it and on which
feeds the month supplied: the indicator and cohort catalogues, every definition used with
its full text and hash, the run manifest, the registry view, and the indicator catalogue's
published candidate with its gate. None of these tables holds a patient-level value.
(Attrition counts patients, so it is selected from the patient model: `assets/cohorts.py`.)
"""


import dagster as dg
import polars as pl

from assets.staging import FEED_AVAILABILITY, MONTH_META, PATIENTS
from pipelines import quality
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY, month_of
from pipelines.resources import PipelineSettings, Warehouse
from pipelines.segmentation import cohorts, definitions, lineage
from pipelines.warehouse import write_frame

USAGE = dg.AssetKey(["lineage", "definition_usage"])
CATALOGUE = dg.AssetKey(["indicators", "indicator_catalogue"])
COHORT_CATALOGUE = dg.AssetKey(["cohorts", "cohort_catalogue"])
AUDIT_CATALOGUE = dg.AssetKey(["audit", "indicator_catalogue"])
REGISTRY = dg.AssetKey(["lineage", "definitions_registry"])
MANIFEST = dg.AssetKey(["lineage", "run_manifest"])


def _out(key: dg.AssetKey, group: str, description: str, *, partitioned_table: bool = True) -> dg.AssetOut:
    return dg.AssetOut(key=key, metadata=MONTH_META if partitioned_table else None, group_name=group, description=description)


@dg.multi_asset(
    outs={
        "indicator_catalogue": _out(CATALOGUE, "indicators",
                                    "Every indicator for the month: version, direction, target, hash, and whether it is "
                                    "available (an indicator whose codelist or feed is missing is reported as not "
                                    "available, never as zero)."),
        "cohort_catalogue": _out(COHORT_CATALOGUE, "cohorts",
                                 "Every cohort with its role for this ICS (Core20, PLUS group, focus), availability, hash and rule."),
        "audit_indicator_catalogue": _out(AUDIT_CATALOGUE, "gaps",
                                          "Candidate indicator catalogue for the month, published with the gap table once gated."),
        "definition_usage": _out(USAGE, "lineage", "Every register, cohort, indicator and ICS definition the month used: "
                                 "full text, version and hash."),
        "definitions_registry": _out(REGISTRY, "lineage", "View over definition_usage: each definition version with its "
                                     "full text and first and last month used.", partitioned_table=False),
        "run_manifest": _out(MANIFEST, "lineage", "What the month's figures depend on: definition hashes, codelist and "
                             "reference sha256s, IMD vintage, settings, feeds and code version."),
    },
    ins={"feed_availability": dg.AssetIn(FEED_AVAILABILITY)},
    deps=[PATIENTS],  # so a month whose input gates block writes nothing past staging
    partitions_def=MONTHLY,
    check_specs=[dg.AssetCheckSpec("published_invariants", asset=AUDIT_CATALOGUE, blocking=True,
                                   description="expectations/audit.indicator_catalogue.json")],
)
def month_definitions(context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: Warehouse,
                      feed_availability: pl.DataFrame):
    month = month_of(context)
    present = feed_availability.filter("is_present")["feed"].to_list()
    defs = definitions.load_definitions(settings.definitions_path())
    catalogue = cohorts.indicator_catalogue(defs, present)
    catalogue = catalogue.with_columns(pl.lit(month).alias("reporting_month")).select("reporting_month", pl.exclude("reporting_month"))
    cohort_catalogue = cohorts.cohort_catalogue(defs, present).select(pl.lit(month).alias("reporting_month"), pl.all())
    usage = lineage.definition_usage(defs, month, present)
    chosen = {
        "primary_imd_vintage": settings.primary_imd_vintage,
        "imd_vintages_attached": "IMD2019 (IoD2019, LSOA 2011); IMD2025 (IoD2025, LSOA 2021)",
        "disclosure_profile": settings.disclosure_profile,
        "min_decile_match_rate": settings.min_decile_match_rate,
        "practice_fallback": settings.practice_fallback,
    }
    manifest = lineage.run_manifest(defs, month, run_id=context.run.run_id, settings=chosen, feeds_present=present,
                                    definitions_dir=defs.directory)
    with warehouse.connect() as con:
        # The registry is a view over the usage table: both are written here, in order.
        write_frame(con, "lineage", "definition_usage", usage, partition_column="reporting_month", partition_value=month)
        con.execute(lineage.REGISTRY_VIEW_SQL).fetchall()
        n_versions = con.execute("SELECT count(*) FROM lineage.definitions_registry").fetchall()[0][0]
    unavailable = catalogue.filter(~pl.col("is_available"))["indicator_id"].to_list()
    yield dg.Output(catalogue, output_name="indicator_catalogue",
                    metadata={"n_available": catalogue.height - len(unavailable), "not_available": ", ".join(unavailable)})
    yield dg.Output(cohort_catalogue, output_name="cohort_catalogue", metadata={"n_rows": cohort_catalogue.height})
    yield dg.Output(catalogue, output_name="audit_indicator_catalogue", metadata={"n_rows": catalogue.height})
    yield dg.Output(None, output_name="definition_usage", metadata={"n_rows": usage.height})
    yield dg.Output(None, output_name="definitions_registry",
                    metadata={"n_definition_versions": n_versions, "view": "lineage.definitions_registry"})
    yield dg.Output(manifest, output_name="run_manifest", metadata={"n_rows": manifest.height})
    gate = run_suite(catalogue, "audit.indicator_catalogue")
    yield quality.check_result(context, warehouse, AUDIT_CATALOGUE, "published_invariants", quality.gate_outcome(gate))


LINEAGE_ASSETS = [month_definitions]
