"""The patient model and its selections: registers, cohorts, indicators, attributes and attrition.

One step builds the month's patient model (`population.patient_model`, one row per
patient, every aggregation and flag the definitions use) in ONE DuckDB pass over the
staged events, where they lie, and then selects from it — register and cohort members,
one row per denominator patient per indicator, the breakdown attributes and the attrition
counts. The definitions and codelists are loaded once for all of them.
"""


import dagster as dg
import polars as pl

from assets.population import DEPRIVATION
from assets.staging import EVENTS, FEED_AVAILABILITY, FEED_KEYS, MONTH_META, PATIENTS
from pipelines import quality
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY, month_of
from pipelines.resources import PipelineSettings, Warehouse
from pipelines.segmentation import definitions, lineage
from pipelines.segmentation.cohorts import codelists_from_warehouse
from pipelines.segmentation.extract import month_end
from pipelines.segmentation.patient_model import (
    ModelBuilder,
    ModelSession,
    cohort_membership_sql,
    flag_column,
    patient_attributes_sql,
    patient_indicators_sql,
    register_membership_sql,
)
from pipelines.segmentation.sql import literal, quote
from pipelines.warehouse import unordered, write_frame, write_query

MODEL = dg.AssetKey(["population", "patient_model"])
ATTRIBUTES = dg.AssetKey(["population", "patient_attributes"])
REGISTERS = dg.AssetKey(["cohorts", "register_membership"])
COHORTS = dg.AssetKey(["cohorts", "cohort_membership"])
INDICATORS = dg.AssetKey(["indicators", "patient_indicators"])
ATTRITION = dg.AssetKey(["lineage", "attrition"])

__all__ = ["patient_model", "month_of", "MODEL", "ATTRIBUTES", "REGISTERS", "COHORTS", "INDICATORS", "DEPRIVATION"]


def _out(key: dg.AssetKey, group: str, description: str) -> dg.AssetOut:
    return dg.AssetOut(key=key, metadata=MONTH_META, group_name=group, description=description)


@dg.multi_asset(
    outs={
        "patient_model": _out(MODEL, "population", "One row per patient: every aggregation of the month's events the "
                              "definitions use, the breakdown attributes, and every register, cohort and indicator flag "
                              "(private; made in one pass over the events)."),
        "patient_attributes": _out(ATTRIBUTES, "population", "One row per patient: deprivation (both vintages), Core20, "
                                   "ethnicity, sex, age, practice, Sub-ICB (a selection from the patient model)."),
        "register_membership": _out(REGISTERS, "cohorts", "Patients on each clinical register at month end, with the "
                                    "deciding diagnosis code and date (a selection from the patient model)."),
        "cohort_membership": _out(COHORTS, "cohorts", "Members of each Core20 / PLUS / combined cohort at month end "
                                  "(Core20 on the primary IMD vintage; a selection from the patient model)."),
        "patient_indicators": _out(INDICATORS, "indicators", "One row per denominator patient per indicator, with "
                                   "whether they meet the numerator (private; a selection from the patient model)."),
        "attrition": _out(ATTRITION, "lineage", "Per register, cohort and indicator: patients each rule kept and removed, "
                          "in order (counts only; a selection from the patient model)."),
    },
    ins={"feed_availability": dg.AssetIn(FEED_AVAILABILITY)},
    deps=[PATIENTS, EVENTS, DEPRIVATION, *FEED_KEYS, dg.AssetKey(["reference", "codelists"]),
          dg.AssetKey(["reference", "ethnicity_codes"])],
    partitions_def=MONTHLY,
    check_specs=[dg.AssetCheckSpec("register_prevalence", asset=REGISTERS, blocking=False,
                                   description="expectations/cohorts.register_membership.json (warnings, not blocks)")],
)
def patient_model(context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: Warehouse,
                  feed_availability: pl.DataFrame):
    month = month_of(context)
    present = feed_availability.filter("is_present")["feed"].to_list()
    defs = definitions.load_definitions(settings.definitions_path())
    model = f"(SELECT * FROM population.patient_model WHERE reporting_month = {literal(month)})"
    with warehouse.connect() as con:
        codelists = codelists_from_warehouse(con, defs)
        builder = ModelBuilder(defs, codelists, month_end(month), settings.primary_imd_vintage).plan(feeds_present=present)
        attrition_sql, attrition_specs = lineage.attrition_query(builder, model)
        ethnicity = pl.from_arrow(con.sql("SELECT * FROM reference.ethnicity_codes").to_arrow_table())
        session = ModelSession.in_warehouse(con, month, present, ethnicity)
        written = {}
        with unordered(con):
            # A deprivation or feed table older than a re-staged month is read by patient id, and named in the log.
            queries = session.model_sqls(builder, say=context.log.warning)
            written["patient_model"] = write_query(con, "population", "patient_model", queries,
                                                   partition_column="reporting_month", partition_value=month)
            for name, (schema, table), sql in (
                ("patient_attributes", ("population", "patient_attributes"), patient_attributes_sql(model)),
                ("register_membership", ("cohorts", "register_membership"), register_membership_sql(builder, model)),
                ("cohort_membership", ("cohorts", "cohort_membership"), cohort_membership_sql(builder, model)),
                ("patient_indicators", ("indicators", "patient_indicators"), patient_indicators_sql(builder, model)),
            ):
                written[name] = write_query(con, schema, table, sql, partition_column="reporting_month", partition_value=month)
        counts = con.execute(attrition_sql).fetchall()[0]
        attrition = lineage.attrition_rows(month, dict(zip(["_population", *[f"_s{i}" for i in range(len(attrition_specs))]],
                                                           counts)), attrition_specs)
        write_frame(con, "lineage", "attrition", attrition, partition_column="reporting_month", partition_value=month)
        registers = sorted(defs.registers)
        members = [f"count(*) FILTER (WHERE {quote(flag_column('register', r))})" for r in registers]
        n_members = con.execute(f"SELECT {', '.join(members)} FROM {model}").fetchall()[0] if members else ()
    n_patients = written["patient_model"]
    yield dg.Output(None, output_name="patient_model", metadata={"n_patients": n_patients,
                                                                  "n_columns": len(builder.flags) + len(builder.aggregations)})
    for name in ("patient_attributes", "register_membership", "cohort_membership", "patient_indicators"):
        yield dg.Output(None, output_name=name, metadata={"n_rows": written[name]})
    yield dg.Output(None, output_name="attrition", metadata={"n_rows": attrition.height})
    prevalence = pl.DataFrame({r: [n / n_patients if n_patients else None] for r, n in zip(registers, n_members)},
                              schema={r: pl.Float64 for r in registers})
    outcome = quality.gate_outcome(run_suite(prevalence, "cohorts.register_membership"), severity="WARN")
    yield quality.check_result(context, warehouse, REGISTERS, "register_prevalence", outcome)
