"""The national roll-up: region and England gap tables, SII/RII and data quality from ICB partitions.

Every figure is computed from the partitions' private exact counts - the group counts
behind each ICB's gap table and its exact deprivation-quality counts - summed over the
area's ICBs (registered populations of different ICBs are disjoint, so group counts add).
Never from patient rows, and never from already-rounded published counts (summing rounded
counts compounds the rounding error and lets a reader recover hidden cells by differencing).
The summed counts then go through the same disclosure profile, secondary suppression,
statistics and blocking gate (`expectations/audit.gap_table.json`) as an ICS month's.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pipelines.national.geography import icb_populations
from pipelines.national.store import NATIONAL, PartitionStore

_KEYS = ["reporting_month", "indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"]
GEOGRAPHY = ["geography_level", "geography_code", "geography_name"]
ENGLAND = ("england", "ENG", "England")


class RollupError(RuntimeError):
    """The partitions cannot be rolled up (missing, inconsistent settings, or a gate failed)."""


def areas(icbs: list[str], reference_dir: str | None = None) -> list[tuple[tuple[str, str, str], list[str]]]:
    """Return (level, code, name) with the ICBs of England and of each NHS England region that has one."""
    geography = icb_populations(reference_dir).filter(pl.col("icb_code").is_in(icbs))
    found = [ENGLAND, icbs]
    regions = [(("region", code, name), sorted(group["icb_code"].to_list()))
               for (code, name), group in geography.group_by(["region_code", "region_name"], maintain_order=True)]
    return [(found[0], sorted(found[1])), *sorted(regions)]


COHORT_PREFIX, SEPARATOR, NOT_MEMBER = "cohort:", "|", "not_member"


def complete_cohorts(counts: pl.DataFrame) -> pl.DataFrame:
    """Add, for each ICB, the cohort breakdowns it lacks because no patient of it was in the cohort.

    A partition emits `cohort:<id>` (and `core20|cohort:<id>`...) only for cohorts with
    members; in an ICB without members everyone is 'not_member'. Without these rows the
    region's 'member' + 'not_member' would not add up to its overall count, and the summed
    table would break the very identities secondary suppression protects.

    Examples:
        >>> c = pl.DataFrame({"partition_icb": ["A", "A", "A", "B"], "reporting_month": [1] * 4,
        ...     "indicator_id": ["x"] * 4, "indicator_version": [1] * 4, "imd_vintage": ["V"] * 4,
        ...     "breakdown": ["overall", "cohort:smi", "cohort:smi", "overall"], "group": ["all", "member", "not_member", "all"],
        ...     "numerator": [5, 1, 4, 7], "denominator": [9, 2, 7, 8]})
        >>> complete_cohorts(c).filter(pl.col("partition_icb") == "B").select("breakdown", "group", "denominator").rows()
        [('overall', 'all', 8), ('cohort:smi', 'not_member', 8)]
    """
    wanted = counts.select("imd_vintage", "breakdown").unique()
    added = []
    for icb in counts["partition_icb"].unique().sort().to_list():
        own = counts.filter(pl.col("partition_icb") == icb)
        missing = wanted.join(own.select("imd_vintage", "breakdown").unique(), on=["imd_vintage", "breakdown"], how="anti")
        for vintage, breakdown in missing.sort("imd_vintage", "breakdown").rows():
            parts = breakdown.split(SEPARATOR)
            cohort_at = [i for i, part in enumerate(parts) if part.startswith(COHORT_PREFIX)]
            others = [part for part in parts if not part.startswith(COHORT_PREFIX)]
            if not cohort_at or len(others) + len(cohort_at) != len(parts) or len(cohort_at) > 1:
                raise RollupError(f"ICB partition {icb} has no {breakdown!r} ({vintage}) rows; only cohort breakdowns may be absent")
            base = SEPARATOR.join(others) or "overall"
            rows = own.filter((pl.col("breakdown") == base) & (pl.col("imd_vintage") == vintage))
            if base == "overall":
                rows = own.filter(pl.col("breakdown") == "overall")
                group = pl.lit(NOT_MEMBER)
            else:
                pieces = [pl.col("group"), pl.lit(NOT_MEMBER)] if cohort_at[0] == 1 else [pl.lit(NOT_MEMBER), pl.col("group")]
                group = pl.concat_str(pieces, separator=SEPARATOR)
            added.append(rows.with_columns(pl.lit(vintage).alias("imd_vintage"), pl.lit(breakdown).alias("breakdown"),
                                           group.alias("group")))
    return pl.concat([counts, *added]) if added else counts


def sum_counts(counts: pl.DataFrame, icbs: list[str]) -> pl.DataFrame:
    """Return the exact group counts of the union of `icbs`: each group's numerator and denominator summed."""
    return (complete_cohorts(counts.filter(pl.col("partition_icb").is_in(icbs))).group_by(_KEYS)
            .agg(pl.col("numerator").sum().cast(pl.Int64), pl.col("denominator").sum().cast(pl.Int64)).sort(_KEYS))


