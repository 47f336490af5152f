"""The inequality-table builder as literal tables: published quintile rows -> SII/RII rows.

Five IMD quintiles of 100 people each (ranks 0.1 ... 0.9), odds of the outcome doubling
from quintile to quintile: rates 0.2, 1/3, 0.5, 2/3, 0.8. The figures are worked by hand in
tests/unit/test_sii_worked.py:

- fit on the proportions (transform off): SII = 23/30 = 0.766667, RII = 53/7 = 7.571429;
- fit on the logits and back-transformed (transform on): SII = (4 sqrt2 - 1)/(4 sqrt2 + 1)
  = 0.699558, RII = 4 sqrt2 = 5.656854.

Only quintile 5 is uncertain in the first table: its published 95% limits are
expit(ln 4 -/+ 1.959964 x 0.25) = 0.710189, 0.867184 (lower and upper equal the rate
elsewhere), so its standard error on the logit scale is exactly 0.25 and the SII's limits
are 23/30 + (0.710189 - 0.8) and 23/30 + (0.867184 - 0.8): 0.676856 and 0.833851. A builder
that read the standard error on the proportion scale instead ((0.867184 - 0.710189) / 3.919928
= 0.0401) would put them at 0.766667 -/+ 0.0785 -- a symmetric interval, which this test refuses.
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from pipelines.segmentation.gaps import build_inequality_table
from pipelines.segmentation.stats import sii_polarity
from tests.spec.literal import table

SCHEMA = {
    "reporting_month": pl.Date, "indicator_id": pl.String, "indicator_version": pl.Int32, "clinical_area": pl.String,
    "direction": pl.String, "imd_vintage": pl.String, "breakdown": pl.String, "group": pl.String,
    "denominator": pl.Int64, "rate": pl.Float64, "rate_lower": pl.Float64, "rate_upper": pl.Float64,
    "disclosure_profile": pl.String,
}

QUINTILES = """
reporting_month | indicator_id | indicator_version | clinical_area | direction        | imd_vintage | breakdown    | group   | denominator | rate               | rate_lower         | rate_upper         | disclosure_profile
2026-03-01      | x            | 1                 | SMI           | higher_is_better | IMD2025     | imd_quintile | 1       | 100         | 0.2                | 0.2                | 0.2                | none
2026-03-01      | x            | 1                 | SMI           | higher_is_better | IMD2025     | imd_quintile | 2       | 100         | 0.3333333333333333 | 0.3333333333333333 | 0.3333333333333333 | none
2026-03-01      | x            | 1                 | SMI           | higher_is_better | IMD2025     | imd_quintile | 3       | 100         | 0.5                | 0.5                | 0.5                | none
2026-03-01      | x            | 1                 | SMI           | higher_is_better | IMD2025     | imd_quintile | 4       | 100         | 0.6666666666666666 | 0.6666666666666666 | 0.6666666666666666 | none
2026-03-01      | x            | 1                 | SMI           | higher_is_better | IMD2025     | imd_quintile | 5       | 100         | 0.8                | {lower5}           | {upper5}           | none
2026-03-01      | x            | 1                 | SMI           | higher_is_better | IMD2025     | imd_quintile | unknown | 12          | 0.5                | 0.2                | 0.8                | none
"""


def expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


Z = 1.959963984540054
LOWER5, UPPER5 = expit(math.log(4) - Z * 0.25), expit(math.log(4) + Z * 0.25)


def quintiles(**changes) -> pl.DataFrame:
    frame = table(QUINTILES.format(lower5=LOWER5, upper5=UPPER5), SCHEMA)
    for column, (group, value) in changes.items():
        frame = frame.with_columns(pl.when(pl.col("group") == group).then(pl.lit(value)).otherwise(pl.col(column))
                                   .cast(SCHEMA[column]).alias(column))
    return frame


def test_proportions_fitted_as_they_are_with_standard_errors_on_the_logit_scale():
    out = build_inequality_table(quintiles(), repetitions=200_000).row(0, named=True)
    assert (out["status"], out["n_quantiles"], out["population"]) == ("computed", 5, 500)  # 'unknown' left out
    assert (out["value_type"], out["transform"], out["multiplier"]) == ("proportion", False, 1.0)
    assert out["sii"] == pytest.approx(23 / 30, rel=1e-12) and out["rii"] == pytest.approx(53 / 7, rel=1e-12)
    assert (round(LOWER5, 6), round(UPPER5, 6)) == (0.710189, 0.867184)
    # Limits: 23/30 + (0.710189 - 0.8) = 0.676856 and 23/30 + (0.867184 - 0.8) = 0.833851, to
    # 4 SDs of the order statistic at 200,000 draws: 4 x p(1-p) x 2.671 x 0.25 / sqrt(200,000),
    # at most 0.0013 (p = 0.71).
    assert out["sii_lower"] == pytest.approx(23 / 30 + LOWER5 - 0.8, abs=1.3e-3)
    assert out["sii_upper"] == pytest.approx(23 / 30 + UPPER5 - 0.8, abs=1.3e-3)
    assert out["sii_polarity"] == sii_polarity("higher_is_better", 1)


def test_transform_fits_on_the_logit_scale_and_back_transforms():
    out = build_inequality_table(quintiles(), repetitions=1000, transform=True).row(0, named=True)
    assert out["transform"] is True
    assert out["sii"] == pytest.approx((4 * math.sqrt(2) - 1) / (4 * math.sqrt(2) + 1), rel=1e-12)
    assert out["rii"] == pytest.approx(4 * math.sqrt(2), rel=1e-12)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        # A suppressed quantile (no published rate): as before.
        ({"rate": ("3", None), "rate_lower": ("3", None), "rate_upper": ("3", None)},
         "not computed: 4 of 5 quantiles have a published rate"),
        # 0 of 100 people: the Wilson lower limit is 0, logit(0) does not exist.
        ({"rate": ("1", 0.0), "rate_lower": ("1", 0.0), "rate_upper": ("1", 0.037)},
         "not computed: 1 of 5 quantiles has a limit at 0% or 100%, which the logit scale of the PHE method cannot take"),
        # 100 of 100: the upper limit is 1.
        ({"rate": ("5", 1.0), "rate_lower": ("5", 0.963), "rate_upper": ("5", 1.0)},
         "not computed: 1 of 5 quantiles has a limit at 0% or 100%, which the logit scale of the PHE method cannot take"),
    ],
)
def test_an_index_the_method_cannot_compute_says_why(changes, status):
    out = build_inequality_table(quintiles(**changes), repetitions=1000).row(0, named=True)
    assert out["status"] == status
    assert out["sii"] is None and out["rii"] is None and out["sii_polarity"] is not None


def test_a_rate_value_type_takes_its_standard_errors_on_the_log_scale():
    # With value_type 'rate' the same limits are read on the log scale: quintile 5's se is
    # (ln 0.867184 - ln 0.710189) / (2 x 1.959964) = 0.199712 / 3.919928 = 0.050950, and a draw of 0.8 exp(eps)
    # moves the slope by 0.8 (exp(eps) - 1): limits 23/30 + 0.8 (exp(-/+ 1.959964 x 0.050950) - 1)
    # = 0.690638 and 0.850679.
    rate_se = (math.log(UPPER5) - math.log(LOWER5)) / (2 * Z)
    assert rate_se == pytest.approx(0.050950, abs=1e-6)
    out = build_inequality_table(quintiles().with_columns(pl.lit("rate").alias("value_type")),
                                 repetitions=200_000).row(0, named=True)
    assert out["value_type"] == "rate" and out["sii"] == pytest.approx(23 / 30, rel=1e-12)
    # 4 SDs of the order statistic: 4 x 0.8 x 1.1 x 2.671 x 0.05095 / sqrt(200,000) < 0.0011.
    assert out["sii_lower"] == pytest.approx(23 / 30 + 0.8 * (math.exp(-Z * rate_se) - 1), abs=1.1e-3)
    assert out["sii_upper"] == pytest.approx(23 / 30 + 0.8 * (math.exp(Z * rate_se) - 1), abs=1.1e-3)


def test_transform_is_for_rates_and_proportions_only():
    # PHE refuses transform = TRUE for a 'normal' value: such an indicator is fitted as it is
    # and its row records transform false, while the proportions beside it are transformed.
    normal = quintiles().with_columns(pl.lit("normal").alias("value_type"), pl.lit("y").alias("indicator_id"))
    both = pl.concat([quintiles().with_columns(pl.lit("proportion").alias("value_type")), normal])
    out = {r["indicator_id"]: r for r in build_inequality_table(both, repetitions=1000, transform=True).iter_rows(named=True)}
    assert (out["x"]["transform"], out["y"]["transform"]) == (True, False)
    assert out["y"]["sii"] == pytest.approx(23 / 30, rel=1e-12)  # the untransformed fit
    assert out["x"]["sii"] == pytest.approx((4 * math.sqrt(2) - 1) / (4 * math.sqrt(2) + 1), rel=1e-12)
