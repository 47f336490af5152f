"""Gap tables: built into the `audit` schema, gated, then published (write-audit-publish).

The candidate table for a month is written to `audit.gap_table`; its blocking suite
(expectations/audit.gap_table.json) runs on exactly what was written. Only when it passes
does `published.gap_table` replace that month's rows, in one transaction, so a blocked
run leaves the published table as it was.
"""


import dagster as dg
import polars as pl

from assets.cohorts import month_of
from assets.staging import MONTH_META
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY
from pipelines.resources import PipelineSettings
from pipelines.segmentation.disclosure import PROFILES, unpublishable_counts
from pipelines.segmentation.gaps import build_gap_table

AUDIT_GAPS = dg.AssetKey(["audit", "gap_table"])


@dg.asset(
    key=AUDIT_GAPS, partitions_def=MONTHLY, metadata=MONTH_META, group_name="gaps",
    ins={
        "results": dg.AssetIn(["indicators", "patient_indicators"]),
        "attributes": dg.AssetIn(["population", "patient_attributes"]),
        "catalogue": dg.AssetIn(["indicators", "indicator_catalogue"]),
    },
    check_specs=[dg.AssetCheckSpec("published_invariants", asset=AUDIT_GAPS, blocking=True,
                                   description="expectations/audit.gap_table.json")],
    description="Candidate gap table for the month (disclosure-controlled aggregates), awaiting its gate.",
)
def audit_gap_table(context: dg.AssetExecutionContext, settings: PipelineSettings, results: pl.DataFrame,
                    attributes: pl.DataFrame, catalogue: pl.DataFrame):
    profile = PROFILES[settings.disclosure_profile]
    table = build_gap_table(
        results.lazy(), attributes.lazy(), catalogue, profile=profile,
        primary_vintage=settings.primary_imd_vintage,
    )
    yield dg.Output(table, metadata={"n_rows": table.height, "disclosure_profile": settings.disclosure_profile})
    gate = run_suite(table, "audit.gap_table", {"unpublishable_counts": unpublishable_counts(profile)})
    yield dg.AssetCheckResult(check_name="published_invariants", passed=gate.success,
                              metadata={**gate.metadata(), "summary": gate.summary()})


@dg.asset(
    key=["published", "gap_table"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="publish",
    ins={"candidate": dg.AssetIn(AUDIT_GAPS)},
    description="Published gap table: one row per month x indicator x IMD vintage x breakdown x group.",
)
def published_gap_table(context: dg.AssetExecutionContext, candidate: pl.DataFrame) -> dg.Output:
    return dg.Output(candidate, metadata={"n_rows": candidate.height, "reporting_month": str(month_of(context))})


@dg.asset(
    key=["published", "indicator_catalogue"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="publish",
    ins={"catalogue": dg.AssetIn(["indicators", "indicator_catalogue"])},
    deps=[dg.AssetKey(["published", "gap_table"])],
    description="Which definition version and hash produced each month's published figures.",
)
def published_indicator_catalogue(catalogue: pl.DataFrame) -> pl.DataFrame:
    return catalogue
