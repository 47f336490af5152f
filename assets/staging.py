"""Staging: the month's extract read once, cast to the contract, quarantined where rows fail, and gated.

One step reads the extract folder: the patients (polars, a million rows fit), the events
(DuckDB, where they lie: written once, keyed, into `staging.event_rows` and read as
`staging.events`, see `extract.stage_events`) and the optional linked feeds, and writes
them through the warehouse door. Its two input-contract gates block everything downstream.
"""


import time

import dagster as dg

from pipelines import quality
from pipelines.gates import validate_sql
from pipelines.partitions import MONTHLY, month_of
from pipelines.resources import ExtractSource, PipelineSettings, ReferenceData, Warehouse
from pipelines.segmentation.extract import ExtractError, ensure_events_view, read_extract, stage_extract
from pipelines.segmentation.feeds import stage_feeds
from pipelines.segmentation.schemas import FEEDS
from pipelines.segmentation.sql import literal
from pipelines.warehouse import PARTITION_EXPR, unordered, write_frame

MONTH_META = {PARTITION_EXPR: "reporting_month"}
PATIENTS = dg.AssetKey(["staging", "patients"])
EVENTS = dg.AssetKey(["staging", "events"])
QUARANTINE = dg.AssetKey(["staging", "quarantine"])
FEED_AVAILABILITY = dg.AssetKey(["staging", "feed_availability"])
FEED_KEYS = [dg.AssetKey(["staging", name]) for name in FEEDS]
CONTRACT = "input_contract"


def _failure(error: ExtractError) -> dg.Failure:
    # The UI shows this description as the step's failure, the text `core20 run` prints.
    return dg.Failure(description=str(error), metadata=error.metadata(), allow_retries=False)


@dg.multi_asset(
    outs={
        "patients": dg.AssetOut(key=PATIENTS, metadata=MONTH_META, description="Patients registered at month end."),
        "events": dg.AssetOut(key=EVENTS, metadata=MONTH_META,
                              description="Their coded events up to month end (written by DuckDB where they lie)."),
        "quarantine": dg.AssetOut(key=QUARANTINE, metadata=MONTH_META,
                                  description="Extract rows set aside by a row rule, with the rule (private)."),
        **{name: dg.AssetOut(key=["staging", name], metadata=MONTH_META, description=feed.table.description)
           for name, feed in FEEDS.items()},
        "feed_availability": dg.AssetOut(
            key=FEED_AVAILABILITY, metadata=MONTH_META,
            description="Which optional linked feeds the month's extract supplied (absent feed = indicators not available).",
        ),
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
    """Read the month's extract once, quarantine failing rows, stage patients, events and feeds, and gate them."""
    month = month_of(context)
    folder = extracts.folder_for(context.partition_key)
    try:
        raw = read_extract(folder, extracts.mapping_path())
    except ExtractError as error:
        raise _failure(error) from None
    with warehouse.connect() as con:
        started = time.perf_counter()  # loading the suites (and GX, when a suite is new) is gate time too
        patient_suite, event_suite = quality.staging_suites(month, reference_data.path(), con=con)
        load_seconds = time.perf_counter() - started
        with unordered(con):
            staged = stage_extract(raw, month, patient_rules=patient_suite.row_rules(),
                                   event_rules=event_suite.row_rules(), con=con, warehouse=True)
        # The patients are written here too: staging.events (a view over the keyed rows) needs them.
        write_frame(con, "staging", "patients", staged.patients, partition_column="reporting_month", partition_value=month)
        ensure_events_view(con)
        events_gate = validate_sql(con, f"(SELECT * FROM staging.events WHERE reporting_month = {literal(month)})",
                                   event_suite.without_quarantine_rules())
    try:
        feeds = stage_feeds(folder, extracts.mapping_path(), month, staged.patients)
    except ExtractError as error:
        raise _failure(error) from None
    yield dg.Output(None, output_name="patients", metadata={**staged.counts, "extract": folder.name})
    yield dg.Output(None, output_name="events", metadata={"n_events": staged.counts["n_events"]})
    yield dg.Output(staged.quarantine, output_name="quarantine", metadata={"n_rows": staged.quarantine.height})
    present = dict(feeds.availability.select("feed", "is_present").iter_rows())
    for name, frame in feeds.frames.items():
        yield dg.Output(frame, output_name=name, metadata={"is_present": present[name], "n_rows": frame.height})
    yield dg.Output(feeds.availability, output_name="feed_availability",
                    metadata={"present": ", ".join(n for n, p in present.items() if p) or "none"})
    for table, outcome in quality.input_contract_outcomes(staged, raw, patient_suite, event_suite,
                                                          settings.max_quarantine_share, load_seconds, events_gate):
        yield quality.check_result(context, warehouse, dg.AssetKey(["staging", table]), CONTRACT, outcome)
