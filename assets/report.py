"""Report asset: the month's self-contained HTML report, written after the month publishes."""


import dagster as dg

from assets.cohorts import month_of
from pipelines.partitions import MONTHLY
from pipelines.resources import ReferenceData, ServingOutputs, Warehouse

REPORT = dg.AssetKey(["reports", "monthly_report"])


def build_report_asset(published: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """Return the monthly report asset, downstream of the given published assets."""

    @dg.asset(
        key=REPORT, partitions_def=MONTHLY, group_name="reports", deps=published,
        description="Self-contained HTML report for the month: map, rates by IMD quintile, Core20 vs rest, ethnicity, data quality.",
    )
    def monthly_report(context: dg.AssetExecutionContext, warehouse: Warehouse, serving: ServingOutputs,
                       reference_data: ReferenceData):
        from pipelines.report.page import write_report

        path, summary = write_report(warehouse.file(), month_of(context), reference_data.path(), serving.reports_path())
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path)), "indicators": summary["indicators"],
                                              "map_lsoas": summary["map_lsoas"], "map_practices": summary["map_practices"]})

    return monthly_report
