"""ICBs, their NHS England regions and their populations, from the shared reference files only.

Population shares come from the ONS mid-2015 LSOA 2011 populations that IoD2019 publishes
as its denominators (File 6), summed over the ONS LSOA 2011 -> ICB (July 2022) lookup: the
same ICB codes the synthetic generator draws postcodes and practices from. Regions come from
the ICB 2024 -> NHS England region lookup (matched on the ICB's ODS code; the 42 ICB ODS
codes did not change between the 2022 and 2024 lookups).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from reference_data import loader


def icb_populations(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return one row per ICB: icb_code, icb_name, region_code, region_name, population, share.

    Raises:
        ValueError: if an ICB of the LSOA lookup has no region in the region lookup (the
            reference files disagree; naming the ICB codes).
    """
    population = loader.read_imd2019_population(reference_dir)
    lookup = loader.read_lsoa11_icb22(reference_dir)
    regions = loader.read_icb_regions(reference_dir)
    icbs = (
        lookup.join(population, on="lsoa11_code", how="inner")
        .group_by(pl.col("icb22_code_nhs").alias("icb_code"))
        .agg(pl.col("population").sum().cast(pl.Int64))
        .join(regions, on="icb_code", how="left")
    )
    missing = icbs.filter(pl.col("region_code").is_null())["icb_code"].to_list()
    if missing:
        raise ValueError(f"ICBs {sorted(missing)} of 'lsoa11_icb22' have no row in 'icb24_nhser' (column icb24_code_nhs)")
    return icbs.with_columns((pl.col("population") / pl.col("population").sum()).alias("share")).select(
        "icb_code", "icb_name", "region_code", "region_name", "population", "share"
    ).sort("icb_code")


def choose_icbs(populations: pl.DataFrame, icbs: str | None) -> pl.DataFrame:
    """Return the rows of `populations` named by a comma-separated list of ICB ODS codes ('all' or None: every ICB).

    Raises:
        ValueError: naming any code that is not an ICB of the lookup, with the known codes.
    """
    if icbs is None or icbs.strip().lower() in ("", "all"):
        return populations
    wanted = [code.strip().upper() for code in icbs.split(",") if code.strip()]
    unknown = sorted(set(wanted) - set(populations["icb_code"].to_list()))
    if unknown:
        raise ValueError(f"--icbs: {unknown} are not ICB ODS codes; expected some of {populations['icb_code'].to_list()}")
    return populations.filter(pl.col("icb_code").is_in(wanted))
