"""Helpers shared by the pipeline tests: running the command and the patient values it must never show."""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl


def core20(*args: str) -> tuple[int, str]:
    """Run `core20 ARGS` in a subprocess (as an analyst would) and return its exit code and output."""
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "DAGSTER_HOME": ""})
    return done.returncode, done.stdout + done.stderr


def patient_values(extract: Path, n: int = 200) -> list[str]:
    """Return the first `n` patient ids and `n` full postcodes of an extract's patients file."""
    patients = pl.read_parquet(extract / "patients.parquet")
    postcodes = patients.filter(pl.col("postcode").str.strip_chars().str.len_chars() >= 5)["postcode"]
    return patients["patient_id"].head(n).to_list() + postcodes.head(n).to_list()


def generate_months(extracts: Path, months: tuple[str, ...], *, n_patients: int, seed: int) -> None:
    """Write one synthetic extract per YYYY-MM month under `extracts`, each with its own seed."""
    import datetime as dt

    from pipelines.segmentation.synth import generate_extract

    for n, month in enumerate(months):
        generate_extract(extracts / month, reporting_month=dt.date.fromisoformat(f"{month}-01"),
                         n_patients=n_patients, seed=seed + n)
