"""The published gap tables recover the generator's injected gaps (issue 5's last done-when).

A generated extract (60,000 patients) runs through `core20 run` (in this process).
For every indicator whose outcome the generator draws with a known probability p_i, its
ground truth gives the expected gap of each Core20 (IMD 2019) and broad-ethnicity group
against the gap table's reference group ('rest', 'White'): the difference of the groups'
mean p_i, the gap expected given this sample's covariates, as a difference of proportions
like the table's `gap`. Each is looked up in the *published*, disclosure-controlled table.
Hidden rows cannot be checked: they are counted, and a minimum must be visible; the Core20
gaps of the large indicators must be visible unless a group of the Core20 breakdown has a
count of 1-7 (core20 + rest = overall then forces a headline complement). 'rest' is everyone
not in Core20, patients without a national decile included, as the gap table defines it.

What a correct pipeline shows, and how often it fails anyway, for any seed:

1. Exact (never fails by chance): every published count is the disclosure profile's value
   of the true count, and the published gap and interval are `stats.newcombe_difference`
   of the published counts - the interval comes from the controlled counts.
2. Coverage: a 95% interval misses its true gap by chance, and more often than 5% here
   because it is computed from counts rounded to 5. Counted are the gaps whose numerators
   both lie above the suppressed 1-7 with probability over 0.99 (`is_reliably_visible`):
   for them, being visible changes a miss probability by at most a factor 1/0.98, whereas
   a small cell visible only because its draw reached 8 is selected on its outcome and
   misses far more often; visible gaps that are not counted still get checks 1 and 3.
   `scripts/gap_coverage.py` simulates this design (binomial draws from the ground truth's
   expected rates, the profile's suppression and rounding, Newcombe intervals from the
   controlled counts) and measured an average per-gap miss probability of 0.062-0.072 at
   95% and 0.0038-0.0053 at 99.8% (60,000 patients, seeds 31-33, 4,000 draws each);
   MISS_95 = 0.09 and MISS_998 = 0.01 bound these with room. For independent gaps whose
   average miss probability is at most p, the number of misses exceeds k no more often
   than Binomial(N, p) does for k >= Np (Hoeffding 1956, Ann. Math. Statist. 27:713,
   Theorem 4), so at most k misses are allowed, k the least with
   P(Binomial(N, p) > k) < 1e-3: once at 95% (the published intervals) and once at 99.8%
   (recomputed from the published counts with stats.py).
3. Direction: a gap whose expected value exceeds 4 standard deviations of its estimate
   plus the largest shift rounding can cause has the injected sign in the published
   table; each such check fails by chance with probability under 3.2e-5 (normal
   approximation; such gaps have hundreds of patients per group).

So a correct pipeline fails this file by chance with probability under about 2.5e-3, for
any seed. Independence is an approximation: the gaps of one indicator share patients
(Core20 and ethnicity) and a reference group. A per-patient simulation that kept those
dependencies gave a tail of the total misses like the binomial's at the same mean, and
`scripts/gap_coverage.py` (shared reference draws) failed neither criterion in 4,000 draws.
`CORE20_GAP_RECOVERY_SEED` runs the file with another seed (default 31).
"""

import datetime as dt
import math
import os

import polars as pl
import pytest

from pipeline_helpers import core20_in_process
from pipelines.segmentation.disclosure import get_profile
from pipelines.segmentation.stats import newcombe_difference
from pipelines.synthetic import generate_extract
from pipelines.warehouse import connect, read_table

pytestmark = pytest.mark.reference

MONTH = dt.date(2026, 10, 1)
N_PATIENTS = 60_000
SEED = int(os.environ.get("CORE20_GAP_RECOVERY_SEED", "31"))
# Bounds on the average per-gap miss probability (measured: see the module docstring).
MISS_95, MISS_998 = 0.09, 0.01
TAIL = 1e-3
DIRECTION_Z = 4.0
SUPPRESSION_Z = 2.33  # P(Z < -2.33) < 0.01
# Fewer visible gaps than this means disclosure control hides what the table is for.
MIN_CHECKED = 34
MIN_COUNTED = 28  # of which reliably visible (the coverage count)
# Core20 gaps whose groups both have at least this many patients, and this many expected in
# the numerator, must be visible, unless a group of the breakdown has a count of 1-7:
# core20 + rest = overall then forces a headline complement.
LARGE, LARGE_NUMERATOR = 1000, 100


def max_misses(n: int, p: float, tail: float = TAIL) -> int:
    """Return the least k with P(Binomial(n, p) > k) < tail."""
    below = 0.0
    for k in range(n + 1):
        below += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if 1.0 - below < tail:
            return k
    return n


