"""Gap tables, inequality indices and SPC charts: built into `audit`, gated, then published.

Each month's candidate table is written to the `audit` schema; its blocking suite
(expectations/audit.<table>.json) runs on exactly what was written. Only when it passes
does the `published` table replace that month's rows, in one transaction, so a blocked
run leaves the published tables as they were (write-audit-publish).
"""


import dagster as dg
import polars as pl

from assets.cohorts import month_of
from assets.staging import MONTH_META
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY
from pipelines.resources import PipelineSettings, Warehouse
from pipelines.segmentation.disclosure import PROFILES, unpublishable_counts
from pipelines.segmentation.gaps import build_gap_table, build_inequality_table
from pipelines.segmentation.spc import build_spc_table
from pipelines.warehouse import connect, quote, table_exists

AUDIT_GAPS = dg.AssetKey(["audit", "gap_table"])
PUBLISHED_GAPS = dg.AssetKey(["published", "gap_table"])
AUDIT_INEQUALITY = dg.AssetKey(["audit", "inequality_table"])
AUDIT_SPC = dg.AssetKey(["audit", "spc_series"])


def _gate(table: pl.DataFrame, suite: str, params: dict | None = None) -> dg.AssetCheckResult:
    gate = run_suite(table, suite, params)
    return dg.AssetCheckResult(check_name="published_invariants", passed=gate.success,
                               metadata={**gate.metadata(), "summary": gate.summary()})


def _check(key: dg.AssetKey, suite: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec("published_invariants", asset=key, blocking=True, description=f"expectations/{suite}.json")]


@dg.asset(
    key=AUDIT_GAPS, partitions_def=MONTHLY, metadata=MONTH_META, group_name="gaps",
    ins={
        "results": dg.AssetIn(["indicators", "patient_indicators"]),
        "attributes": dg.AssetIn(["population", "patient_attributes"]),
        "catalogue": dg.AssetIn(["indicators", "indicator_catalogue"]),
        "cohorts": dg.AssetIn(["cohorts", "cohort_membership"]),
    },
    check_specs=_check(AUDIT_GAPS, "audit.gap_table"),
    description="Candidate gap table for the month (disclosure-controlled aggregates), awaiting its gate.",
)
def audit_gap_table(context: dg.AssetExecutionContext, settings: PipelineSettings, results: pl.DataFrame,
                    attributes: pl.DataFrame, catalogue: pl.DataFrame, cohorts: pl.DataFrame):
    profile = PROFILES[settings.disclosure_profile]
    table = build_gap_table(
        results.lazy(), attributes.lazy(), catalogue, cohorts=cohorts.lazy(), profile=profile,
        primary_vintage=settings.primary_imd_vintage,
    )
    yield dg.Output(table, metadata={"n_rows": table.height, "n_suppressed": int(table["is_suppressed"].sum()),
                                     "disclosure_profile": settings.disclosure_profile})
    yield _gate(table, "audit.gap_table", {"unpublishable_counts": unpublishable_counts(profile)})


@dg.asset(
    key=PUBLISHED_GAPS, partitions_def=MONTHLY, metadata=MONTH_META, group_name="publish",
    ins={"candidate": dg.AssetIn(AUDIT_GAPS)},
    description="Published gap table: one row per month x indicator x IMD vintage x breakdown x group.",
)
def published_gap_table(context: dg.AssetExecutionContext, candidate: pl.DataFrame) -> dg.Output:
    return dg.Output(candidate, metadata={"n_rows": candidate.height, "reporting_month": str(month_of(context))})


@dg.asset(
    key=AUDIT_INEQUALITY, partitions_def=MONTHLY, metadata=MONTH_META, group_name="gaps",
    ins={"gaps": dg.AssetIn(PUBLISHED_GAPS)},
    check_specs=_check(AUDIT_INEQUALITY, "audit.inequality_table"),
    description="Candidate SII/RII per indicator, IMD vintage and quantile type, with seed and draws, awaiting its gate.",
)
def audit_inequality_table(context: dg.AssetExecutionContext, settings: PipelineSettings, gaps: pl.DataFrame):
    table = build_inequality_table(gaps, base_seed=settings.sii_seed, repetitions=settings.sii_repetitions,
                                   transform=settings.sii_transform)
    yield dg.Output(table, metadata={"n_rows": table.height, "repetitions": settings.sii_repetitions,
                                     "base_seed": settings.sii_seed})
    yield _gate(table, "audit.inequality_table")


@dg.asset(
    key=["published", "inequality_table"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="publish",
    ins={"candidate": dg.AssetIn(AUDIT_INEQUALITY)},
    description="Published slope and relative indices of inequality (PHE method) per indicator and month.",
)
def published_inequality_table(candidate: pl.DataFrame) -> pl.DataFrame:
    return candidate


@dg.asset(
    key=AUDIT_SPC, partitions_def=MONTHLY, metadata=MONTH_META, group_name="gaps",
    ins={"catalogue": dg.AssetIn(["indicators", "indicator_catalogue"])},
    deps=[PUBLISHED_GAPS], check_specs=_check(AUDIT_SPC, "audit.spc_series"),
    description="Candidate XmR (Making Data Count) charts of the published monthly rates up to this month.",
)
def audit_spc_series(context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: Warehouse,
                     catalogue: pl.DataFrame):
    month = month_of(context)
    with connect(warehouse.file(), read_only=True) as con:
        if not table_exists(con, "published", "gap_table"):
            raise dg.DagsterInvariantViolationError("published.gap_table is not in the warehouse; publish a month first")
        target = f"{quote('published')}.{quote('gap_table')}"
        relation = con.sql(f"select * from {target} where reporting_month <= $1", params=[month])
        history = pl.from_arrow(relation.to_arrow_table())
    table = build_spc_table(history, catalogue, month, run_length=settings.spc_run_length)
    yield dg.Output(table, metadata={"n_rows": table.height, "run_length": settings.spc_run_length})
    yield _gate(table, "audit.spc_series")


@dg.asset(
    key=["published", "spc_series"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="publish",
    ins={"candidate": dg.AssetIn(AUDIT_SPC)},
    description="Published XmR chart points, limits, special-cause flags and variation/assurance icons.",
)
def published_spc_series(candidate: pl.DataFrame) -> pl.DataFrame:
    return candidate


@dg.asset(
    key=["published", "indicator_catalogue"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="publish",
    ins={"catalogue": dg.AssetIn(["indicators", "indicator_catalogue"])},
    deps=[PUBLISHED_GAPS],
    description="Which definition version and hash produced each month's published figures.",
)
def published_indicator_catalogue(catalogue: pl.DataFrame) -> pl.DataFrame:
    return catalogue
