"""Population assets: national IMD deciles per patient, then the attributes gaps break down by."""


import dagster as dg
import polars as pl

from assets.cohorts import DEPRIVATION, compiled_inputs, month_of
from assets.staging import EVENTS, MONTH_META, PATIENTS
from pipelines.partitions import MONTHLY
from pipelines.resources import ExtractSource, PipelineSettings, ReferenceData
from pipelines.segmentation import cohorts
from pipelines.segmentation.attributes import build_patient_attributes, decile_match_rate
from pipelines.segmentation.deprivation import attach_deprivation, load_deprivation_reference
from pipelines.segmentation.deprivation_quality import (
    PracticeThresholds,
    deprivation_quality,
    practice_problems,
    published_quality,
)
from pipelines.segmentation.disclosure import PROFILES
from pipelines.segmentation.extract import load_column_mapping, month_end

DEPRIVATION_QUALITY = dg.AssetKey(["population", "deprivation_quality"])


@dg.asset(
    key=DEPRIVATION, partitions_def=MONTHLY, metadata=MONTH_META, group_name="population",
    ins={"patients": dg.AssetIn(PATIENTS), "spatial": dg.AssetIn(["reference", "postcode_lsoa21_spatial"])},
    check_specs=[
        dg.AssetCheckSpec("decile_match_rate", asset=DEPRIVATION, blocking=True,
                          description="Share of patients with an English or unmatched address that got a decile."),
        dg.AssetCheckSpec("practice_address_quality", asset=DEPRIVATION, blocking=True,
                          description="No practice has mostly blank or invalid postcodes (a data problem, not a population)."),
    ],
    description="IMD 2019 and IoD 2025 national deciles per patient, with LSOAs, geography and how each was matched.",
)
def patient_deprivation(context: dg.AssetExecutionContext, reference_data: ReferenceData, settings: PipelineSettings,
                        extracts: ExtractSource, patients: pl.DataFrame, spatial: pl.DataFrame):
    reference = load_deprivation_reference(reference_data.path(), spatial=spatial)
    vintage = load_column_mapping(extracts.mapping_path()).lsoa_vintage
    frame = attach_deprivation(patients.lazy(), reference, lsoa_vintage=vintage,
                               practice_fallback=settings.practice_fallback).collect()
    methods = {f"{v}:{m}": n for v, col in (("IMD2019", "imd2019_method"), ("IMD2025", "imd2025_method"))
               for m, n in frame.group_by(col).len().sort(col).iter_rows()}
    yield dg.Output(frame, metadata=methods)
    rate = decile_match_rate(frame, settings.primary_imd_vintage)
    yield dg.AssetCheckResult(
        check_name="decile_match_rate", passed=rate["match_rate"] >= settings.min_decile_match_rate,
        metadata={**rate, "threshold": settings.min_decile_match_rate, "summary": (
            f"{rate['match_rate']:.1%} of {rate['n_with_address']} patients with an address got a "
            f"{settings.primary_imd_vintage} decile; the threshold is {settings.min_decile_match_rate:.0%}")},
    )
    thresholds = PracticeThresholds(settings.min_practice_address_rate, settings.min_practice_patients)
    quality = deprivation_quality(_with_practice(frame, patients), month_of(context))
    failing = practice_problems(quality, settings.primary_imd_vintage, thresholds)
    listed = ", ".join(f"{code} ({rate:.0%} of {n})" for code, n, rate in failing.head(10).rows())
    yield dg.AssetCheckResult(
        check_name="practice_address_quality", passed=failing.is_empty(),
        metadata={"n_practices_failing": failing.height, "min_address_rate": thresholds.min_address_rate,
                  "min_patients": thresholds.min_patients, "summary": (
            f"{failing.height} practice(s) with at least {thresholds.min_patients} patients have a usable postcode "
            f"or LSOA for fewer than {thresholds.min_address_rate:.0%} of them" + (f": {listed}" if listed else ""))},
    )


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
    key=["published", "deprivation_quality"], partitions_def=MONTHLY, metadata=MONTH_META, group_name="publish",
    ins={"quality": dg.AssetIn(DEPRIVATION_QUALITY)},
    deps=[dg.AssetKey(["published", "gap_table"])],
    description="Postcode/IMD data quality per month, vintage and practice, counts disclosure-controlled.",
)
def published_deprivation_quality(settings: PipelineSettings, quality: pl.DataFrame) -> pl.DataFrame:
    return published_quality(quality, PROFILES[settings.disclosure_profile])


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