def is_reliably_visible(group: dict) -> bool:
    """Return whether a group's numerator falls in the suppressed 1-7 with chance under 1e-3.

    Only such gaps enter the coverage count: a small cell that is visible because its draw
    happened to reach 8 is selected on its outcome, and its interval is biased away from
    the truth (scripts/gap_coverage.py shows such cells missing most of the time).
    """
    return expected_numerator(group) - SUPPRESSION_Z * group["expected_numerator_sd"] >= 8


def difference(row: dict, confidence: float) -> tuple[float, float, float]:
    """Return (gap, lower, upper) from a published row's counts, on the indicator's scale.

    A proportion: Newcombe's hybrid score interval. A rate of events per population: the
    difference of the two rates per multiplier, its limits by MOVER (Zou & Donner 2008) from
    each rate's Byar / exact Poisson limits.
    """
    if row["value_type"] != "rate":
        return tuple(newcombe_difference(row["numerator"], row["denominator"], row["reference_numerator"],
                                         row["reference_denominator"], confidence=confidence))
    from pipelines.segmentation.stats import rate_interval

    r, lo, hi = rate_interval(row["numerator"], row["denominator"], multiplier=row["multiplier"], confidence=confidence)
    r0, lo0, hi0 = rate_interval(row["reference_numerator"], row["reference_denominator"], multiplier=row["multiplier"],
                                 confidence=confidence)
    gap = r - r0
    return gap, gap - ((r - lo) ** 2 + (hi0 - r0) ** 2) ** 0.5, gap + ((hi - r) ** 2 + (r0 - lo0) ** 2) ** 0.5


def expected_numerator(group: dict) -> float:
    """Return a group's expected numerator (0 for an empty group)."""
    return group["expected_rate"] * group["n_denominator"] if group["n_denominator"] else 0.0


def truth_gaps(truth: dict) -> pl.DataFrame:
    """Return one row per injected gap: where the gap table shows it and its expected value."""
    rows = []
    for indicator_id, entry in truth["indicators"].items():
        for breakdown, table in entry.get("breakdowns", {}).items():
            reference = table["groups"][table["reference_group"]]
            small = sum(1 for g in table["groups"].values()
                        if 1 <= g["realised_numerator"] <= 7 or 1 <= g["n_denominator"] <= 7)
            for group, gap in table["gaps"].items():
                rows.append({
                    "indicator_id": indicator_id, "breakdown": breakdown, "group": group,
                    "truth_vintage": table.get("imd_vintage"), "truth_reference": table["reference_group"],
                    "expected_gap": gap["expected_gap"], "expected_gap_sd": gap["expected_gap_sd"],
                    "true_numerator": table["groups"][group]["realised_numerator"],
                    "true_denominator": table["groups"][group]["n_denominator"],
                    "true_reference_numerator": reference["realised_numerator"],
                    "true_reference_denominator": reference["n_denominator"],
                    "expected_numerator": expected_numerator(table["groups"][group]),
                    "reference_expected_numerator": expected_numerator(reference),
                    "n_small_groups_in_breakdown": small,
                    "is_reliably_visible": is_reliably_visible(table["groups"][group]) and is_reliably_visible(reference),
                })
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def gaps(tmp_path_factory) -> pl.DataFrame:
    """Generate and run the month; return every injected gap joined to its published row and reference row."""
    root = tmp_path_factory.mktemp("gap_recovery")
    truth = generate_extract(root / "extracts" / "2026-10", reporting_month=MONTH, n_patients=N_PATIENTS, seed=SEED)
    assert truth["imd_vintage"] == "IMD2019"  # the vintage the Core20 gaps are injected on
    warehouse = root / "warehouse.duckdb"
    code, output = core20_in_process("run", "--extract", str(root / "extracts"), "--month", "2026-10", "--warehouse", str(warehouse))
    assert code == 0, output
    with connect(warehouse, read_only=True) as con:
        table = read_table(con, "published", "gap_table").filter(pl.col("reporting_month") == MONTH)
    keys = ["indicator_id", "imd_vintage", "breakdown"]
    reference = table.select(*keys, pl.col("group").alias("reference_group"),
                             pl.col("numerator").alias("reference_numerator"),
                             pl.col("denominator").alias("reference_denominator"))
    joined = (
        truth_gaps(truth)
        .join(table, on=["indicator_id", "breakdown", "group"], how="left")
        # Core20 rows exist per IMD vintage; the injected gap is on IMD 2019. Ethnicity rows exist once.
        .filter(pl.col("truth_vintage").is_null() | (pl.col("imd_vintage") == pl.col("truth_vintage")))
        .join(reference, on=[*keys, "reference_group"], how="left")
        # The generator's expected gaps are per person; the table states each on its indicator's
        # scale (a proportion, or a rate per multiplier, e.g. per 100,000).
        .with_columns([(pl.col(c) * pl.col("multiplier").fill_null(1)).alias(c) for c in ("expected_gap", "expected_gap_sd")])
    )
    return joined.with_columns(pl.col("gap").is_not_null().alias("is_checked"))


