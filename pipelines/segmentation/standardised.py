"""Directly age-standardised rates beside the crude ones, for the indicators where age confounds.

Core20 populations are younger than the rest (DOMAIN.md section 5), so a crude Core20-vs-rest
gap in a measure that changes with age mixes deprivation with age. For the indicators in
`AGE_STANDARDISED` (each with the reason) this table publishes, per breakdown group, the
crude rate and gap (the gap table's own figures) beside the directly standardised rate (DSR)
and its gap:

- Method: PHE / Fingertips DSR (PHEindicatormethods::phe_dsr): the European Standard
  Population 2013 in 19 five-year bands ending 90+ (`stats.ESP2013`), Dobson et al. (1991)
  limits from Byar's limits of the total count, no DSR on fewer than 10 events
  (`stats.dsr_columns`). A proportion is standardised on its own scale (multiplier 1).
- Disclosure: every band count is disclosure-controlled with the month's profile before any
  statistic (DOMAIN.md section 6), and only controlled counts enter the DSR; the published
  counts are the gap table's (already controlled and secondary-suppressed), so the table
  shows no count the gap table does not. A group whose counts the gap table hides shows no
  statistic.
- Comparable standardisation: a band enters the DSRs of a breakdown only when every compared
  group has its controlled numerator and denominator shown there (a hidden small cell cannot
  be read), so all groups of one breakdown are standardised over the same bands
  (`standardised_ages`); the reference group's DSR is therefore comparable with each other's.
- Gap: DSR minus the reference group's DSR; its limits add the two Dobson variances under a
  normal approximation (the usual difference-of-DSRs interval), z the exact quantile.
"""

from __future__ import annotations


import polars as pl

from pipelines.segmentation.disclosure import DisclosureProfile
from pipelines.segmentation.gaps import NOT_COMPARED_GROUPS, _deprivation_groups, _text_group
from pipelines.segmentation.schemas import IMD_VINTAGES, STANDARDISED_TABLE
from pipelines.segmentation.stats import ESP2013, ESP2013_BANDS, _z, dsr_columns

# Indicators standardised, and why age confounds each (the comparison groups' age mix
# differs and the outcome changes with age). Not standardised: the CYP indicators and the
# screening proxies (narrow programme age ranges), and the linked-feed measures.
AGE_STANDARDISED: dict[str, str] = {
    "bp_case_finding": "adults 40+: a BP check in 5 years becomes commoner with age (more contacts, more long-term "
                       "conditions), and Core20 adults 40+ are younger than the rest",
    "hypertension_treated_to_target": "register adults 18+: control and its threshold (150/90 from 80) change with "
                                      "age, and the register's age mix differs by deprivation",
    "lipid_statin": "adults 40+ at raised CVD risk: statin issue rises steeply with age (QRISK rises with age)",
    "smoking_status_recorded": "all adults: recording rises with age (more consultations) and Core20 is younger",
    "copd_flu_vaccination": "COPD register, any age: uptake is higher at 65+ (the age-based programme) and the "
                            "register's age mix differs by deprivation",
    "copd_covid_vaccination": "COPD register, any age: uptake rises with age (age-based autumn campaign eligibility)",
    "copd_pneumococcal_vaccination": "COPD register, any age: pneumococcal vaccine is also offered at 65, so 'ever' "
                                     "rises with age",
    "smi_health_check": "SMI register adults 18+: completion of the six checks varies with age",
}
BREAKDOWNS = ("core20", "imd_quintile", "ethnicity_broad")
STANDARD = "ESP2013"
_KEYS = ["reporting_month", "indicator_id", "indicator_version", "imd_vintage", "breakdown"]


