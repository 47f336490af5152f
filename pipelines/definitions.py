"""The one place the Dagster Definitions object is built."""

import dagster as dg

from assets.cohorts import cohort_catalogue, cohort_membership, register_membership
from assets.feeds import staging_feeds
from assets.gaps import audit_gap_table, audit_inequality_table, audit_spc_series
from assets.indicators import audit_indicator_catalogue, indicator_catalogue, patient_indicators
from assets.lineage import LINEAGE_ASSETS
from assets.population import (
    audit_deprivation_quality,
    deprivation_quality_table,
    patient_attributes,
    patient_deprivation,
)
from assets.publish import publish_month
from assets.reference import REFERENCE_ASSETS
from assets.report import build_report_asset
from assets.serving import build_serving_asset
from assets.staging import staging_extract
from pipelines.jobs import monthly_job, reference_job
from pipelines.national.engine import NationalSettings, icb_month_asset, national_month_job_from_env, national_rollup_asset
from pipelines.progress import PROGRESS_LOGGER, progress_logger
from pipelines.resources import ExtractSource, PipelineSettings, ReferenceData, ServingOutputs, Warehouse
from pipelines.schedules import SCHEDULES, SENSORS, OperationsSettings
from pipelines.warehouse import DuckDBPolarsIOManager


def build_definitions(
    *,
    warehouse: str | None = None,
    extracts: str | None = None,
    reference_dir: str | None = None,
    column_mapping: str | None = None,
    settings: PipelineSettings | None = None,
    serving_root: str | None = None,
    reports_dir: str | None = None,
) -> dg.Definitions:
    """Return the Definitions with resources pointed at the given (or default) locations.

    Arguments:
        warehouse: DuckDB file (default $CORE20_WAREHOUSE or data/warehouse/core20plus5.duckdb).
        extracts: extracts root or a single extract folder (default $CORE20_EXTRACTS or data/extracts).
        reference_dir: reference directory (default $CORE20_REFERENCE_DIR or ../shared/reference_data).
        column_mapping: a column-mapping file for the extracts.
        settings: ICS settings (primary IMD vintage, disclosure profile, gate thresholds).
        serving_root: serving snapshots for BI (default $CORE20_SERVING or data/serving).
        reports_dir: monthly HTML reports (default $CORE20_REPORTS or data/reports).
    """
    base = dg.Definitions(
        assets=[
            *REFERENCE_ASSETS,
            staging_extract,
            patient_deprivation,
            deprivation_quality_table,
            patient_attributes,
            register_membership,
            cohort_membership,
            patient_indicators,
            indicator_catalogue,
            audit_gap_table,
            audit_indicator_catalogue,
            audit_inequality_table,
            audit_spc_series,
            audit_deprivation_quality,
            publish_month,
            staging_feeds,
            cohort_catalogue,
            *LINEAGE_ASSETS,
            icb_month_asset,
            national_rollup_asset,
        ],
        jobs=[monthly_job, reference_job, national_month_job_from_env()],
        schedules=SCHEDULES,
        sensors=SENSORS,
        loggers={**dg.default_loggers(), PROGRESS_LOGGER: progress_logger},
        resources={
            "io_manager": DuckDBPolarsIOManager(database=warehouse),
            "warehouse": Warehouse(path=warehouse),
            "extracts": ExtractSource(root=extracts, column_mapping=column_mapping),
            "reference_data": ReferenceData(directory=reference_dir),
            "settings": settings or PipelineSettings(),
            "operations": OperationsSettings(),
            "national": NationalSettings(),
            "serving": ServingOutputs(serving_root=serving_root, reports_dir=reports_dir),
        },
    )
    # Outputs for people, built from whatever the month published: a newly published table
    # reaches the serving snapshot and the report without a change here.
    published = [spec.key for spec in base.resolve_all_asset_specs() if spec.key.path[0] == "published"]
    return dg.Definitions.merge(base, dg.Definitions(assets=[build_serving_asset(published), build_report_asset(published)]))


defs = build_definitions()
