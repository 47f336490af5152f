"""The whole monthly job, through the `core20` command, on a small generated extract."""

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines import cli
from pipelines.segmentation.synth import generate_extract
from pipelines.warehouse import connect, read_table

MONTH = dt.date(2026, 10, 1)
INDICATORS = ("smi_health_check", "hypertension_treated_to_target")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Generate an extract, run the month once, and return (root, warehouse, ground truth, output)."""
    root = tmp_path_factory.mktemp("core20")
    truth = generate_extract(root / "extracts" / "2026-10", reporting_month=MONTH, n_patients=12_000, seed=11)
    warehouse = root / "warehouse.duckdb"
    code, output = run_cli(root / "extracts", warehouse)
    assert code == 0, output
    return root, warehouse, truth, output


def run_cli(extracts: Path, warehouse: Path, *extra: str) -> tuple[int, str]:
    """Run `core20 run` in a subprocess (as an analyst would) and return its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--extract", str(extracts), "--warehouse", str(warehouse), *extra],
        capture_output=True, text=True, env={**__import__("os").environ, "DAGSTER_HOME": ""},
    )
    return done.returncode, done.stdout + done.stderr


def published(warehouse: Path) -> pl.DataFrame:
    with connect(warehouse, read_only=True) as con:
        return read_table(con, "published", "gap_table")


def test_published_gap_table_covers_both_indicators_quintiles_and_core20(run):
    _, warehouse, _, _ = run
    table = published(warehouse).filter(pl.col("reporting_month") == MONTH)
    assert set(table["indicator_id"]) >= set(INDICATORS)
    for indicator in INDICATORS:
        for vintage in ("IMD2019", "IMD2025"):
            rows = table.filter(indicator_id=indicator, imd_vintage=vintage)
            quintiles = set(rows.filter(breakdown="imd_quintile")["group"])
            assert {"1", "2", "3", "4", "5"} <= quintiles, (indicator, vintage, quintiles)
            assert {"core20", "rest"} <= set(rows.filter(breakdown="core20")["group"])


def test_injected_core20_gap_is_recovered_within_its_interval(run):
    _, warehouse, truth, _ = run
    assert truth["imd_vintage"] == "IMD2019"
    table = published(warehouse)
    for indicator in INDICATORS:
        row = table.filter(indicator_id=indicator, imd_vintage="IMD2019", breakdown="core20", group="core20").row(0, named=True)
        true_gap = truth["indicators"][indicator]["gap_core20_vs_rest"]
        assert true_gap < 0  # the generator injected a shortfall in Core20
        assert row["gap_lower"] <= true_gap <= row["gap_upper"], (indicator, true_gap, row["gap"], row["gap_lower"], row["gap_upper"])


def test_summary_names_the_figures_and_no_patient_values(run):
    root, warehouse, _, output = run
    assert "registered patients" in output and "Core20" in output and str(warehouse) in output
    patients = pl.read_parquet(root / "extracts" / "2026-10" / "patients.parquet")
    postcodes = patients.filter(pl.col("postcode").str.strip_chars().str.len_chars() >= 5)["postcode"]
    for value in patients["patient_id"].head(200).to_list() + postcodes.head(200).to_list():
        assert value not in output


def test_blocked_run_leaves_published_tables_unchanged_and_a_good_run_then_publishes(run, tmp_path):
    root, warehouse, _, _ = run
    warehouse_copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, warehouse_copy)
    before = published(warehouse_copy)
    # A September extract in which some dates of birth are impossible: the input gate blocks it.
    good = root / "extracts" / "2026-10"
    bad = tmp_path / "extracts" / "2026-09"
    bad.mkdir(parents=True)
    shutil.copy(good / "events.parquet", bad / "events.parquet")
    patients = pl.read_parquet(good / "patients.parquet")
    patients.with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(pl.lit(dt.date(1850, 1, 1))).otherwise(pl.col("date_of_birth")).alias("date_of_birth")
    ).write_parquet(bad / "patients.parquet")

    code, output = run_cli(tmp_path / "extracts", warehouse_copy, "--month", "2026-09")
    assert code == 2, output
    assert "staging/patients:input_contract blocked" in output and "column 'age'" in output
    assert "previously published tables are unchanged" in output
    after = published(warehouse_copy)
    assert after.equals(before)

    patients.write_parquet(bad / "patients.parquet")
    code, output = run_cli(tmp_path / "extracts", warehouse_copy, "--month", "2026-09")
    assert code == 0, output
    months = set(published(warehouse_copy)["reporting_month"])
    assert months == {MONTH, dt.date(2026, 9, 1)}


def test_rerunning_a_month_gives_identical_published_rows(run):
    root, warehouse, _, _ = run
    before = published(warehouse).sort(["indicator_id", "imd_vintage", "breakdown", "group"])
    code, output = run_cli(root / "extracts", warehouse, "--month", "2026-10")
    assert code == 0, output
    after = published(warehouse).sort(["indicator_id", "imd_vintage", "breakdown", "group"])
    assert after.equals(before)


def test_missing_extract_is_a_clear_error(tmp_path):
    code, output = run_cli(tmp_path / "nothing", tmp_path / "w.duckdb")
    assert code == 1
    assert "no extracts found under" in output


def test_incomplete_month_is_refused(tmp_path):
    next_month = (dt.date.today().replace(day=1) + dt.timedelta(days=32)).strftime("%Y-%m")
    code, output = run_cli(tmp_path, tmp_path / "w.duckdb", "--month", next_month)
    assert code == 1
    assert "is not a reporting month that can run" in output


def test_dagster_loads_the_code_location():
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=repo, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