def test_every_injected_gap_has_one_published_row_and_enough_are_visible(gaps):
    expected = sum(1 for _ in gaps.select("indicator_id", "breakdown", "group").unique().iter_rows())
    assert gaps.height == expected  # exactly one published row per injected gap
    assert set(gaps["breakdown"]) == {"core20", "ethnicity_broad"} and gaps["indicator_id"].n_unique() >= 13
    assert (gaps["reference_group"] == gaps["truth_reference"]).all()
    # A row without a gap is hidden: suppressed itself, or its reference group is.
    hidden = gaps.filter(~pl.col("is_checked"))
    assert (hidden["is_suppressed"] | hidden["reference_numerator"].is_null()).all()
    checked = gaps.filter("is_checked")
    print(f"\ninjected gaps: {gaps.height}; checked: {checked.height}; hidden by disclosure control: {hidden.height}")
    assert checked.height >= MIN_CHECKED


def test_core20_gaps_of_the_large_indicators_are_published(gaps):
    large = gaps.filter(
        (pl.col("breakdown") == "core20")
        & (pl.min_horizontal("true_denominator", "true_reference_denominator") >= LARGE)
        & (pl.min_horizontal("expected_numerator", "reference_expected_numerator") >= LARGE_NUMERATOR)
        & (pl.col("n_small_groups_in_breakdown") == 0)
    )
    assert large.height >= 2  # bp_case_finding and hypertension_treated_to_target at 60,000 patients
    assert large.filter(~pl.col("is_checked"))["indicator_id"].to_list() == []


def test_published_counts_are_the_controlled_true_counts_and_the_interval_comes_from_them(gaps):
    checked = gaps.filter("is_checked")
    profile = get_profile(checked["disclosure_profile"].unique().item())
    controlled = checked.select(
        *[profile.control(pl.col(f"true_{c}")).alias(c) for c in
          ("numerator", "denominator", "reference_numerator", "reference_denominator")]
    )
    published = checked.select("numerator", "denominator", "reference_numerator", "reference_denominator")
    assert published.equals(controlled)
    assert (published["denominator"] != checked["true_denominator"]).any()  # rounding changed counts
    for row in checked.iter_rows(named=True):
        tolerance = 1e-9 * row["multiplier"] if row["value_type"] == "rate" else 1e-12
        recomputed = difference(row, 0.95)
        assert (row["gap"], row["gap_lower"], row["gap_upper"]) == pytest.approx(tuple(recomputed), abs=tolerance), row


def test_published_intervals_contain_the_true_gaps(gaps):
    checked = gaps.filter("is_checked")
    counted = checked.filter("is_reliably_visible")
    n = counted.height
    outside = (pl.col("expected_gap") < pl.col("gap_lower")) | (pl.col("expected_gap") > pl.col("gap_upper"))
    misses_95 = counted.filter(outside)
    misses_998 = []
    for row in counted.iter_rows(named=True):
        _, lower, upper = difference(row, 0.998)
        if not lower <= row["expected_gap"] <= upper:
            misses_998.append((row["indicator_id"], row["group"]))
    allowed_95, allowed_998 = max_misses(n, MISS_95), max_misses(n, MISS_998)
    by_chance = checked.filter(~pl.col("is_reliably_visible"))
    print(f"\n{n} gaps counted: {misses_95.height} outside their 95% interval (allowed {allowed_95}), "
          f"{len(misses_998)} outside their 99.8% interval (allowed {allowed_998}); not counted, visible by "
          f"chance: {by_chance.height}, of which {by_chance.filter(outside).height} outside their 95% interval")
    assert n >= MIN_COUNTED
    detail = misses_95.select("indicator_id", "breakdown", "group", "expected_gap", "gap", "gap_lower", "gap_upper")
    assert misses_95.height <= allowed_95, detail
    assert len(misses_998) <= allowed_998, misses_998


def test_large_injected_gaps_have_the_injected_sign(gaps):
    # Rounding to 5 moves each count by at most 2, so a rate x/n published as x'/n' by at
    # most |(x' - x) n + x (n - n')| / (n n') <= 4 / n', and a gap by the sum over its two groups.
    rounding = (4 / pl.col("denominator") + 4 / pl.col("reference_denominator")) * pl.col("multiplier").fill_null(1)
    large = gaps.filter(
        pl.col("is_checked") & (pl.col("expected_gap").abs() > DIRECTION_Z * pl.col("expected_gap_sd") + rounding)
    )
    assert large.height >= 3
    wrong = large.filter(pl.col("gap").sign() != pl.col("expected_gap").sign())
    assert wrong.height == 0, wrong.select("indicator_id", "breakdown", "group", "expected_gap", "gap")
