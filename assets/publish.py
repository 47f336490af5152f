"""Publish: one step swaps the month's gated candidates into place, after the disclosure audit passed.

The step is generated from the registry in `pipelines/publication.py`: one published asset
per registered table, all materialised together (they cannot be subset), plus the serving
snapshot and the monthly report. It runs only after every candidate's gate and the
disclosure audit (assets/disclosure.py) passed; a blocked run never reaches it, so the
published tables, the serving snapshot and the reports stay exactly as they were.

Order: the warehouse's publish transaction first, then the audited candidate snapshot is
swapped in and the audited candidate report moved into place (pipelines/serving.py). A
journal makes the three one recoverable unit: a run killed in between is finished or undone
at the start of the next run or command (pipelines/publish_journal.py).
"""


import dagster as dg

from assets.cohorts import month_of
from assets.disclosure import DISCLOSURE
from assets.staging import MONTH_META
from pipelines.partitions import MONTHLY
from pipelines.publication import PUBLISHED_TABLES, audit_key, published_key, ungated
from pipelines.resources import ServingOutputs, Warehouse

CANDIDATES = [audit_key(t) for t in PUBLISHED_TABLES if t.audit_asset]
SERVING = dg.AssetKey(["serving", "snapshot"])
REPORT = dg.AssetKey(["reports", "monthly_report"])


@dg.multi_asset(
    name="publish_month",
    specs=[
        *[dg.AssetSpec(published_key(t), deps=[*([audit_key(t)] if t.audit_asset else CANDIDATES), DISCLOSURE],
                       metadata=MONTH_META, group_name="publish",
                       description=f"Published {t.name.replace('_', ' ')}: the month's gated candidate.")
          for t in PUBLISHED_TABLES],
        dg.AssetSpec(SERVING, deps=[DISCLOSURE], group_name="serving",
                     description="Read-only serving DuckDB file, star schema and Parquet export for Power BI, swapped in atomically."),
        dg.AssetSpec(REPORT, deps=[DISCLOSURE], group_name="reports",
                     description="Self-contained HTML report for the month: map, rates by IMD quintile, Core20 vs rest, "
                                 "ethnicity, data quality."),
    ],
    partitions_def=MONTHLY,
    can_subset=False,
)
def publish_month(context: dg.AssetExecutionContext, warehouse: Warehouse, serving: ServingOutputs):
    """Copy every gated candidate of the month into `published` in one transaction, then put the audited outputs in place."""
    from pipelines import publish_journal

    evaluations = [record.get_dagster_event().event_specific_data for record in context.instance.all_logs(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    reasons = ungated(evaluations)
    if not any(e.asset_key == DISCLOSURE and e.passed for e in evaluations):
        reasons.append(f"{DISCLOSURE.to_user_string()} has no passing disclosure audit in this run")
    if reasons:
        raise dg.Failure(description="nothing published (the published tables are unchanged): " + "; ".join(reasons))
    month = month_of(context)
    copied, placed = publish_journal.publish_month(warehouse, serving.serving_path(), serving.reports_path(), month,
                                                   keep=serving.keep_snapshots)
    for table in PUBLISHED_TABLES:
        yield dg.MaterializeResult(asset_key=published_key(table), metadata={
            "n_rows": copied[f"published.{table.name}"], "reporting_month": str(month)})
    manifest = placed["manifest"]
    yield dg.MaterializeResult(asset_key=SERVING, metadata={
        "snapshot": manifest["snapshot"], "path": dg.MetadataValue.path(str(serving.serving_path() / "current")),
        "months": len(manifest["months"]), "star_tables": ", ".join(manifest["star_tables"]),
        "parquet_files": len(manifest["parquet_files"]),
    })
    yield dg.MaterializeResult(asset_key=REPORT, metadata={"path": dg.MetadataValue.path(str(placed["report"]))})
