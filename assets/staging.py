"""Staging assets: the month's extract read, cast to the contract and gated."""


import dagster as dg

from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY
from pipelines.resources import ExtractSource
from pipelines.segmentation.extract import month_end, read_extract, stage_extract
from pipelines.warehouse import PARTITION_EXPR

MONTH_META = {PARTITION_EXPR: "reporting_month"}
PATIENTS = dg.AssetKey(["staging", "patients"])
EVENTS = dg.AssetKey(["staging", "events"])


@dg.multi_asset(
    outs={
        "patients": dg.AssetOut(key=PATIENTS, metadata=MONTH_META, description="Patients registered at month end."),
        "events": dg.AssetOut(key=EVENTS, metadata=MONTH_META, description="Their coded events up to month end."),
    },
    partitions_def=MONTHLY,
    group_name="staging",
    check_specs=[
        dg.AssetCheckSpec("input_contract", asset=PATIENTS, blocking=True, description="expectations/staging.patients.json"),
    ],
)
def staging_extract(context: dg.AssetExecutionContext, extracts: ExtractSource):
    """Read the month's extract once and stage patients and events to the table contracts."""
    month = MONTHLY.time_window_for_partition_key(context.partition_key).start.date()
    folder = extracts.folder_for(context.partition_key)
    staged = stage_extract(read_extract(folder, extracts.mapping_path()), month)
    yield dg.Output(staged.patients, output_name="patients", metadata={**staged.counts, "extract": folder.name})
    yield dg.Output(staged.events, output_name="events", metadata={"n_events": staged.events.height})
    gate = run_suite(staged.patients, "staging.patients", {"reference_date": month_end(month)})
    yield dg.AssetCheckResult(
        asset_key=PATIENTS, check_name="input_contract", passed=gate.success,
        metadata={**gate.metadata(), "summary": gate.summary()},
    )
