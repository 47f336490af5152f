"""Publish: one step swaps the month's gated candidates into the `published` schema, in one transaction.

The step is generated from the registry in `pipelines/publication.py`: one published asset
per registered table, all materialised together (they cannot be subset). It runs only
after every candidate's gate passed; a blocked run never reaches it, so the published
tables stay exactly as they were.
"""


import dagster as dg

from assets.cohorts import month_of
from assets.staging import MONTH_META
from pipelines.partitions import MONTHLY
from pipelines.publication import PUBLISHED_TABLES, audit_key, publish, published_key, ungated
from pipelines.resources import Warehouse

CANDIDATES = [audit_key(t) for t in PUBLISHED_TABLES if t.audit_asset]


@dg.multi_asset(
    name="publish_month",
    specs=[
        dg.AssetSpec(published_key(t), deps=[audit_key(t)] if t.audit_asset else CANDIDATES, metadata=MONTH_META,
                     group_name="publish", description=f"Published {t.name.replace('_', ' ')}: the month's gated candidate.")
        for t in PUBLISHED_TABLES
    ],
    partitions_def=MONTHLY,
    can_subset=False,
)
def publish_month(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Copy every gated candidate of the month into `published`, all in one transaction."""
    evaluations = [record.get_dagster_event().event_specific_data for record in context.instance.all_logs(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    reasons = ungated(evaluations)
    if reasons:
        raise dg.Failure(description="nothing published (the published tables are unchanged): " + "; ".join(reasons))
    copied = publish(warehouse, month_of(context))
    for table in PUBLISHED_TABLES:
        yield dg.MaterializeResult(asset_key=published_key(table), metadata={
            "n_rows": copied[f"published.{table.name}"], "reporting_month": str(month_of(context))})
