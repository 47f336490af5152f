"""Shared fixtures for the data-quality pipeline tests: small generated extracts and a published month.

`core20` runs in-process here (`pipeline_helpers.core20_in_process`), which keeps the many
malformed-input runs fast; the whole-job tests in test_monthly_run.py run it as a subprocess.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline_helpers import core20_in_process, generate_months

N_PATIENTS = 2_000


@pytest.fixture(scope="session")
def clean_extracts(tmp_path_factory) -> Path:
    """Return a root with good 2,000-patient extracts for 2026-09 and 2026-10."""
    root = tmp_path_factory.mktemp("extracts")
    generate_months(root, ("2026-10", "2026-09"), n_patients=N_PATIENTS, seed=5)
    return root


@pytest.fixture(scope="session")
def base_warehouse(tmp_path_factory, clean_extracts) -> Path:
    """Return a warehouse with reference tables loaded and October 2026 published."""
    warehouse = tmp_path_factory.mktemp("warehouse") / "w.duckdb"
    code, output = core20_in_process("run", "--extract", str(clean_extracts), "--month", "2026-10", "--warehouse", str(warehouse))
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
