"""Per-patient attributes the gap tables break down by: deprivation, ethnicity, sex, age, practice."""

from __future__ import annotations

import polars as pl

from pipelines.segmentation.deprivation import imd_quintile, is_core20

ATTRIBUTE_COLUMNS = (
    "reporting_month", "patient_id", "practice_code", "sex", "age",
    "imd2019_decile", "imd2025_decile", "imd_vintage", "imd_decile", "imd_quintile", "is_core20",
    "ethnic_category", "ethnicity_16", "ethnicity_broad", "sicbl_code", "icb_code",
)


def build_patient_attributes(
    patients: pl.LazyFrame, deprivation: pl.LazyFrame, ethnicity: pl.LazyFrame, *, primary_vintage: str
) -> pl.LazyFrame:
    """Return one row per patient with the breakdown attributes, Core20 on the primary vintage.

    Patients with no ethnicity code keep nulls (the gap table shows them as 'unknown'),
    distinct from those coded 'Not stated' — NHS England asks for both to be reported.

    Arguments:
        patients: staging patients (reporting_month, patient_id, practice_code, sex, age).
        deprivation: `population.patient_deprivation` rows.
        ethnicity: `derive_ethnicity` output (patient_id, ethnic_category, ethnicity_16, ethnicity_broad).
        primary_vintage: "IMD2019" or "IMD2025": the decile Core20 is flagged on.

    Examples:
        >>> import datetime as dt
        >>> m = dt.date(2026, 10, 1)
        >>> p = pl.LazyFrame({"reporting_month": [m, m], "patient_id": ["a", "b"], "practice_code": ["C84001"] * 2,
        ...     "sex": ["F", "M"], "age": [40, 50]})
        >>> d = pl.LazyFrame({"reporting_month": [m, m], "patient_id": ["a", "b"], "imd2019_decile": [2, None],
        ...     "imd2025_decile": [3, 1], "sicbl_code": ["52R", None], "icb_code": ["QT1", None]},
        ...     schema_overrides={"imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8})
        >>> e = pl.LazyFrame({"patient_id": ["a"], "ethnic_category": ["N"], "ethnicity_16": ["Black or Black British - African"],
        ...     "ethnicity_broad": ["Black or Black British"]})
        >>> build_patient_attributes(p, d, e, primary_vintage="IMD2025").select("patient_id", "imd_decile", "is_core20", "ethnicity_broad").sort("patient_id").collect().rows()
        [('a', 3, False, 'Black or Black British'), ('b', 1, True, None)]
    """
    if primary_vintage not in ("IMD2019", "IMD2025"):
        raise ValueError(f"primary_vintage must be 'IMD2019' or 'IMD2025', got {primary_vintage!r}")
    decile = pl.col("imd2019_decile" if primary_vintage == "IMD2019" else "imd2025_decile")
    return (
        patients.select("reporting_month", "patient_id", "practice_code", "sex", "age")
        .join(
            deprivation.select("patient_id", "imd2019_decile", "imd2025_decile", "sicbl_code", "icb_code"),
            on="patient_id", how="left",
        )
        .join(ethnicity, on="patient_id", how="left")
        .with_columns(
            pl.lit(primary_vintage).alias("imd_vintage"),
            decile.alias("imd_decile"),
            imd_quintile(decile).cast(pl.Int8).alias("imd_quintile"),
            is_core20(decile).alias("is_core20"),
        )
        .select(ATTRIBUTE_COLUMNS)
    )


def decile_match_rate(deprivation: pl.DataFrame, vintage: str) -> dict[str, float | int]:
    """Return the share of patients with a usable address who got a decile of `vintage`.

    Patients outside England are not a data failure (IMD covers England only) and blank
    postcodes are reported separately, so the rate is over the rest: English or unmatched
    postcodes, invalid postcodes and supplied LSOAs.

    Examples:
        >>> import polars as pl
        >>> d = pl.DataFrame({"imd2025_decile": [1, None, None, 5], "imd2025_method": ["postcode_lookup", "unmatched", "outside_england", "spatial"]})
        >>> decile_match_rate(d, "IMD2025")
        {'n_with_address': 3, 'n_matched': 2, 'match_rate': 0.6666666666666666, 'n_outside_england': 1, 'n_blank': 0}
    """
    prefix = "imd2019" if vintage == "IMD2019" else "imd2025"
    method = pl.col(f"{prefix}_method")
    counts = deprivation.select(
        (~method.is_in(["outside_england", "blank"])).sum().alias("n_with_address"),
        (pl.col(f"{prefix}_decile").is_not_null() & ~method.is_in(["outside_england", "blank"])).sum().alias("n_matched"),
        (method == "outside_england").sum().alias("n_outside_england"),
        (method == "blank").sum().alias("n_blank"),
    ).row(0, named=True)
    rate = counts["n_matched"] / counts["n_with_address"] if counts["n_with_address"] else 1.0
    return {"n_with_address": counts["n_with_address"], "n_matched": counts["n_matched"], "match_rate": rate,
            "n_outside_england": counts["n_outside_england"], "n_blank": counts["n_blank"]}
