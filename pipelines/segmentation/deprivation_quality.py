"""Data quality of the postcode -> LSOA -> IMD chain, per month and per practice.

A practice whose postcodes are all blank is a data problem, not a deprived (or affluent)
population, so the shares below are published beside the gap tables and gate the run:

* `match_rate`: of patients with an address the pipeline could use for IMD (everyone except
  'blank' and 'outside_england'), the share that got a national decile. Outside England is
  not a failure (IMD covers England only) and blank is its own figure, so the rate reads
  "when a postcode was recorded, did we find its decile?".
* `share_blank`, `share_invalid`, `share_outside_england`, and a count per match method.
* `address_rate`: the share of patients with a usable address at all (not blank, not
  invalid), used for the per-practice gate.

Counts here are exact (private layer). `published_quality` applies the run's disclosure
profile to every count before the shares are recomputed from the controlled counts, so the
published table never shows a small count that the gap tables would hide.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipelines.segmentation.disclosure import DisclosureProfile, apply_profile
from pipelines.segmentation.schemas import DEPRIVATION_QUALITY, MATCH_METHODS

__all__ = ["deprivation_quality", "published_quality", "practice_problems", "PracticeThresholds"]

ALL_PRACTICES = "ALL"
_NOT_ADDRESS = ("blank", "outside_england")
_UNUSABLE = ("blank", "invalid_postcode")
_VINTAGES = (("IMD2019", "imd2019"), ("IMD2025", "imd2025"))


def _method_counts(method: pl.Expr) -> list[pl.Expr]:
    return [(method == m).sum().cast(pl.Int64).alias(f"n_{m}") for m in MATCH_METHODS]


def _shares() -> list[pl.Expr]:
    def share(numerator: str, denominator: str) -> pl.Expr:
        den = pl.col(denominator)
        return pl.when(den > 0).then(pl.col(numerator) / den).alias(numerator.replace("n_", "share_", 1))

    with_address = pl.col("n_patients") - pl.col("n_blank") - pl.col("n_outside_england")
    return [
        pl.when(with_address > 0).then(pl.col("n_matched") / with_address).alias("match_rate"),
        pl.when(pl.col("n_patients") > 0)
        .then((pl.col("n_patients") - pl.col("n_blank") - pl.col("n_invalid_postcode")) / pl.col("n_patients"))
        .alias("address_rate"),
        share("n_blank", "n_patients"),
        share("n_invalid_postcode", "n_patients"),
        share("n_outside_england", "n_patients"),
    ]


def deprivation_quality(deprivation: pl.DataFrame | pl.LazyFrame, reporting_month) -> pl.DataFrame:
    """Return exact quality figures per IMD vintage, for the month ('ALL') and each practice.

    Arguments:
        deprivation: `population.patient_deprivation` rows joined to `practice_code` (the
            staging patients' practice), one row per patient.
        reporting_month: the month's first day (a `datetime.date`).

    Returns:
        A frame with the `DEPRIVATION_QUALITY` columns, sorted by vintage then practice
        ('ALL' first).

    Examples:
        >>> import datetime as dt
        >>> d = pl.DataFrame({"practice_code": ["A", "A", "B"], "imd2019_decile": [3, None, None],
        ...     "imd2019_method": ["postcode_lookup", "blank", "unmatched"], "imd2025_decile": [4, None, None],
        ...     "imd2025_method": ["postcode_lookup", "blank", "unmatched"]})
        >>> q = deprivation_quality(d, dt.date(2026, 10, 1))
        >>> q.filter(imd_vintage="IMD2025").select("practice_code", "n_patients", "n_matched", "match_rate", "share_blank").rows()
        [('ALL', 3, 1, 0.5, 0.3333333333333333), ('A', 2, 1, 1.0, 0.5), ('B', 1, 0, 0.0, 0.0)]
    """
    frame = deprivation.lazy()
    parts = []
    for label, prefix in _VINTAGES:
        method = pl.col(f"{prefix}_method")
        aggregates = [
            pl.len().cast(pl.Int64).alias("n_patients"),
            (pl.col(f"{prefix}_decile").is_not_null() & ~method.is_in(_NOT_ADDRESS)).sum().cast(pl.Int64).alias("n_matched"),
            *_method_counts(method),
        ]
        overall = frame.select(pl.lit(ALL_PRACTICES).alias("practice_code"), *aggregates)
        per_practice = frame.group_by("practice_code").agg(*aggregates)
        parts.append(
            pl.concat([overall, per_practice.sort("practice_code")]).with_columns(pl.lit(label).alias("imd_vintage"))
        )
    return (
        pl.concat(parts)
        .with_columns(pl.lit(reporting_month).cast(pl.Date).alias("reporting_month"), *_shares())
        .select(DEPRIVATION_QUALITY.names)
        .cast(DEPRIVATION_QUALITY.schema)
        .collect()
    )


def published_quality(quality: pl.DataFrame, profile: DisclosureProfile) -> pl.DataFrame:
    """Return the quality table with every count disclosure-controlled and shares recomputed.

    A share is null where a count it needs was suppressed.

    Examples:
        >>> import datetime as dt
        >>> from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5
        >>> d = pl.DataFrame({"practice_code": ["A"] * 23, "imd2019_decile": [3] * 20 + [None] * 3,
        ...     "imd2019_method": ["postcode_lookup"] * 20 + ["blank"] * 3, "imd2025_decile": [4] * 20 + [None] * 3,
        ...     "imd2025_method": ["postcode_lookup"] * 20 + ["blank"] * 3})
        >>> q = published_quality(deprivation_quality(d, dt.date(2026, 10, 1)), NHS_SUPPRESS_ROUND5)
        >>> q.filter(imd_vintage="IMD2019", practice_code="A").select("n_patients", "n_matched", "n_blank", "share_blank", "match_rate").rows()
        [(25, 20, None, None, None)]
    """
    counts = [c for c in DEPRIVATION_QUALITY.names if c.startswith("n_")]
    controlled = apply_profile(quality, counts, profile).drop("is_suppressed")
    return controlled.with_columns(*_shares()).select(DEPRIVATION_QUALITY.names).cast(DEPRIVATION_QUALITY.schema)


def controlled_quality(quality: pl.DataFrame, profile: DisclosureProfile, hidden: dict[str, list[bool]]) -> pl.DataFrame:
    """Return the quality table with counts controlled, the given counts hidden, shares recomputed.

    Arguments:
        quality: exact `deprivation_quality` rows.
        profile: the disclosure profile (rounding of the visible counts).
        hidden: count column -> per row, whether secondary suppression hid it
            (`month_disclosure.protect_month` decides, jointly with the gap table).
    """
    hidden_value = pl.lit(None, pl.Int64) if profile.small_count_action != "redact" else pl.lit(0, pl.Int64)
    masks = [pl.Series(f"_hide_{c}", flags, dtype=pl.Boolean) for c, flags in hidden.items()]
    controlled = quality.with_columns(masks).with_columns(
        [pl.when(pl.col(f"_hide_{c}")).then(hidden_value).otherwise(profile.control(c)).alias(c) for c in hidden]
    )
    if profile.small_count_action == "redact":
        # A redacted count shows as 0 but is unknown: no share is computed from it.
        controlled = controlled.with_columns([pl.when(~pl.col(f"_hide_{c}")).then(pl.col(c)).alias(c) for c in hidden])
    controlled = controlled.with_columns(*_shares())
    if profile.small_count_action == "redact":
        controlled = controlled.with_columns(
            [pl.when(pl.col(f"_hide_{c}")).then(pl.lit(0, pl.Int64)).otherwise(pl.col(c)).alias(c) for c in hidden])
    return controlled.select(DEPRIVATION_QUALITY.names).cast(DEPRIVATION_QUALITY.schema)


@dataclass(frozen=True)
class PracticeThresholds:
    """When a practice's address data is too poor to trust its patients' deciles.

    Attributes:
        min_address_rate: a practice fails when fewer than this share of its patients have a
            usable postcode or LSOA (not blank, not invalid). 0 switches the check off.
        min_patients: practices with fewer patients are not judged (too few to say).
    """

    min_address_rate: float = 0.5
    min_patients: int = 50


def practice_problems(quality: pl.DataFrame, vintage: str, thresholds: PracticeThresholds) -> pl.DataFrame:
    """Return the practices failing `thresholds` (practice_code, n_patients, address_rate).

    Practice codes are organisations, not patients, so naming them in a gate message is safe.

    Examples:
        >>> import datetime as dt
        >>> d = pl.DataFrame({"practice_code": ["A"] * 60 + ["B"] * 60, "imd2019_decile": [None] * 120,
        ...     "imd2019_method": ["blank"] * 60 + ["unmatched"] * 60, "imd2025_decile": [None] * 120,
        ...     "imd2025_method": ["blank"] * 60 + ["unmatched"] * 60})
        >>> practice_problems(deprivation_quality(d, dt.date(2026, 10, 1)), "IMD2025", PracticeThresholds()).rows()
        [('A', 60, 0.0)]
    """
    return (
        quality.filter(
            (pl.col("imd_vintage") == vintage)
            & (pl.col("practice_code") != ALL_PRACTICES)
            & (pl.col("n_patients") >= thresholds.min_patients)
            & (pl.col("address_rate") < thresholds.min_address_rate)
        )
        .select("practice_code", "n_patients", "address_rate")
        .sort("practice_code")
    )
