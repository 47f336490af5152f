"""Gap tables, inequality indices and SPC charts: each month's candidates, built into `audit` and gated.

Each candidate table is written to the `audit` schema; its blocking suite
(expectations/audit.<table>.json) runs on exactly what was written. The publish step
(`assets/publish.py`) then copies every gated candidate of the month into `published`
in one transaction, and only when every gate passed (write-audit-publish). Indices and
charts are therefore computed from the month's candidate gap table, not from the published
one: nothing reaches `published` before the whole month has passed its gates.
"""


import dagster as dg
import polars as pl

from assets.cohorts import month_of
from assets.staging import MONTH_META
from pipelines import quality
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY
from pipelines.resources import PipelineSettings, Warehouse
from pipelines.segmentation.disclosure import PROFILES, unpublishable_counts
from pipelines.segmentation.gaps import build_inequality_table, gap_counts_sql, gap_table_from_counts
from pipelines.segmentation.month_disclosure import population_memberships
from pipelines.segmentation.populations import membership_representatives
from pipelines.segmentation.sql import literal
from pipelines.segmentation.cohorts import drop_by_construction, published_intersections, reported_cohorts
from pipelines.segmentation.definitions import load_definitions
from pipelines.segmentation.spc import build_spc_table, indicator_series_plans
from pipelines.segmentation.standardised import build_standardised_table, standardised_rows_sql
from pipelines.warehouse import quote, table_exists

AUDIT_GAPS = dg.AssetKey(["audit", "gap_table"])
AUDIT_DEPRIVATION_QUALITY = dg.AssetKey(["audit", "deprivation_quality"])
AUDIT_INEQUALITY = dg.AssetKey(["audit", "inequality_table"])
AUDIT_SPC = dg.AssetKey(["audit", "spc_series"])
AUDIT_STANDARDISED = dg.AssetKey(["audit", "age_standardised_rates"])
GATE = "published_invariants"


def _gate(context, warehouse: Warehouse, key: dg.AssetKey, table: pl.DataFrame, params: dict | None = None,
          suite: str | None = None):
    outcome = quality.gate_outcome(run_suite(table, suite or f"audit.{key.path[-1]}", params))
    return quality.check_result(context, warehouse, key, GATE, outcome)


def _check(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(GATE, asset=key, blocking=True, description=f"expectations/audit.{key.path[-1]}.json")]


_GAP_INPUTS = {
    "catalogue": dg.AssetIn(["indicators", "indicator_catalogue"]),
    "cohort_catalogue": dg.AssetIn(["cohorts", "cohort_catalogue"]),
    "exact_quality": dg.AssetIn(["population", "deprivation_quality"]),
}
# Patient-level inputs: counted in the warehouse (one GROUP BY), never loaded into Python.
PATIENT_LEVEL = {
    "results": ("indicators", "patient_indicators"),
    "attributes": ("population", "patient_attributes"),
    "cohorts": ("cohorts", "cohort_membership"),
    "deprivation": ("population", "patient_deprivation"),
}


