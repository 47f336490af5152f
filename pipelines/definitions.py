"""The one place the Dagster Definitions object is built."""

import dagster as dg

from assets.cohorts import patient_model
from assets.gaps import audit_gap_table, audit_inequality_table, audit_spc_series
from assets.lineage import LINEAGE_ASSETS
from assets.disclosure import disclosure_audit
from assets.population import patient_deprivation
from assets.publish import publish_month
from assets.reference import REFERENCE_ASSETS
from assets.staging import staging_extract
from pipelines import settings_file
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
    extract_month: str | None = None,
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
        extract_month: the month a single cumulative extract folder without extract.json was
            cut for (earlier months run as at their end); see ExtractSource.
        reference_dir: reference directory (default $CORE20_REFERENCE_DIR or ../shared/reference_data).
        column_mapping: a column-mapping file for the extracts.
        settings: ICS settings (primary IMD vintage, disclosure profile, gate thresholds); default
            the [choices] of the settings file (core20.toml), so the Dagster UI, its schedule and
            sensor run with the same choices as `core20 run`.
        serving_root: serving snapshots for BI (default $CORE20_SERVING, core20.toml, or beside the warehouse).
        reports_dir: monthly HTML reports (default $CORE20_REPORTS, core20.toml, or beside the warehouse).

    Paths left as None are resolved when a run starts (flag, variable, core20.toml, default:
    pipelines/settings_file.py); the [choices] are read here, so after editing core20.toml
    reload the code location in the UI.
    """
    # The serving snapshot and the report are built as candidates by the disclosure audit and put in
    # place by the publish step (assets/disclosure.py, assets/publish.py).
    door = Warehouse(path=warehouse)
    base = dg.Definitions(
        assets=[
            *REFERENCE_ASSETS,
            staging_extract,
            patient_deprivation,
            patient_model,
            *LINEAGE_ASSETS,
            audit_gap_table,
            audit_inequality_table,
            audit_spc_series,
            disclosure_audit,
            publish_month,
            icb_month_asset,
            national_rollup_asset,
        ],
        jobs=[monthly_job, reference_job, national_month_job_from_env()],
        schedules=SCHEDULES,
        sensors=SENSORS,
        loggers={**dg.default_loggers(), PROGRESS_LOGGER: progress_logger},
        resources={
            "io_manager": DuckDBPolarsIOManager(warehouse=door),
            "warehouse": door,
            "extracts": ExtractSource(root=extracts, column_mapping=column_mapping, extract_month=extract_month),
            "reference_data": ReferenceData(directory=reference_dir),
            "settings": settings or PipelineSettings(**settings_file.choices()),
            "operations": OperationsSettings(),
            "national": NationalSettings(),
            "serving": ServingOutputs(serving_root=serving_root, reports_dir=reports_dir, warehouse=warehouse),
        },
    )
    return base

defs = build_definitions()
