"""Staging assets: the month's extract read, cast to the contract, quarantined where rows fail, and gated."""


import time

import dagster as dg

from pipelines import quality
from pipelines.partitions import MONTHLY
from pipelines.resources import ExtractSource, PipelineSettings, ReferenceData, Warehouse
from pipelines.segmentation.extract import ExtractError, read_extract, stage_extract
from pipelines.warehouse import PARTITION_EXPR

MONTH_META = {PARTITION_EXPR: "reporting_month"}
PATIENTS = dg.AssetKey(["staging", "patients"])
EVENTS = dg.AssetKey(["staging", "events"])
QUARANTINE = dg.AssetKey(["staging", "quarantine"])
CONTRACT = "input_contract"


@dg.multi_asset(
    outs={
        "patients": dg.AssetOut(key=PATIENTS, metadata=MONTH_META, description="Patients registered at month end."),
        "events": dg.AssetOut(key=EVENTS, metadata=MONTH_META, description="Their coded events up to month end."),
        "quarantine": dg.AssetOut(key=QUARANTINE, metadata=MONTH_META,
                                  description="Extract rows set aside by a row rule, with the rule (private)."),
    },
    partitions_def=MONTHLY,
    group_name="staging",
    check_specs=[
        dg.AssetCheckSpec(CONTRACT, asset=PATIENTS, blocking=True, description="expectations/staging.patients.json + quarantine threshold"),
        dg.AssetCheckSpec(CONTRACT, asset=EVENTS, blocking=True, description="expectations/staging.events.json + quarantine threshold"),
    ],
)
def staging_extract(context: dg.AssetExecutionContext, extracts: ExtractSource, reference_data: ReferenceData,
                    settings: PipelineSettings, warehouse: Warehouse):
    """Read the month's extract once, quarantine failing rows, stage patients and events, and gate both."""
    month = MONTHLY.time_window_for_partition_key(context.partition_key).start.date()
    started = time.perf_counter()  # loading the suites (GX models; GX's import the first time) is gate time too
    patient_suite, event_suite = quality.staging_suites(month, reference_data.path())
    load_seconds = time.perf_counter() - started
    try:
        raw = read_extract(extracts.folder_for(context.partition_key), extracts.mapping_path())
    except ExtractError as error:  # the UI shows this description as the step's failure
        raise dg.Failure(description=str(error), metadata=error.metadata(), allow_retries=False) from None
    staged = stage_extract(raw, month, patient_rules=patient_suite.row_rules(), event_rules=event_suite.row_rules())
    yield dg.Output(staged.patients, output_name="patients", metadata={**staged.counts, "extract": raw.patients_path.parent.name})
    yield dg.Output(staged.events, output_name="events", metadata={"n_events": staged.events.height})
    yield dg.Output(staged.quarantine, output_name="quarantine", metadata={"n_rows": staged.quarantine.height})
    for table, outcome in quality.input_contract_outcomes(staged, raw, patient_suite, event_suite,
                                                          settings.max_quarantine_share, load_seconds):
        yield quality.check_result(context, warehouse.file(), dg.AssetKey(["staging", table]), CONTRACT, outcome)