def _one_setting(store: PartitionStore, month: str, icbs: list[str], name: str) -> str:
    values = {store.manifest(icb, month).get(name) for icb in icbs}
    if len(values) != 1:
        raise RollupError(f"the ICB partitions of {month[:7]} were run with different {name} settings ({sorted(map(str, values))}); "
                          "re-run them with one setting before rolling up")
    return values.pop()


def rollup_month(store_root: str, month: str, *, reference_dir: str | None = None, sii_seed: int = 20260,
                 sii_repetitions: int = 10000, sii_transform: bool = False, icbs: list[str] | None = None) -> dict:
    """Roll the month's committed ICB partitions up to regions and England and commit the national partition.

    Returns:
        The national partition's manifest (ICBs, rows per table).

    Raises:
        RollupError: no partitions, partitions with different disclosure profiles or
            primary vintages, or a roll-up table that fails its disclosure gate.
    """
    from pipelines.gates import run_suite
    from pipelines.segmentation.deprivation_quality import published_quality
    from pipelines.segmentation.disclosure import PROFILES, unpublishable_counts
    from pipelines.segmentation.gaps import build_inequality_table, gap_table_from_counts

    store = PartitionStore(store_root)
    key = f"{month[:7]}-01"
    icbs = icbs or store.icbs(key)
    if not icbs:
        raise RollupError(f"no ICB partition of {key[:7]} is committed under {store_root}")
    profile_name = _one_setting(store, key, icbs, "disclosure_profile")
    vintage = _one_setting(store, key, icbs, "primary_imd_vintage")
    profile = PROFILES[profile_name]
    counts = store.read_all(key, "gap_counts", icbs)
    hierarchy = store.read_all(key, "gap_hierarchy", icbs).drop("partition_icb").unique()
    catalogue = store.read_all(key, "indicator_catalogue", icbs).drop("partition_icb").unique()
    quality = store.read_all(key, "deprivation_quality", icbs)

    gap_tables, inequality_tables, quality_tables, private = [], [], [], []
    for (level, code, name), members in areas(icbs, reference_dir):
        label = [pl.lit(level).alias("geography_level"), pl.lit(code).alias("geography_code"), pl.lit(name).alias("geography_name")]
        summed = sum_counts(counts, members)
        table = gap_table_from_counts(summed, hierarchy, catalogue, profile=profile, primary_vintage=vintage)
        gate = run_suite(table, "audit.gap_table", {"unpublishable_counts": unpublishable_counts(profile)})
        if not gate.success:
            raise RollupError(f"the {level} gap table {code} of {key[:7]} failed its disclosure gate: {gate.summary()}")
        inequality = build_inequality_table(table, base_seed=sii_seed, repetitions=sii_repetitions, transform=sii_transform)
        exact_quality = (quality.filter(pl.col("partition_icb").is_in(members)).drop("partition_icb")
                         .group_by("reporting_month", "imd_vintage", "practice_code")
                         .agg(pl.col("^n_.*$").sum()))
        published = published_quality(exact_quality.with_columns(pl.lit(code).alias("practice_code")), profile)
        gap_tables.append(table.select(*label, pl.all()))
        inequality_tables.append(inequality.select(*label, pl.all()))
        quality_tables.append(published.select(*label, pl.all()))
        private.append(summed.select(*label, pl.all()))
    tables = {
        "gap_table": pl.concat(gap_tables),
        "inequality_table": pl.concat(inequality_tables),
        "deprivation_quality": pl.concat(quality_tables),
        "private__gap_counts": pl.concat(private),
    }
    return store.write(NATIONAL, key, tables, {"icbs": icbs, "disclosure_profile": profile_name, "primary_imd_vintage": vintage})


