"""A synthetic national extract: one extract folder per ICB, sized by the ICB's share of England."""

from __future__ import annotations

import zlib
from datetime import date
from pathlib import Path
from typing import Callable

import polars as pl

from pipelines.national.geography import choose_icbs, icb_populations


def icb_seed(seed: int, icb_code: str) -> int:
    """Return the seed of one ICB's extract: the same for that ICB whichever subset is generated.

    Examples:
        >>> icb_seed(7, "QT1") == icb_seed(7, "QT1") != icb_seed(7, "QHM")
        True
    """
    return (seed * 1_000_003 + zlib.crc32(icb_code.encode())) % 2**32


def plan_national(scale: float, icbs: str | None = None, reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return the ICBs to generate with `n_patients` = round(scale x the ICB's population), at least 1.

    Raises:
        ValueError: for a scale outside (0, 1] or an unknown ICB code.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"--scale must be a share of each ICB's population in (0, 1]; got {scale}")
    chosen = choose_icbs(icb_populations(reference_dir), icbs)
    return chosen.with_columns((pl.col("population") * scale).round().cast(pl.Int64).clip(lower_bound=1).alias("n_patients"))


def generate_national(
    out_root: Path, *, reporting_month: date, scale: float, icbs: str | None = None, seed: int = 20260,
    defect_rate: float = 0.02, reference_dir: str | Path | None = None, include_feeds: bool = True,
    progress: Callable[[str], None] = lambda _m: None,
) -> pl.DataFrame:
    """Write OUT_ROOT/<ICB>/YYYY-MM/ for every chosen ICB and return the plan (with region and size).

    Each ICB's folder is an ordinary extracts root, so `core20 run --extract OUT_ROOT/QT1` runs
    one ICB in the single-ICS mode and the national job reads the same folders.
    """
    from pipelines.synthetic import generate_extract

    plan = plan_national(scale, icbs, reference_dir)
    for i, (icb, n) in enumerate(plan.select("icb_code", "n_patients").rows(), start=1):
        folder = Path(out_root) / icb / reporting_month.strftime("%Y-%m")
        generate_extract(folder, reporting_month=reporting_month, n_patients=n, seed=icb_seed(seed, icb), icb_code=icb,
                         defect_rate=defect_rate, reference_dir=reference_dir, include_feeds=include_feeds)
        progress(f"  [{i}/{plan.height}] {icb}: {n:,} patients -> {folder}")
    return plan
