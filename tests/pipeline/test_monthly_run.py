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
from pipeline_helpers import patient_values, published_state

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
    recovered = 0
    for indicator in INDICATORS:
        row = table.filter(indicator_id=indicator, imd_vintage="IMD2019", breakdown="core20", group="core20").row(0, named=True)
        true_gap = truth["indicators"][indicator]["gap_core20_vs_rest"]
        if row["is_suppressed"]:
            # At 12,000 patients the SMI register is ~100 people: its 'unknown' decile group is
            # 1-7, and secondary suppression must hide Core20 or rest with it (else overall
            # minus the two reveals it). Hidden is the right answer there, not a gap.
            assert truth["indicators"][indicator]["core20"]["n_denominator"] < 100, indicator
            continue
        recovered += 1
        assert true_gap < 0  # the generator injected a shortfall in Core20
        assert row["gap_lower"] <= true_gap <= row["gap_upper"], (indicator, true_gap, row["gap"], row["gap_lower"], row["gap_upper"])
    assert recovered >= 1  # hypertension (~1,600 patients) is always published


def test_inequality_and_spc_tables_are_published_with_seed_and_draws(run):
    _, warehouse, _, _ = run
    with connect(warehouse, read_only=True) as con:
        indices = read_table(con, "published", "inequality_table")
        spc = read_table(con, "published", "spc_series")
    computed = indices.filter(pl.col("status") == "computed")
    assert computed.filter(indicator_id="hypertension_treated_to_target").height == 4  # 2 vintages x deciles/quintiles
    assert (computed["repetitions"] == 100000).all() and computed["seed"].null_count() == 0
    assert (computed["sii_lower"] <= computed["sii"]).all() and (computed["sii"] <= computed["sii_upper"]).all()
    # The generator makes Core20 worse: the least deprived end is higher, so the SII is positive.
    quintile = computed.filter(indicator_id="hypertension_treated_to_target", imd_vintage="IMD2019",
                               quantile_type="imd_quintile").row(0, named=True)
    assert quintile["sii"] > 0 and quintile["rii"] > 1
    assert set(spc["breakdown"]) <= {"overall", "core20"} and spc.height > 0
    assert spc["is_short_series"].all()  # one month published so far


def test_published_gap_table_resists_recovery_by_subtraction(run, tmp_path):
    # Rebuild the month without disclosure control from the private layer, then let the
    # attacker try every hidden count of the published table.
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from attack import recovered_cells
    from pipelines.segmentation.disclosure import NONE
    from pipelines.segmentation.gaps import build_gap_table

    _, warehouse, _, _ = run
    with connect(warehouse, read_only=True) as con:
        args = [read_table(con, s, t, partition_column="reporting_month", partition_value=MONTH) for s, t in (
            ("indicators", "patient_indicators"), ("population", "patient_attributes"),
            ("indicators", "indicator_catalogue"), ("cohorts", "cohort_membership"))]
        table = read_table(con, "published", "gap_table").filter(pl.col("reporting_month") == MONTH)
    truth = build_gap_table(args[0].lazy(), args[1].lazy(), args[2], cohorts=args[3].lazy(), profile=NONE,
                            primary_vintage="IMD2025")
    attributes = args[1]
    fine = {
        "ethnicity_16": dict(attributes.select("ethnicity_16", "ethnicity_broad").drop_nulls().unique().rows()),
        "sub_icb": dict(attributes.select("sicbl_code", "icb_code").drop_nulls().unique().rows()),
    }
    assert table["is_suppressed"].sum() > 50
    for column in ("numerator", "denominator"):
        assert recovered_cells(table, truth, column, fine) == []


def test_summary_names_the_figures_and_no_patient_values(run):
    root, warehouse, _, output = run
    assert "registered patients" in output and "Core20" in output and str(warehouse) in output
    for value in patient_values(root / "extracts" / "2026-10"):
        assert value not in output


def test_blocked_run_leaves_published_tables_unchanged_and_a_good_run_then_publishes(run, tmp_path):
    root, warehouse, _, _ = run
    warehouse_copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, warehouse_copy)
    before = published_state(warehouse_copy)
    # A September extract in which 5% of dates of birth are impossible: more rows than the
    # quarantine may set aside (1%), so the input gate blocks it.
    good = tmp_path / "good" / "2026-09"
    generate_extract(good, reporting_month=dt.date(2026, 9, 1), n_patients=12_000, seed=12)
    bad = tmp_path / "extracts" / "2026-09"
    shutil.copytree(good, bad)
    patients = pl.read_parquet(good / "patients.parquet")
    patients.with_columns(
        pl.when(pl.int_range(pl.len()) < 600).then(pl.lit(dt.date(1850, 1, 1))).otherwise(pl.col("date_of_birth")).alias("date_of_birth")
    ).write_parquet(bad / "patients.parquet")

    code, output = run_cli(tmp_path / "extracts", warehouse_copy, "--month", "2026-09")
    assert code == 2, output
    assert "staging/patients:input_contract blocked" in output and "date_of_birth_implausible 600" in output
    assert "previously published tables are unchanged" in output
    assert published_state(warehouse_copy) == before  # every published table, byte for byte

    shutil.copy(good / "patients.parquet", bad / "patients.parquet")
    code, output = run_cli(tmp_path / "extracts", warehouse_copy, "--month", "2026-09")
    assert code == 0, output
    months = set(published(warehouse_copy)["reporting_month"])
    assert months == {MONTH, dt.date(2026, 9, 1)}


def test_rerunning_a_month_gives_identical_published_rows(run):
    root, warehouse, _, _ = run
    before = published(warehouse).sort(["indicator_id", "imd_vintage", "breakdown", "group"])
    every_table = published_state(warehouse)
    code, output = run_cli(root / "extracts", warehouse, "--month", "2026-10")
    assert code == 0, output
    after = published(warehouse).sort(["indicator_id", "imd_vintage", "breakdown", "group"])
    assert after.equals(before)
    assert published_state(warehouse) == every_table  # the catalogue and data-quality rows too


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
