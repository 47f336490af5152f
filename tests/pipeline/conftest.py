"""Shared fixtures for the data-quality pipeline tests: small generated extracts and a published month.

The `core20` command is run in-process (`pipelines.cli.main`, the console script's entry
point) with its output captured, which keeps the many malformed-input runs fast; the
whole-job tests in test_monthly_run.py run it as a subprocess.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import shutil
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.segmentation.synth import generate_extract
from pipelines.warehouse import connect, schema_fingerprint

OCTOBER, SEPTEMBER = dt.date(2026, 10, 1), dt.date(2026, 9, 1)
N_PATIENTS = 2_000


def core20(*args: str) -> tuple[int, str]:
    """Run `core20 ARGS` in this process and return its exit code and everything it printed."""
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
    with connect(warehouse, read_only=True) as con:
        return schema_fingerprint(con, "published")


@pytest.fixture(scope="session")
def clean_extracts(tmp_path_factory) -> Path:
    """Return a root with good 2,000-patient extracts for 2026-09 and 2026-10."""
    root = tmp_path_factory.mktemp("extracts")
    for month, seed in ((OCTOBER, 5), (SEPTEMBER, 6)):
        generate_extract(root / f"{month:%Y-%m}", reporting_month=month, n_patients=N_PATIENTS, seed=seed)
    return root


@pytest.fixture(scope="session")
def base_warehouse(tmp_path_factory, clean_extracts) -> Path:
    """Return a warehouse with reference tables loaded and October 2026 published."""
    warehouse = tmp_path_factory.mktemp("warehouse") / "w.duckdb"
    code, output = core20("run", "--extract", str(clean_extracts), "--month", "2026-10", "--warehouse", str(warehouse))
    assert code == 0, output
    return warehouse


@pytest.fixture
def warehouse(tmp_path, base_warehouse) -> Path:
    """Return a private copy of the warehouse with October published."""
    copy = tmp_path / "w.duckdb"
    shutil.copy(base_warehouse, copy)
    return copy


@pytest.fixture
def september(tmp_path, clean_extracts) -> Path:
    """Return an extracts root holding a copy of the good September extract, to alter."""
    root = tmp_path / "extracts"
    shutil.copytree(clean_extracts / "2026-09", root / "2026-09")
    return root