def esp_band(age: pl.Expr) -> pl.Expr:
    """Return the ESP2013 band index (0 = 0-4 ... 18 = 90+) of an age in whole years; null stays null.

    Examples:
        >>> pl.DataFrame({"age": [0, 4, 5, 89, 90, 104, None]}).select(esp_band(pl.col("age")))["age"].to_list()
        [0, 0, 1, 17, 18, 18, None]
    """
    band = pl.min_horizontal(age.cast(pl.Int32) // 5, pl.lit(len(ESP2013) - 1, dtype=pl.Int32))
    return pl.when(age.is_not_null()).then(band)  # min_horizontal would skip a null age


_ROW_COLUMNS = ["reporting_month", "indicator_id", "indicator_version", "is_numerator", "age", "imd2019_decile",
                "imd2025_decile", "ethnicity_broad", "n_patients"]


def standardised_rows(results: pl.LazyFrame, attributes: pl.LazyFrame) -> pl.LazyFrame:
    """Return each denominator patient's indicator row with the attributes the bands need (`n_patients` 1 each)."""
    return results.join(
        attributes.select("reporting_month", "patient_id", "age", "imd2019_decile", "imd2025_decile", "ethnicity_broad")
        .unique(subset=["reporting_month", "patient_id"], keep="first"),
        on=["reporting_month", "patient_id"], how="left",
    ).with_columns(pl.lit(1, dtype=pl.Int64).alias("n_patients")).select(_ROW_COLUMNS)


def standardised_rows_sql(con, results: str, attributes: str, indicators: dict[str, str] | None = None) -> pl.LazyFrame:
    """Return `standardised_rows` aggregated in DuckDB: patients alike in every column the bands read, counted once.

    Arguments:
        con: a DuckDB connection holding the relations (read-only is enough).
        results, attributes: SQL relations with the columns `build_standardised_table` names.
        indicators: the indicators standardised (default `AGE_STANDARDISED`).

    Only a few thousand rows (indicator x age x deciles x broad ethnicity) reach Python.
    """
    from pipelines.segmentation.sql import literal

    chosen = ", ".join(literal(i) for i in (AGE_STANDARDISED if indicators is None else indicators)) or "NULL"
    # Only the patients of the chosen indicators are looked up (measured at 5,000,000 patients:
    # 2.5 s against 3.4 s when every patient's attributes were grouped first).
    sql = f"""
        with chosen as (
            select * from {results} where indicator_id in ({chosen})
        ), people as (
            select reporting_month, patient_id, any_value(age) as age, any_value(imd2019_decile) as imd2019_decile,
                   any_value(imd2025_decile) as imd2025_decile, any_value(ethnicity_broad) as ethnicity_broad
            from {attributes} where patient_id in (select patient_id from chosen) group by reporting_month, patient_id
        )
        select r.reporting_month, r.indicator_id, r.indicator_version, coalesce(r.is_numerator, false) as is_numerator,
               p.age, p.imd2019_decile, p.imd2025_decile, p.ethnicity_broad, count(*) as n_patients
        from chosen r left join people p using (reporting_month, patient_id)
        group by all
    """
    frame = pl.from_arrow(con.sql(sql).to_arrow_table())
    return frame.lazy().with_columns(pl.col("n_patients").cast(pl.Int64)).select(_ROW_COLUMNS)


def _band_counts(rows: pl.LazyFrame, primary_vintage: str) -> pl.DataFrame:
    """Return exact numerator / denominator per indicator, vintage, breakdown, group and ESP band (private)."""
    joined = rows.filter(pl.col("age").is_not_null() & (pl.col("age") >= 0))
    pieces = []
    for vintage, column in (("IMD2019", "imd2019_decile"), ("IMD2025", "imd2025_decile")):
        groups = _deprivation_groups(pl.col(column))
        for breakdown in ("core20", "imd_quintile"):
            pieces.append((vintage, breakdown, groups[breakdown]))
    pieces.append((primary_vintage, "ethnicity_broad", _text_group("ethnicity_broad")))
    weight = pl.col("n_patients")
    frames = [
        joined.group_by("reporting_month", "indicator_id", "indicator_version", label.alias("group"),
                        esp_band(pl.col("age")).alias("band"))
        .agg((pl.col("is_numerator").fill_null(False).cast(pl.Int64) * weight).sum().cast(pl.Int64).alias("x"),
             weight.sum().cast(pl.Int64).alias("n"))
        .with_columns(pl.lit(vintage).alias("imd_vintage"), pl.lit(breakdown).alias("breakdown"))
        for vintage, breakdown, label in pieces
    ]
    return pl.concat(frames, how="diagonal").collect()


def build_standardised_table(
    results: pl.LazyFrame,
    attributes: pl.LazyFrame,
    gap_table: pl.DataFrame,
    profile: DisclosureProfile,
    *,
    primary_vintage: str = "IMD2019",
    confidence: float = 0.95,
    indicators: dict[str, str] | None = None,
    rows: pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """Return the published age-standardised table (`STANDARDISED_TABLE`) for a month.

    Arguments:
        results: one row per denominator patient per indicator (`reporting_month`,
            `patient_id`, `indicator_id`, `indicator_version`, `is_numerator`).
        attributes: `reporting_month`, `patient_id`, `age`, `imd2019_decile`,
            `imd2025_decile`, `ethnicity_broad`.
        gap_table: the month's disclosure-controlled gap table (its crude rows and gaps are
            published beside the DSRs, and hidden rows stay hidden).
        profile: the month's disclosure profile (applied to every band count first).
        primary_vintage: the vintage that labels the ethnicity rows.
        confidence: level of every interval.
        indicators: indicator id -> why it is standardised (default `AGE_STANDARDISED`).
        rows: instead of `results` and `attributes` (then None), the same rows already
            aggregated (`standardised_rows_sql`, as the monthly run makes them in the warehouse).

    Returns:
        A DataFrame with exactly STANDARDISED_TABLE's columns, one row per published crude
        group of the chosen indicators and breakdowns.
    """
    chosen = AGE_STANDARDISED if indicators is None else indicators
    schema = {c.name: c.dtype for c in STANDARDISED_TABLE.columns}
    crude = gap_table.filter(pl.col("indicator_id").is_in(list(chosen)) & pl.col("breakdown").is_in(list(BREAKDOWNS)))
    crude = crude.filter((pl.col("breakdown") != "ethnicity_broad") | (pl.col("imd_vintage") == primary_vintage))
    if crude.is_empty():
        return pl.DataFrame(schema=schema)
    ids = crude["indicator_id"].unique().to_list()
    if rows is None:
        rows = standardised_rows(results, attributes)
    bands = _band_counts(rows.filter(pl.col("indicator_id").is_in(ids)), primary_vintage)
    # Disclosure control on every band count before any statistic.
    bands = bands.with_columns(profile.control("x").alias("x"), profile.control("n").alias("n"))
    compared = ~pl.col("group").str.to_lowercase().is_in(list(NOT_COMPARED_GROUPS))
    usable = pl.col("x").is_not_null() & pl.col("n").is_not_null() & (pl.col("n") > 0)
    n_compared = bands.filter(compared).group_by(_KEYS).agg(pl.col("group").n_unique().alias("_groups"))
    common = (
        bands.filter(compared & usable).group_by(*_KEYS, "band").agg(pl.len().alias("_usable"))
        .join(n_compared, on=_KEYS).filter(pl.col("_usable") == pl.col("_groups")).select(*_KEYS, "band")
    )
    weights = pl.DataFrame({"band": list(range(len(ESP2013))), "w": [float(w) for w in ESP2013]},
                           schema={"band": pl.Int32, "w": pl.Float64})
    used = bands.join(common, on=[*_KEYS, "band"], how="semi").filter(usable).join(weights, on="band").sort([*_KEYS, "group", "band"])
    multipliers = crude.select("indicator_id", "multiplier").unique()
    used = used.join(multipliers, on="indicator_id")
    ratio = pl.col("w") / pl.col("n").cast(pl.Float64)
    per_group = []
    # No band usable anywhere (a small area): the same aggregation over no rows gives the columns, all empty.
    parts = list(used.group_by("multiplier", maintain_order=True)) or [((1,), used.head(0))]
    for (multiplier,), part in parts:
        per_group.append(part.group_by(*_KEYS, "group", maintain_order=True).agg(
            *dsr_columns("x", "n", "w", multiplier=float(multiplier), confidence=confidence),
            ((pl.col("x").cast(pl.Float64) * ratio * ratio).sum() / pl.col("w").sum().pow(2)
             * float(multiplier) ** 2).alias("_variance"),
            pl.col("band").min().alias("_first"), pl.col("band").max().alias("_last"), pl.len().cast(pl.Int32).alias("bands_used"),
        ))
    dsr = pl.concat(per_group)
    band_range = (bands.join(common, on=[*_KEYS, "band"], how="semi").group_by(_KEYS)
                  .agg(pl.col("band").unique().sort().alias("_bands")))

    out = crude.join(dsr.drop("total_count"), on=[*_KEYS, "group"], how="left").join(band_range, on=_KEYS, how="left")
    hidden = pl.col("is_suppressed").fill_null(False) | pl.col("numerator").is_null() | pl.col("denominator").is_null()
    out = out.with_columns(
        pl.when(hidden).then(None).otherwise(pl.col(c)).alias(c) for c in ("dsr", "dsr_lower", "dsr_upper", "_variance")
    )
    reference = out.select(*_KEYS, pl.col("group").alias("reference_group"), pl.col("dsr").alias("_ref_dsr"),
                           pl.col("_variance").alias("_ref_variance"))
    out = out.join(reference, on=[*_KEYS, "reference_group"], how="left")
    z = _z(confidence)
    is_compared = pl.col("reference_group").is_not_null() & (pl.col("group") != pl.col("reference_group")) & compared
    spread = z * (pl.col("_variance") + pl.col("_ref_variance")).sqrt()
    gap = pl.col("dsr") - pl.col("_ref_dsr")
    names = {i: ESP2013_BANDS[i] for i in range(len(ESP2013))}
    ages = pl.col("_bands").list.eval(pl.element().replace_strict(names, return_dtype=pl.String)).list.join(", ")
    out = out.with_columns(
        pl.when(is_compared).then(gap).alias("dsr_gap"),
        pl.when(is_compared).then(gap - spread).alias("dsr_gap_lower"),
        pl.when(is_compared).then(gap + spread).alias("dsr_gap_upper"),
        pl.when(pl.col("_bands").list.len() > 0).then(ages).alias("standardised_ages"),
        pl.col("bands_used").fill_null(0).cast(pl.Int32),
        pl.col("indicator_id").replace_strict(chosen, return_dtype=pl.String).alias("age_confounding"),
        pl.lit(STANDARD).alias("standard_population"),
        pl.lit(float(confidence)).alias("confidence"),
        pl.lit(profile.name).alias("disclosure_profile"),
        pl.when(hidden).then(pl.lit("counts hidden by disclosure control"))
        .when(pl.col("_bands").is_null() | (pl.col("_bands").list.len() == 0))
        .then(pl.lit("no age band has every compared group's counts shown"))
        .when(pl.col("dsr").is_null()).then(pl.lit("fewer than 10 events in the bands used"))
        .otherwise(pl.lit("computed")).alias("status"),
        pl.col("rate").alias("crude_rate"), pl.col("rate_lower").alias("crude_rate_lower"),
        pl.col("rate_upper").alias("crude_rate_upper"), pl.col("gap").alias("crude_gap"),
        pl.col("gap_lower").alias("crude_gap_lower"), pl.col("gap_upper").alias("crude_gap_upper"),
    )
    out = out.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
    order = {v: i for i, v in enumerate(IMD_VINTAGES)}
    return out.sort(["reporting_month", "indicator_id", pl.col("imd_vintage").replace_strict(order, return_dtype=pl.Int32),
                     "breakdown", "group"])
