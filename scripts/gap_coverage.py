"""Measure how often published gap intervals miss the generator's true gaps by chance alone.

    .venv/bin/python scripts/gap_coverage.py [--patients 60000] [--seed 31] [--draws 4000] [--warehouse FILE]

The evidence behind the miss allowances of tests/pipeline/test_gap_recovery.py. For every
gap with a ground truth (the `breakdowns` of `generate_extract`'s ground truth: each
Core20 and broad-ethnicity group against its reference group), each draw:

1. draws each group's numerator from Binomial(n, expected rate). The pipeline's numerator
   is a sum of independent Bernoulli(p_i) draws, whose variance is at most the binomial's,
   so this errs towards more misses. The reference group's draw is shared by the gaps of
   its indicator and breakdown, as in the table; Core20 and ethnicity draws are independent
   (in the real table they share patients);
2. applies the disclosure profile to the counts (a suppressed count hides the gap in that
   draw), and computes the Newcombe interval from the controlled counts with
   `stats.newcombe_columns`, at 95% and 99.8%, as the published table does;
3. counts the intervals that miss the expected gap, over the gaps the test counts (those
   whose numerators are reliably above the suppression threshold; a small cell visible
   only because its draw reached 8 is selected on its outcome and is reported apart).

With --warehouse, only the gaps that warehouse's published table shows are simulated (the
set the test checks for that extract). Prints the worst per-gap miss rates, the average
per-gap rate at each level, and how often a draw would fail the test's criterion (more
misses than allowed for its number of visible gaps). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "pipeline"))

from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5, get_profile  # noqa: E402
from pipelines.segmentation.stats import newcombe_columns  # noqa: E402
from pipelines.synthetic import generate_extract  # noqa: E402
from test_gap_recovery import MISS_95, MISS_998, max_misses, truth_gaps  # noqa: E402


def simulate(gaps: pl.DataFrame, rates: dict, draws: int, profile, seed: int = 1) -> pl.DataFrame:
    """Return one row per gap and draw: whether it is visible and whether each interval misses."""
    rng = np.random.default_rng(seed)
    frames = []
    for (indicator_id, breakdown), block in gaps.group_by(["indicator_id", "breakdown"], maintain_order=True):
        ref = block.row(0, named=True)
        ref_x = rng.binomial(ref["true_reference_denominator"], rates[(indicator_id, breakdown, ref["truth_reference"])], draws)
        for row in block.iter_rows(named=True):
            x = rng.binomial(row["true_denominator"], rates[(indicator_id, breakdown, row["group"])], draws)
            frames.append(pl.DataFrame({
                "indicator_id": indicator_id, "breakdown": breakdown, "group": row["group"], "draw": np.arange(draws),
                "x": x, "n": row["true_denominator"], "rx": ref_x, "rn": row["true_reference_denominator"],
                "expected_gap": row["expected_gap"],
            }))
    sims = pl.concat(frames).with_columns(profile.control(c).alias(c) for c in ("x", "n", "rx", "rn"))
    sims = sims.with_columns(pl.all_horizontal(pl.col(c).is_not_null() for c in ("x", "n", "rx", "rn")).alias("visible"))
    out = []
    for confidence, name in ((0.95, "miss_95"), (0.998, "miss_998")):
        _, lower, upper = newcombe_columns("x", "n", "rx", "rn", confidence)
        out.append((~pl.col("expected_gap").is_between(lower, upper)).fill_null(False).alias(name))
    return sims.with_columns(*out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--warehouse", type=Path,
                        help="restrict to the gaps the published table of a run of this same extract (--patients, --seed) shows")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        truth = generate_extract(Path(folder), reporting_month=date(2026, 10, 1), n_patients=args.patients, seed=args.seed)
    gaps = truth_gaps(truth)
    rates = {(i, b, g): v["expected_rate"] for i, e in truth["indicators"].items()
             for b, t in e.get("breakdowns", {}).items() for g, v in t["groups"].items()}
    profile = NHS_SUPPRESS_ROUND5
    if args.warehouse:
        from pipelines.warehouse import connect, read_table

        with connect(args.warehouse, read_only=True) as con:
            table = read_table(con, "published", "gap_table")
        profile = get_profile(table["disclosure_profile"].unique().item())
        shown = table.filter(pl.col("gap").is_not_null() & pl.col("breakdown").is_in(["core20", "ethnicity_broad"]))
        shown = shown.filter((pl.col("breakdown") != "core20") | (pl.col("imd_vintage") == truth["imd_vintage"]))
        gaps = gaps.join(shown.select("indicator_id", "breakdown", "group"), on=["indicator_id", "breakdown", "group"])
    sims = simulate(gaps, rates, args.draws, profile).filter("visible")
    # The test counts only gaps whose visibility does not depend on their outcome.
    by_chance = sims.join(gaps.filter(~pl.col("is_reliably_visible")).select("indicator_id", "breakdown", "group"),
                          on=["indicator_id", "breakdown", "group"])
    sims = sims.join(gaps.filter("is_reliably_visible").select("indicator_id", "breakdown", "group"),
                     on=["indicator_id", "breakdown", "group"])

    per_gap = sims.group_by("indicator_id", "breakdown", "group").agg(
        pl.len().alias("visible_draws"), pl.col("n").first(), pl.col("miss_95").mean(), pl.col("miss_998").mean()
    ).sort("miss_95", descending=True)
    per_draw = sims.group_by("draw").agg(pl.len().alias("n"), pl.col("miss_95").sum(), pl.col("miss_998").sum())
    fails_95 = sum(m > max_misses(n, MISS_95) for n, m in per_draw.select("n", "miss_95").rows())
    fails_998 = sum(m > max_misses(n, MISS_998) for n, m in per_draw.select("n", "miss_998").rows())
    with pl.Config(tbl_rows=12, tbl_width_chars=160, fmt_str_lengths=32):
        print(per_gap.head(12))
    print(f"{gaps.height} gaps, {gaps['is_reliably_visible'].sum()} reliably visible, {args.draws} draws; "
          f"counted per draw: {per_draw['n'].min()}-{per_draw['n'].max()}")
    if by_chance.height:
        print(f"visible by chance (not counted by the test): 95% miss rate {by_chance['miss_95'].mean():.3f} "
              f"over {by_chance.height} gap-draws")
    print(f"average per-gap miss rate: 95% {sims['miss_95'].mean():.4f} (test allows {MISS_95}), "
          f"99.8% {sims['miss_998'].mean():.4f} (test allows {MISS_998})")
    print(f"draws failing the test's criterion: 95% {fails_95} of {args.draws}, 99.8% {fails_998} of {args.draws}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
