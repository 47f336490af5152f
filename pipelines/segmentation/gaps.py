"""Build the published gap table: rates by group, and gaps against a named reference group.

One function, `build_gap_table`, turns patient-level indicator results (private layer) into
the aggregate `GAP_TABLE` contract (published layer). The order of work follows DOMAIN.md
sections 5 and 6:

1. count numerator and denominator per month x indicator x group (one scan of the
   patient-level rows, then cheap re-aggregation per breakdown);
2. apply the disclosure profile to those counts;
3. only then compute rates (Wilson), gaps against the reference group (Newcombe hybrid
   score, method 10), rate ratios and the direction-aware comparison.

Breakdowns and their reference groups (`REFERENCE_GROUPS`; fixed labels rather than "the
largest group", so a gap means the same thing every month and for every indicator):

- `imd_decile`: '1'..'10' (national decile, 1 = most deprived); reference '10'.
- `imd_quintile`: '1'..'5' = ceil(decile / 2); reference '5' (least deprived).
- `core20`: 'core20' (national decile 1-2) or 'rest'; reference 'rest'.
- `ethnicity_broad`: the broad group as supplied; reference 'White'.
- `sex`: 'F', 'M', 'I'; reference 'F', so the sex gap reads "male minus female"
  (the NHS/ONS convention of females as the comparator in sex breakdowns); 'U'
  (unknown / not recorded) is the 'unknown' group.
- `age_band`: '0-17', '18-39', '40-59', '60-79', '80+'; reference '40-59', a middle
  adult band chosen so no band is compared against an extreme of the age range. For
  children-only indicators the reference is absent and gaps are null ('not compared').
- `overall`: the single group 'all'; compared to nothing.

Deprivation breakdowns are emitted once per IMD vintage (IMD2019 from `imd2019_decile`,
IMD2025 from `imd2025_decile`). Breakdowns that do not depend on deprivation are emitted
once, labelled with `primary_vintage` (default "IMD2019"), to avoid publishing identical
rows twice.

Missing values (null decile, null ethnicity, sex 'U', null age, or a patient with no
attributes row) form their own group 'unknown': missingness is itself an output (DOMAIN.md
section 1). 'unknown' and 'not stated' groups are compared to nothing.

Only groups that occur in the data get a row; an absent reference group leaves its
breakdown's gaps null.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import polars as pl

from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5, DisclosureProfile, apply_profile
from pipelines.segmentation.schemas import GAP_TABLE, IMD_VINTAGES
from pipelines.segmentation.stats import newcombe_columns, wilson_columns

UNKNOWN = "unknown"

BREAKDOWNS: tuple[str, ...] = (
    "overall",
    "imd_decile",
    "imd_quintile",
    "core20",
    "ethnicity_broad",
    "sex",
    "age_band",
)

DEPRIVATION_BREAKDOWNS = ("imd_decile", "imd_quintile", "core20")

REFERENCE_GROUPS: dict[str, str | None] = {
    "overall": None,
    "imd_decile": "10",
    "imd_quintile": "5",
    "core20": "rest",
    "ethnicity_broad": "White",
    "sex": "F",
    "age_band": "40-59",
}

# Group labels that describe missing data: reported, never compared (lower-cased match).
NOT_COMPARED_GROUPS = frozenset({UNKNOWN, "not stated", "not_stated", "not known"})

# Upper age (inclusive) of each band but the last; the last band is open ("80+").
AGE_BANDS: tuple[tuple[str, int], ...] = (("0-17", 17), ("18-39", 39), ("40-59", 59), ("60-79", 79))
AGE_BAND_OPEN = "80+"

_DECILE_COLUMNS = {"IMD2019": "imd2019_decile", "IMD2025": "imd2025_decile"}
_KEYS = ["reporting_month", "indicator_id", "indicator_version"]


def _deprivation_groups(decile: pl.Expr) -> dict[str, pl.Expr]:
    """Return the group label expressions derived from a national IMD decile."""
    d = decile.cast(pl.Int32)
    quintile = (d + 1) // 2  # ceil(decile / 2) for deciles 1..10
    return {
        "imd_decile": d.cast(pl.String).fill_null(UNKNOWN),
        "imd_quintile": quintile.cast(pl.String).fill_null(UNKNOWN),
        "core20": pl.when(d.is_null()).then(pl.lit(UNKNOWN)).when(d <= 2).then(pl.lit("core20")).otherwise(pl.lit("rest")),
    }


def _age_band(age: pl.Expr) -> pl.Expr:
    expr = pl.when(age.is_null() | (age < 0)).then(pl.lit(UNKNOWN))
    for label, upper in AGE_BANDS:
        expr = expr.when(age <= upper).then(pl.lit(label))
    return expr.otherwise(pl.lit(AGE_BAND_OPEN))


def _check_columns(frame: pl.LazyFrame | pl.DataFrame, required: Sequence[str], what: str) -> None:
    names = set(frame.collect_schema().names())
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f"build_gap_table: {what} is missing columns {missing}")


def build_gap_table(
    indicator_results: pl.LazyFrame,
    attributes: pl.LazyFrame,
    catalogue: pl.DataFrame,
    *,
    profile: DisclosureProfile = NHS_SUPPRESS_ROUND5,
    confidence: float = 0.95,
    breakdowns: Sequence[str] | None = None,
    primary_vintage: str = "IMD2019",
    reference_groups: Mapping[str, str | None] | None = None,
) -> pl.DataFrame:
    """Return the published gap table (the `GAP_TABLE` contract) for indicator results.

    Arguments:
        indicator_results: one row per denominator patient per indicator, with
            `reporting_month`, `patient_id`, `indicator_id`, `indicator_version`,
            `is_numerator`.
        attributes: one row per patient per month, with `reporting_month`, `patient_id`,
            `imd2019_decile`, `imd2025_decile`, `sex`, `age`, `ethnicity_broad`.
            A denominator patient with no attributes row falls in every 'unknown' group.
        catalogue: `indicator_id`, `indicator_version`, `clinical_area`, `direction`
            ('higher_is_better' or 'lower_is_better'); other columns are ignored.
        profile: disclosure-control profile applied to the counts before any statistic.
        confidence: confidence level of the rate and gap intervals.
        breakdowns: which of `BREAKDOWNS` to produce (default: all).
        primary_vintage: IMD vintage that labels the breakdowns not based on deprivation.
        reference_groups: overrides of `REFERENCE_GROUPS`, by breakdown.

    Returns:
        A DataFrame with exactly `GAP_TABLE`'s columns, dtypes and order, sorted by month,
        indicator, vintage, breakdown (in `BREAKDOWNS` order) and group (numeric groups
        numerically, 'unknown' last).

    Raises:
        ValueError: for an unknown breakdown or vintage, missing input columns, or an
            indicator (id and version) that is not in the catalogue.

    Examples:
        >>> import datetime as dt
        >>> import polars as pl
        >>> month = dt.date(2026, 1, 1)
        >>> results = pl.LazyFrame({"reporting_month": [month] * 3, "patient_id": ["a", "b", "c"],
        ...     "indicator_id": ["smi_phc"] * 3, "indicator_version": [1, 1, 1],
        ...     "is_numerator": [True, False, True]}, schema_overrides={"indicator_version": pl.Int32})
        >>> people = pl.LazyFrame({"reporting_month": [month] * 3, "patient_id": ["a", "b", "c"],
        ...     "imd2019_decile": [1, 10, None], "imd2025_decile": [1, 9, 2], "sex": ["F", "M", "F"],
        ...     "age": [30, 45, 70], "ethnicity_broad": ["White", None, "Asian"], "practice_code": ["C84001"] * 3},
        ...     schema_overrides={"imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8, "age": pl.Int32})
        >>> catalogue = pl.DataFrame({"indicator_id": ["smi_phc"], "indicator_version": [1],
        ...     "clinical_area": ["SMI"], "direction": ["higher_is_better"]})
        >>> table = build_gap_table(results, people, catalogue, breakdowns=["overall", "core20"])
        >>> table.select("imd_vintage", "breakdown", "group", "denominator", "is_suppressed", "comparison").rows()
        [('IMD2019', 'overall', 'all', None, True, 'not compared'), ('IMD2019', 'core20', 'core20', None, True, 'not compared'), ('IMD2019', 'core20', 'rest', None, True, 'not compared'), ('IMD2019', 'core20', 'unknown', None, True, 'not compared'), ('IMD2025', 'core20', 'core20', None, True, 'not compared'), ('IMD2025', 'core20', 'rest', None, True, 'not compared')]
    """
    chosen = list(BREAKDOWNS) if breakdowns is None else list(dict.fromkeys(breakdowns))
    if not chosen:
        raise ValueError(f"breakdowns must name at least one of {list(BREAKDOWNS)} (or be None for all)")
    unknown_breakdowns = [b for b in chosen if b not in BREAKDOWNS]
    if unknown_breakdowns:
        raise ValueError(f"breakdowns {unknown_breakdowns} are not known; choose from {list(BREAKDOWNS)}")
    if primary_vintage not in IMD_VINTAGES:
        raise ValueError(f"primary_vintage must be one of {list(IMD_VINTAGES)}; got {primary_vintage!r}")
    references = {**REFERENCE_GROUPS, **(reference_groups or {})}

    _check_columns(indicator_results, ["reporting_month", "patient_id", *_KEYS[1:], "is_numerator"], "indicator_results")
    _check_columns(
        attributes,
        ["reporting_month", "patient_id", "imd2019_decile", "imd2025_decile", "sex", "age", "ethnicity_broad"],
        "attributes",
    )
    _check_columns(catalogue, [*_KEYS[1:], "clinical_area", "direction"], "catalogue")
    bad_direction = catalogue.filter(~pl.col("direction").is_in(["higher_is_better", "lower_is_better"]))
    if bad_direction.height:
        raise ValueError(
            "catalogue direction must be 'higher_is_better' or 'lower_is_better'; indicators "
            f"{sorted(bad_direction['indicator_id'].unique().to_list())} have another value"
        )

    # Every (vintage, breakdown) pair to emit, with the column holding its group label.
    pairs: list[tuple[str, str, str]] = []
    for breakdown in chosen:
        if breakdown in DEPRIVATION_BREAKDOWNS:
            pairs += [(vintage, breakdown, f"{vintage}__{breakdown}") for vintage in IMD_VINTAGES]
        else:
            pairs.append((primary_vintage, breakdown, f"__{breakdown}"))

    group_exprs: dict[str, pl.Expr] = {}
    for vintage, column in _DECILE_COLUMNS.items():
        for breakdown, expr in _deprivation_groups(pl.col(column)).items():
            group_exprs[f"{vintage}__{breakdown}"] = expr
    sex = pl.col("sex").str.strip_chars().str.to_uppercase()
    ethnicity = pl.col("ethnicity_broad").str.strip_chars()
    group_exprs["__overall"] = pl.lit("all")
    group_exprs["__ethnicity_broad"] = pl.when(ethnicity.is_null() | (ethnicity == "")).then(pl.lit(UNKNOWN)).otherwise(ethnicity)
    group_exprs["__sex"] = pl.when(sex.is_null() | (sex == "U") | (sex == "")).then(pl.lit(UNKNOWN)).otherwise(sex)
    group_exprs["__age_band"] = _age_band(pl.col("age"))
    group_columns = list(dict.fromkeys(column for _, _, column in pairs))

    # Step 1: one pass over patient-level rows to the finest cross-tabulation needed.
    # A left join keeps denominator patients without attributes (they become 'unknown').
    attribute_rows = attributes.select(
        "reporting_month", "patient_id", "imd2019_decile", "imd2025_decile", "sex", "age", "ethnicity_broad"
    ).unique(subset=["reporting_month", "patient_id"], keep="first")
    cells = (
        indicator_results.select("reporting_month", "patient_id", *_KEYS[1:], "is_numerator")
        .join(attribute_rows, on=["reporting_month", "patient_id"], how="left")
        .select(*_KEYS, "is_numerator", *[group_exprs[c].alias(c) for c in group_columns])
        .group_by(*_KEYS, *group_columns)
        .agg(
            pl.col("is_numerator").fill_null(False).sum().cast(pl.Int64).alias("numerator"),
            pl.len().cast(pl.Int64).alias("denominator"),
        )
        .collect()
    )
    pieces = [
        cells.group_by(*_KEYS, pl.col(column).alias("group"))
        .agg(pl.col("numerator").sum(), pl.col("denominator").sum())
        .with_columns(pl.lit(vintage).alias("imd_vintage"), pl.lit(breakdown).alias("breakdown"))
        .select(*_KEYS, "imd_vintage", "breakdown", "group", "numerator", "denominator")
        for vintage, breakdown, column in pairs
    ]
    counts = pl.concat(pieces)

    # Step 2: disclosure control on the counts, before any statistic.
    controlled = apply_profile(counts, ["numerator", "denominator"], profile)

    # Step 3: rates from controlled counts; a row with a suppressed count gets no rate.
    controlled = controlled.with_columns(
        [pl.when(~pl.col("is_suppressed")).then(e).alias(name) for e, name in zip(
            wilson_columns("numerator", "denominator", confidence), ["rate", "rate_lower", "rate_upper"]
        )]
    )
    reference_frame = pl.DataFrame(
        {"breakdown": list(references), "reference_group": list(references.values())},
        schema={"breakdown": pl.String, "reference_group": pl.String},
    )
    reference_rows = controlled.select(
        *_KEYS,
        "imd_vintage",
        "breakdown",
        pl.col("group").alias("reference_group"),
        pl.col("numerator").alias("reference_numerator"),
        pl.col("denominator").alias("reference_denominator"),
        pl.col("rate").alias("reference_rate"),
        pl.col("is_suppressed").alias("reference_is_suppressed"),
    )
    is_missing_group = pl.col("group").str.to_lowercase().is_in(list(NOT_COMPARED_GROUPS))
    is_reference = pl.col("group") == pl.col("reference_group")
    compared = (
        controlled.join(reference_frame, on="breakdown", how="left")
        .with_columns(pl.when(~is_missing_group).then(pl.col("reference_group")).alias("reference_group"))
        .join(reference_rows, on=[*_KEYS, "imd_vintage", "breakdown", "reference_group"], how="left")
    )
    can_compare = (
        pl.col("reference_group").is_not_null()
        & ~is_reference
        & ~pl.col("is_suppressed")
        & ~pl.col("reference_is_suppressed").fill_null(True)
    )
    gap_exprs = newcombe_columns("numerator", "denominator", "reference_numerator", "reference_denominator", confidence)
    compared = compared.with_columns(
        *[pl.when(can_compare).then(e).alias(name) for e, name in zip(gap_exprs, ["gap", "gap_lower", "gap_upper"])],
        # A zero reference rate has no ratio (not infinity).
        pl.when(can_compare & (pl.col("reference_rate") > 0)).then(pl.col("rate") / pl.col("reference_rate")).alias("rate_ratio"),
    )

    # Direction-aware comparison: significant when the gap interval excludes 0.
    catalogue_rows = catalogue.select(
        pl.col("indicator_id").cast(pl.String),
        pl.col("indicator_version").cast(pl.Int32),
        pl.col("clinical_area").cast(pl.String),
        pl.col("direction").cast(pl.String),
    ).unique(subset=["indicator_id", "indicator_version"], keep="first")
    compared = compared.with_columns(pl.col("indicator_version").cast(pl.Int32)).join(
        catalogue_rows, on=["indicator_id", "indicator_version"], how="left"
    )
    uncatalogued = compared.filter(pl.col("direction").is_null()).select("indicator_id", "indicator_version").unique()
    if uncatalogued.height:
        raise ValueError(f"indicators not in the catalogue (id, version): {sorted(uncatalogued.rows())}")
    higher_is_better = pl.col("direction") == "higher_is_better"
    comparison = (
        pl.when(pl.col("is_suppressed") | pl.col("reference_group").is_null())
        .then(pl.lit("not compared"))
        .when(is_reference)
        .then(pl.lit("reference"))
        .when(pl.col("gap_lower").is_null() | pl.col("gap_upper").is_null())
        .then(pl.lit("not compared"))
        .when(pl.col("gap_lower") > 0)
        .then(pl.when(higher_is_better).then(pl.lit("better")).otherwise(pl.lit("worse")))
        .when(pl.col("gap_upper") < 0)
        .then(pl.when(higher_is_better).then(pl.lit("worse")).otherwise(pl.lit("better")))
        .otherwise(pl.lit("similar"))
    )
    breakdown_order = pl.col("breakdown").replace_strict(
        {b: i for i, b in enumerate(BREAKDOWNS)}, return_dtype=pl.Int32
    )
    return (
        compared.with_columns(comparison.alias("comparison"), pl.lit(profile.name).alias("disclosure_profile"))
        .sort(
            "reporting_month",
            "indicator_id",
            "indicator_version",
            "imd_vintage",
            breakdown_order,
            pl.col("group") == UNKNOWN,
            pl.col("group").cast(pl.Int64, strict=False),
            "group",
            nulls_last=True,
        )
        .select([pl.col(c.name).cast(c.dtype) for c in GAP_TABLE.columns])
    )
