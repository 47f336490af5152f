"""Population assets: national IMD deciles per patient, then the attributes gaps break down by."""


import dagster as dg
import polars as pl

from assets.cohorts import DEPRIVATION, compiled_inputs, month_of
from assets.staging import EVENTS, MONTH_META, PATIENTS
from pipelines import quality
from pipelines.gates import run_suite
from pipelines.partitions import MONTHLY
from pipelines.resources import ExtractSource, PipelineSettings, ReferenceData, Warehouse
from pipelines.segmentation import cohorts
from pipelines.segmentation.attributes import build_patient_attributes
from pipelines.segmentation.deprivation import attach_deprivation, load_deprivation_reference
from pipelines.segmentation.deprivation_quality import (
    PracticeThresholds,
    deprivation_quality,
    practice_problems,
)
from pipelines.segmentation.extract import load_column_mapping, month_end
from pipelines.segmentation.schemas import MATCH_METHODS

DEPRIVATION_QUALITY = dg.AssetKey(["population", "deprivation_quality"])


@dg.asset(
    key=DEPRIVATION, partitions_def=MONTHLY, metadata=MONTH_META, group_name="population",
    ins={"patients": dg.AssetIn(PATIENTS), "spatial": dg.AssetIn(["reference", "postcode_lsoa21_spatial"])},
    check_specs=[
        dg.AssetCheckSpec("decile_match_rate", asset=DEPRIVATION, blocking=True,
                          description="Share of patients with an English or unmatched address that got a decile."),
        dg.AssetCheckSpec("practice_address_quality", asset=DEPRIVATION, blocking=True,
                          description="No practice has mostly blank or invalid postcodes (a data problem, not a population)."),
        dg.AssetCheckSpec("deprivation_contract", asset=DEPRIVATION, blocking=True,
                          description="expectations/population.patient_deprivation.json"),
    ],
    description="IMD 2019 and IoD 2025 national deciles per patient, with LSOAs, geography and how each was matched.",
)
def patient_deprivation(context: dg.AssetExecutionContext, reference_data: ReferenceData, settings: PipelineSettings,
                        extracts: ExtractSource, warehouse: Warehouse, patients: pl.DataFrame, spatial: pl.DataFrame):
    reference = load_deprivation_reference(reference_data.path(), spatial=spatial)
    vintage = load_column_mapping(extracts.mapping_path()).lsoa_vintage
    frame = attach_deprivation(patients.lazy(), reference, lsoa_vintage=vintage,
                               practice_fallback=settings.practice_fallback).collect()
    methods = {f"{v}:{m}": n for v, col in (("IMD2019", "imd2019_method"), ("IMD2025", "imd2025_method"))
               for m, n in frame.group_by(col).len().sort(col).iter_rows()}
    yield dg.Output(frame, metadata=methods)
    rate = quality.match_rate_outcome(frame, settings.primary_imd_vintage, settings.min_decile_match_rate)
    yield quality.check_result(context, warehouse.file(), DEPRIVATION, "decile_match_rate", rate)
    thresholds = PracticeThresholds(settings.min_practice_address_rate, settings.min_practice_patients)
    by_practice = deprivation_quality(_with_practice(frame, patients), month_of(context))
    practices = quality.practice_address_outcome(by_practice, settings.primary_imd_vintage, thresholds)
    yield quality.check_result(context, warehouse.file(), DEPRIVATION, "practice_address_quality", practices)
    gate = run_suite(frame, "population.patient_deprivation", {"match_methods": list(MATCH_METHODS)})
    yield quality.check_result(context, warehouse.file(), DEPRIVATION, "deprivation_contract", quality.gate_outcome(gate))


def _with_practice(deprivation: pl.DataFrame, patients: pl.DataFrame) -> pl.DataFrame:
    return deprivation.join(patients.select("patient_id", "practice_code"), on="patient_id", how="left")


@dg.asset(
    key=DEPRIVATION_QUALITY, partitions_def=MONTHLY, metadata=MONTH_META, group_name="population",
    ins={"patients": dg.AssetIn(PATIENTS), "deprivation": dg.AssetIn(DEPRIVATION)},
    description="Exact postcode/IMD data quality per month, vintage and practice (private: exact counts).",
)
def deprivation_quality_table(context: dg.AssetExecutionContext, patients: pl.DataFrame,
                              deprivation: pl.DataFrame) -> pl.DataFrame:
    return deprivation_quality(_with_practice(deprivation, patients), month_of(context))


@dg.asset(
    key=["population", "patient_attributes"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="population",
    ins={"patients": dg.AssetIn(PATIENTS), "events": dg.AssetIn(EVENTS), "deprivation": dg.AssetIn(DEPRIVATION)},
    description="One row per patient: deprivation (both vintages), Core20, ethnicity, sex, age, practice, Sub-ICB.",
)
def patient_attributes(context: dg.AssetExecutionContext, reference_data: ReferenceData, settings: PipelineSettings,
                       patients: pl.DataFrame, events: pl.DataFrame, deprivation: pl.DataFrame) -> pl.DataFrame:
    ethnicity = cohorts.derive_ethnicity(events.lazy(), cohorts.load_ethnicity_codes(reference_data.path()),
                                         month_end(month_of(context)))
    return build_patient_attributes(patients.lazy(), deprivation.lazy(), ethnicity,
                                    primary_vintage=settings.primary_imd_vintage).collect()
