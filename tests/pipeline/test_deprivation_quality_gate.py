"""The postcode/IMD quality table is published each month, and a practice with no usable
postcodes blocks publication (through `core20 run`, as an analyst runs it)."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from pipelines.segmentation.schemas import DEPRIVATION_QUALITY
from pipelines.synthetic import generate_extract
from pipelines.warehouse import connect, read_table, table_exists

MONTH = dt.date(2026, 10, 1)


def run_cli(extracts: Path, warehouse: Path, *extra: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--extract", str(extracts), "--warehouse", str(warehouse), *extra],
        capture_output=True, text=True, env={**os.environ, "DAGSTER_HOME": ""},
    )
    return done.returncode, done.stdout + done.stderr


def published_tables(warehouse: Path) -> dict[str, pl.DataFrame]:
    with connect(warehouse, read_only=True) as con:
        return {t: read_table(con, "published", t) for t in ("gap_table", "deprivation_quality") if table_exists(con, "published", t)}


def test_practice_without_postcodes_blocks_and_quality_is_published_when_fixed(tmp_path):
    folder = tmp_path / "extracts" / "2026-10"
    generate_extract(folder, reporting_month=MONTH, n_patients=4_000, seed=5)
    patients = pl.read_parquet(folder / "patients.parquet")
    largest = patients.group_by("practice_code").len().sort("len", "practice_code", descending=True).row(0)[0]
    patients.with_columns(
        pl.when(pl.col("practice_code") == largest).then(None).otherwise(pl.col("postcode")).alias("postcode")
    ).write_parquet(folder / "patients.parquet")
    warehouse = tmp_path / "warehouse.duckdb"

    code, output = run_cli(tmp_path / "extracts", warehouse)
    assert code == 2, output
    assert "practice_address_quality" in output and largest in output, output
    assert published_tables(warehouse) == {}

    patients.write_parquet(folder / "patients.parquet")
    code, output = run_cli(tmp_path / "extracts", warehouse)
    assert code == 0, output
    quality = published_tables(warehouse)["deprivation_quality"]
    assert quality.columns == DEPRIVATION_QUALITY.names
    whole = quality.filter(practice_code="ALL").sort("imd_vintage")
    assert whole["imd_vintage"].to_list() == ["IMD2019", "IMD2025"]
    # The gate's figure is the exact (private) rate, and it passed: above 95% in both vintages.
    with connect(warehouse, read_only=True) as con:
        exact = read_table(con, "population", "deprivation_quality").filter(practice_code="ALL").sort("imd_vintage")
    assert exact["match_rate"].min() > 0.95
    # The published rate is the one definition computed from the published counts: patients with
    # a decile / patients with an address IMD can apply to. It is shown exactly when every count
    # it needs is shown, and otherwise 'suppressed' (null), never computed from a hidden count.
    # Which branch occurs depends on the extract's counts, and is asserted, so the loop cannot pass
    # without checking something: on this 4,000-patient extract (realistic practice sizes since
    # the generator of issue 13b) every count the rate needs is publishable in both vintages, so
    # the rate is shown and equals the definition. The hidden branch (a needed count suppressed,
    # the rate with it) is asserted on literal tables in tests/spec/test_deprivation_quality.py.
    branches = []
    for row in whole.iter_rows(named=True):
        needed = (row["n_matched"], row["n_patients"], row["n_blank"], row["n_outside_england"])
        if None in needed:
            assert row["match_rate"] is None
            branches.append("hidden")
        else:
            assert row["match_rate"] == row["n_matched"] / (row["n_patients"] - row["n_blank"] - row["n_outside_england"])
            branches.append("shown")
    assert branches == ["shown", "shown"], branches
    assert set(quality["practice_code"]) - {"ALL"} == set(patients["practice_code"])
    counts = quality.select(c for c in quality.columns if c.startswith("n_")).unpivot()["value"].drop_nulls()
    assert ((counts == 0) | ((counts > 7) & (counts % 5 == 0))).all()