@dg.multi_asset(
    name="audit_gap_table",
    outs={
        "gap_table": dg.AssetOut(key=AUDIT_GAPS, metadata=MONTH_META, group_name="gaps",
                                 description="Candidate gap table for the month (disclosure-controlled aggregates), awaiting its gate."),
        "deprivation_quality": dg.AssetOut(
            key=AUDIT_DEPRIVATION_QUALITY, metadata=MONTH_META, group_name="gaps",
            description="Candidate postcode/IMD data quality per month, vintage and practice, counts disclosure-controlled "
                        "together with the gap table."),
        "age_standardised_rates": dg.AssetOut(
            key=AUDIT_STANDARDISED, metadata=MONTH_META, group_name="gaps",
            description="Candidate directly age-standardised rates (ESP2013, Dobson) beside the crude rates of the "
                        "gap table, from disclosure-controlled band counts, awaiting its gate."),
    },
    ins=_GAP_INPUTS,
    deps=[dg.AssetKey(list(key)) for key in PATIENT_LEVEL.values()],
    check_specs=_check(AUDIT_GAPS) + _check(AUDIT_DEPRIVATION_QUALITY) + _check(AUDIT_STANDARDISED),
    partitions_def=MONTHLY,
    can_subset=False,
)
def audit_gap_table(context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: Warehouse,
                    catalogue: pl.DataFrame, cohort_catalogue: pl.DataFrame, exact_quality: pl.DataFrame):
    """Both candidates from one suppression: a reader holds both tables, so they are protected together.

    The month's patient-level tables stay in the warehouse: DuckDB counts every group of the
    gap table in one pass (`gap_counts_sql`) and picks one patient per distinct pattern of
    published populations (`membership_representatives`); only those reach Python.
    """
    from pipelines.releases import earlier_releases, forced_hidden, write_candidate

    profile = PROFILES[settings.disclosure_profile]
    month = month_of(context)
    figures: dict = {}
    relation = {name: f"(select * from {quote(schema)}.{quote(table)} where reporting_month = {literal(month)})"
                for name, (schema, table) in PATIENT_LEVEL.items()}
    # The cohorts the ICS reports by (`reported_cohorts`), read from the month's small catalogue.
    reported = reported_cohorts(cohort_catalogue.select("cohort_id"), cohort_catalogue)["cohort_id"].unique().sort()
    reported_sql = ", ".join(literal(c) for c in reported) or "NULL"
    cohorts = f"(select * from {relation['cohorts']} where cohort_id in ({reported_sql}))"
    # Core20 x age band rows, and a reported cohort's reporting focus (e.g. the worked
    # example's Black African and Black Caribbean patients) as the cohort x its focus breakdown.
    defs = load_definitions(settings.definitions_path())
    intersections = published_intersections(defs, pl.DataFrame({"cohort_id": reported}, schema={"cohort_id": pl.String}))
    with warehouse.connect(read_only=True) as con:
        # Earlier releases of this month a reader may still hold: this one is suppressed consistently with them.
        earlier = earlier_releases(con, month)
        # Units a check outside the month decided must be hidden (an ICB re-run after its month's
        # national release: `national.context`); none in an ICS's own month.
        forced = forced_hidden(con, month)
        counted = gap_counts_sql(con, relation["results"], relation["attributes"], cohorts, intersections=intersections,
                                 primary_vintage=settings.primary_imd_vintage)
        results, deprivation = membership_representatives(con, relation["results"], relation["deprivation"])
        # Age-band counts of the age-standardised indicators, aggregated in the warehouse.
        band_rows = standardised_rows_sql(con, relation["results"], relation["attributes"])
    memberships = population_memberships(results.lazy(), deprivation.lazy())
    table = gap_table_from_counts(
        counted.counts, counted.hierarchy, catalogue, profile=profile, primary_vintage=settings.primary_imd_vintage,
        emitted=counted.emitted, memberships=memberships, quality=exact_quality, audit_stats=figures,
        reliability_threshold=settings.reliability_threshold, earlier=earlier, hidden=forced,
    )
    # Indicator x cohort comparisons that the cohort's own definition decides are not published.
    table, by_construction = drop_by_construction(table, defs)
    for dropped in by_construction:
        context.log.info(f"not published (true by construction): {dropped['indicator_id']} x {dropped['cohort_id']}: "
                         f"{dropped['reason']}")
    quality_table = figures.pop("quality")
    release = figures.pop("release", None)
    if release is not None:
        with warehouse.connect() as con:
            write_candidate(con, month, *release)
    metadata = {"disclosure_profile": settings.disclosure_profile, "n_units_hidden_by_a_check_outside_the_month": len(forced),
                **{f"suppression_{k}": (round(v, 3) if isinstance(v, float) else v) for k, v in figures.items()}}
    yield dg.Output(table, output_name="gap_table",
                    metadata={"n_rows": table.height, "n_suppressed": int(table["is_suppressed"].sum()),
                              "not_published_by_construction": ", ".join(f"{d['indicator_id']} x {d['cohort_id']}"
                                                                         for d in by_construction) or "none",
                              **metadata})
    yield dg.Output(quality_table, output_name="deprivation_quality",
                    metadata={"n_rows": quality_table.height, **metadata})
    # Age-standardised rates beside the crude ones, from controlled band counts and the
    # controlled gap table only (pipelines/segmentation/standardised.py).
    standardised = build_standardised_table(None, None, table, profile, primary_vintage=settings.primary_imd_vintage,
                                            rows=band_rows)
    yield dg.Output(standardised, output_name="age_standardised_rates",
                    metadata={"n_rows": standardised.height, "n_computed": int((standardised["status"] == "computed").sum())})
    unpublishable = {"unpublishable_counts": unpublishable_counts(profile)}
    yield _gate(context, warehouse, AUDIT_GAPS, table, unpublishable)
    yield _gate(context, warehouse, AUDIT_DEPRIVATION_QUALITY, quality_table, unpublishable, suite="audit.deprivation_quality")
    yield _gate(context, warehouse, AUDIT_STANDARDISED, standardised, unpublishable)


@dg.asset(
    key=AUDIT_INEQUALITY, partitions_def=MONTHLY, metadata=MONTH_META, group_name="gaps",
    ins={"gaps": dg.AssetIn(AUDIT_GAPS)}, check_specs=_check(AUDIT_INEQUALITY),
    description="Candidate SII/RII per indicator, IMD vintage and quantile type, with seed and draws, awaiting its gate.",
)
def audit_inequality_table(context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: Warehouse,
                           gaps: pl.DataFrame):
    table = build_inequality_table(gaps, base_seed=settings.sii_seed, repetitions=settings.sii_repetitions,
                                   transform=settings.sii_transform)
    yield dg.Output(table, metadata={"n_rows": table.height, "repetitions": settings.sii_repetitions,
                                     "base_seed": settings.sii_seed})
    yield _gate(context, warehouse, AUDIT_INEQUALITY, table)


@dg.asset(
    key=AUDIT_SPC, partitions_def=MONTHLY, metadata=MONTH_META, group_name="gaps",
    ins={"catalogue": dg.AssetIn(["indicators", "indicator_catalogue"]), "gaps": dg.AssetIn(AUDIT_GAPS)},
    check_specs=_check(AUDIT_SPC),
    description="Candidate XmR (Making Data Count) charts: the published monthly rates before this month, then this month's candidate.",
)
def audit_spc_series(context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: Warehouse,
                     catalogue: pl.DataFrame, gaps: pl.DataFrame):
    month = month_of(context)
    history = [gaps]
    with warehouse.connect() as con:
        if table_exists(con, "published", "gap_table"):
            target = f"{quote('published')}.{quote('gap_table')}"
            relation = con.sql(f"select * from {target} where reporting_month < $1", params=[month])
            history.insert(0, pl.from_arrow(relation.to_arrow_table()))
    plans = indicator_series_plans(load_definitions(settings.definitions_path()), settings.spc_window_policy)
    table = build_spc_table(pl.concat(history, how="diagonal_relaxed"), catalogue, month, plans=plans,
                            rules=settings.spc_rules())
    yield dg.Output(table, metadata={"n_rows": table.height, "rules": str(settings.spc_rules()._asdict()),
                                     "window_policy": settings.spc_window_policy})
    yield _gate(context, warehouse, AUDIT_SPC, table)