def side_by_side(store_root: str, month: str) -> pl.DataFrame:
    """Return the month's published gap rows of every ICB (its own ICS table) and of the regions and England.

    ICB rows are each ICB's published table, controlled at ICB level; region and England
    rows are the roll-up's. This is the table the national serving snapshot and warehouse carry.
    """
    store = PartitionStore(store_root)
    key = f"{month[:7]}-01"
    national = store.read(NATIONAL, key, "gap_table")
    icbs = store.manifest(NATIONAL, key)["icbs"]
    names = dict(icb_populations().select("icb_code", "icb_name").rows())
    icb_rows = store.read_all(key, "published__gap_table", icbs).with_columns(
        pl.lit("icb").alias("geography_level"), pl.col("partition_icb").alias("geography_code"),
        pl.col("partition_icb").replace_strict(names, default=None).alias("geography_name"),
    ).drop("partition_icb")
    return pl.concat([icb_rows.select(national.columns), national], how="vertical_relaxed")


def month_date(month: str) -> date:
    return date.fromisoformat(f"{month[:7]}-01")


def publish_national(store_root: str, month: str, warehouse: str, serving_root: str) -> dict:
    """Build the national warehouse and serving snapshot of a month from the partition files.

    The one writer of the national DuckDB file is this step (never the partitions): it
    replaces the month's rows of `national.gap_table` (ICB, region and England rows side by
    side), `national.inequality_table` and `national.deprivation_quality` in one
    transaction, then writes the same tables as Parquet under SERVING_ROOT/YYYY-MM/ for
    Power BI (written beside and renamed into place, so a reader never sees half a month).
    """
    import shutil
    from pathlib import Path

    from pipelines.warehouse import connect

    store = PartitionStore(store_root)
    key = f"{month[:7]}-01"
    tables = {
        "gap_table": side_by_side(store_root, key),
        "inequality_table": store.read(NATIONAL, key, "inequality_table"),
        "deprivation_quality": store.read(NATIONAL, key, "deprivation_quality"),
    }
    Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    with connect(Path(warehouse)) as con:
        # Fully qualified: a file called national.duckdb is itself a catalog named 'national'.
        catalog = con.execute("select current_database()").fetchone()[0]
        schema = f'"{catalog}"."national"'
        con.execute("begin transaction")
        con.execute(f"create schema if not exists {schema}")
        for name, frame in tables.items():
            con.register("incoming", frame.to_arrow())
            con.execute(f"create table if not exists {schema}.{name} as select * from incoming limit 0")
            con.execute(f"delete from {schema}.{name} where reporting_month = ?", [month_date(key)])
            con.execute(f"insert into {schema}.{name} by name select * from incoming")
            con.unregister("incoming")
        con.execute("commit")
    target = Path(serving_root) / key[:7]
    pending = Path(serving_root) / f".{key[:7]}.partial"
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir(parents=True)
    for name, frame in tables.items():
        frame.write_parquet(pending / f"{name}.parquet", compression="zstd", statistics=True)
    if target.exists():
        shutil.rmtree(target)
    pending.rename(target)
    return {name: frame.height for name, frame in tables.items()}
