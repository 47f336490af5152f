"""Population: national IMD deciles per patient and their exact data quality.

The published candidate of the data quality is made with the gap table (assets/gaps.py): a
reader holds both, so they are disclosure-controlled together.

The reference tables come from the warehouse (`reference.*`, loaded once per reference
version by the reference job), cut down in DuckDB to the postcodes the month's patients
have: no reference file is read from disk in a monthly run.
"""


import dagster as dg
import polars as pl

from assets.staging import MONTH_META, PATIENTS
from pipelines import quality
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY, month_of
from pipelines.resources import ExtractSource, PipelineSettings, Warehouse
from pipelines.segmentation.deprivation import attach_deprivation, deprivation_reference_from_warehouse
from pipelines.segmentation.deprivation_quality import PracticeThresholds, deprivation_quality
from pipelines.segmentation.extract import load_column_mapping
from pipelines.segmentation.schemas import MATCH_METHODS
from pipelines.segmentation.sql import literal

DEPRIVATION = dg.AssetKey(["population", "patient_deprivation"])
DEPRIVATION_QUALITY = dg.AssetKey(["population", "deprivation_quality"])
REFERENCE_TABLES = ("imd2019_lsoa11", "imd2025_lsoa21", "lsoa11_lsoa21", "lsoa21_geography", "lsoa11_geography",
                    "gp_practices", "postcode_lsoa11", "postcode_lsoa21_spatial", "outside_england")


@dg.multi_asset(
    outs={
        "patient_deprivation": dg.AssetOut(
            key=DEPRIVATION, metadata=MONTH_META,
            description="IMD 2019 and IoD 2025 national deciles per patient, with LSOAs, geography and how each was matched."),
        "deprivation_quality": dg.AssetOut(
            key=DEPRIVATION_QUALITY, metadata=MONTH_META,
            description="Exact postcode/IMD data quality per month, vintage and practice (private: exact counts)."),
    },
    deps=[PATIENTS, *[dg.AssetKey(["reference", t]) for t in REFERENCE_TABLES]],
    partitions_def=MONTHLY,
    group_name="population",
    check_specs=[
        dg.AssetCheckSpec("decile_match_rate", asset=DEPRIVATION, blocking=True,
                          description="Share of patients with an English or unmatched address that got a decile."),
        dg.AssetCheckSpec("practice_address_quality", asset=DEPRIVATION, blocking=True,
                          description="No practice has mostly blank or invalid postcodes (a data problem, not a population)."),
        dg.AssetCheckSpec("deprivation_contract", asset=DEPRIVATION, blocking=True,
                          description="expectations/population.patient_deprivation.json"),
    ],
)
def patient_deprivation(context: dg.AssetExecutionContext, settings: PipelineSettings, extracts: ExtractSource,
                        warehouse: Warehouse):
    month = month_of(context)
    patients_sql = ("(SELECT reporting_month, patient_id, patient_key, practice_code, postcode, postcode_status, "
                    f"lsoa_code_supplied FROM staging.patients WHERE reporting_month = {literal(month)})")
    with warehouse.connect() as con:
        patients = pl.from_arrow(con.sql(f"SELECT * FROM {patients_sql}").to_arrow_table())
        reference = deprivation_reference_from_warehouse(con, patients_sql)
    vintage = load_column_mapping(extracts.mapping_path()).lsoa_vintage
    frame = attach_deprivation(patients.lazy(), reference, lsoa_vintage=vintage,
                               practice_fallback=settings.practice_fallback).collect()
    by_practice = deprivation_quality(frame.join(patients.select("patient_id", "practice_code"), on="patient_id", how="left"),
                                      month)
    methods = {f"{v}:{m}": n for v, col in (("IMD2019", "imd2019_method"), ("IMD2025", "imd2025_method"))
               for m, n in frame.group_by(col).len().sort(col).iter_rows()}
    # Stored with the patients' keys, in their order (attach_deprivation keeps its input's rows
    # in order, and staging writes the patients in key order): a slice of the patient model
    # reads its patients' rows by a key range (`patient_model.Sources.keyed`).
    yield dg.Output(frame.with_columns(patients["patient_key"]), output_name="patient_deprivation", metadata=methods)
    yield dg.Output(by_practice, output_name="deprivation_quality", metadata={"n_rows": by_practice.height})
    rate = quality.match_rate_outcome(frame, settings.primary_imd_vintage, settings.min_decile_match_rate)
    yield quality.check_result(context, warehouse, DEPRIVATION, "decile_match_rate", rate)
    thresholds = PracticeThresholds(settings.min_practice_address_rate, settings.min_practice_patients)
    practices = quality.practice_address_outcome(by_practice, settings.primary_imd_vintage, thresholds)
    yield quality.check_result(context, warehouse, DEPRIVATION, "practice_address_quality", practices)
    gate = run_suite(frame, "population.patient_deprivation", {"match_methods": list(MATCH_METHODS)})
    yield quality.check_result(context, warehouse, DEPRIVATION, "deprivation_contract", quality.gate_outcome(gate))
