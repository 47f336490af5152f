"""Helpers shared by the pipeline tests: running the command and the patient values it must never show."""

import contextlib
import io
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

    from pipelines.synthetic import generate_extract

    for n, month in enumerate(months):
        generate_extract(extracts / month, reporting_month=dt.date.fromisoformat(f"{month}-01"),
                         n_patients=n_patients, seed=seed + n)


def core20_in_process(*args: str) -> tuple[int, str]:
    """Run `core20 ARGS` in this process (the console script's entry point) and return its exit code and output.

    Faster than `core20` for the many short runs of the data-quality tests (no interpreter
    start, no imports); the output is captured the same way.
    """
    from pipelines import cli

    out = io.StringIO()
    previous = os.environ.pop("DAGSTER_HOME", None)  # tests never write to a persistent run history
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = cli.main(list(args))
    finally:
        if previous is not None:
            os.environ["DAGSTER_HOME"] = previous
    return code, out.getvalue()


def published_state(warehouse: Path) -> dict[str, str]:
    """Return a fingerprint of every table in the published schema (rows, names and types)."""
    from pipelines.warehouse import connect, schema_fingerprint

    with connect(warehouse, read_only=True) as con:
        return schema_fingerprint(con, "published")
