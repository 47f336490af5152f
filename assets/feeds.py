"""Optional linked feeds: staged per month, with a record of which ones the extract held."""


import dagster as dg
import polars as pl

from assets.staging import MONTH_META, PATIENTS
from pipelines.partitions import MONTHLY
from pipelines.resources import ExtractSource
from pipelines.segmentation.feeds import feeds_from_tables, stage_feeds
from pipelines.segmentation.schemas import FEEDS

FEED_AVAILABILITY = dg.AssetKey(["staging", "feed_availability"])
# Inputs every asset that reads the feeds declares (the availability says which are real).
FEED_INS = {
    "feed_availability": dg.AssetIn(FEED_AVAILABILITY),
    **{name: dg.AssetIn(["staging", name]) for name in FEEDS},
}


def feeds_of(availability: pl.DataFrame, frames: dict[str, pl.DataFrame]) -> dict[str, pl.LazyFrame | None]:
    """Return feed -> rows for the feeds the month's extract supplied, None for absent ones."""
    return feeds_from_tables(availability, frames)


@dg.multi_asset(
    outs={
        **{
            name: dg.AssetOut(key=["staging", name], metadata=MONTH_META, description=feed.table.description)
            for name, feed in FEEDS.items()
        },
        "feed_availability": dg.AssetOut(
            key=FEED_AVAILABILITY, metadata=MONTH_META,
            description="Which optional linked feeds the month's extract supplied (absent feed = indicators not available).",
        ),
    },
    ins={"patients": dg.AssetIn(PATIENTS)},
    partitions_def=MONTHLY,
    group_name="staging",
)
def staging_feeds(context: dg.AssetExecutionContext, extracts: ExtractSource, patients: pl.DataFrame):
    """Read the month's optional feeds (maternity, cancer registry, HES extractions, MHSDS)."""
    month = MONTHLY.time_window_for_partition_key(context.partition_key).start.date()
    staged = stage_feeds(extracts.folder_for(context.partition_key), extracts.mapping_path(), month, patients)
    present = dict(staged.availability.select("feed", "is_present").iter_rows())
    for name, frame in staged.frames.items():
        yield dg.Output(frame, output_name=name, metadata={"is_present": present[name], "n_rows": frame.height})
    yield dg.Output(staged.availability, output_name="feed_availability",
                    metadata={"present": ", ".join(n for n, p in present.items() if p) or "none"})
