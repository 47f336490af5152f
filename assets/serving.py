"""Serving assets: after a month publishes, a new read-only snapshot for BI, swapped in atomically.

The asset depends on every `published` asset (passed in by build_definitions), so it runs
only when the month passed its gates and published; a blocked month leaves the current
snapshot as it was.
"""


import dagster as dg

from pipelines.partitions import MONTHLY
from pipelines.resources import ServingOutputs, Warehouse
from pipelines.serving import publish_snapshot

SERVING = dg.AssetKey(["serving", "snapshot"])


def build_serving_asset(published: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """Return the serving snapshot asset, downstream of the given published assets."""

    @dg.asset(
        key=SERVING, partitions_def=MONTHLY, group_name="serving", deps=published,
        description="Read-only serving DuckDB file, star schema, Parquet export and Power BI Project, replaced atomically.",
    )
    def serving_snapshot(context: dg.AssetExecutionContext, warehouse: Warehouse, serving: ServingOutputs):
        manifest = publish_snapshot(warehouse.file(), serving.serving_path(), keep=serving.keep_snapshots,
                                    powerbi_parquet_folder=serving.powerbi_folder())
        return dg.MaterializeResult(metadata={
            "snapshot": manifest["snapshot"], "path": dg.MetadataValue.path(str(serving.serving_path() / "current")),
            "months": len(manifest["months"]), "star_tables": ", ".join(manifest["star_tables"]),
            "parquet_files": len(manifest["parquet_files"]),
        })

    return serving_snapshot
