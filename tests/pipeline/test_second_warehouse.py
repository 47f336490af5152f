"""A run on a second warehouse beside the default one leaves the default's snapshot and reports byte-identical.

The checkout's default layout (data/warehouse/core20plus5.duckdb with data/serving and
data/reports) is rebuilt in a temporary folder, a month is published there with no path
flags at all, and then runs on a second warehouse in the same folder - one published, one
blocked - must not change a byte of what Power BI and readers of the reports see. Every
hint those runs print is then run as printed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline_helpers import core20_in_process
from pipelines import settings_file


def _files(*folders: Path) -> dict[str, str]:
    """Return every file and link under the folders: relative path -> sha256 of its bytes (or link target)."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            key = f"{folder.name}/{path.relative_to(folder)}"
            if path.is_symlink():
                found[key] = "link:" + os.readlink(path)
            elif path.is_file():
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _hints(output: str) -> list[str]:
    """Return every `core20 ...` command the output offers (after 'details:' or 'result:', or in backticks)."""
    found = re.findall(r"\(details: (core20 [^)]*)\)", output)
    found += re.findall(r"every gate's result: (core20 .*)$", output, flags=re.MULTILINE)
    found += re.findall(r"`(core20 [^`]*)`", output)
    return found


def _run_hint(hint: str) -> tuple[int, str]:
    words = shlex.split(hint)
    assert words[0] == "core20", hint
    return core20_in_process(*words[1:])


@pytest.fixture
def checkout(tmp_path, monkeypatch, base_warehouse) -> Path:
    """Return a stand-in checkout whose default warehouse holds the published October."""
    root = tmp_path / "checkout"
    monkeypatch.setattr(settings_file, "REPO_ROOT", root)
    monkeypatch.setattr(settings_file, "DEFAULT_WAREHOUSE", root / "data" / "warehouse" / "core20plus5.duckdb")
    for name in ("CORE20_SERVING", "CORE20_REPORTS", "CORE20_WAREHOUSE", "CORE20_RESTRICTED"):
        monkeypatch.delenv(name, raising=False)
    settings_file.DEFAULT_WAREHOUSE.parent.mkdir(parents=True)
    shutil.copy(base_warehouse, settings_file.DEFAULT_WAREHOUSE)
    return root


def test_a_second_warehouse_never_touches_the_default_snapshot_or_reports(checkout, base_warehouse, clean_extracts,
                                                                          tmp_path, monkeypatch):
    code, output = core20_in_process("run", "--extract", str(clean_extracts), "--month", "2026-09")
    assert code == 0, output
    serving, reports = checkout / "data" / "serving", checkout / "data" / "reports"
    before = _files(serving, reports)
    assert any("/current" in name or "CURRENT" in name for name in before), sorted(before)[:5]
    assert any(name.startswith("reports/") and name.endswith(".html") for name in before)
    for hint in _hints(output):  # the default warehouse needs no --warehouse
        assert "--warehouse" not in hint
        assert _run_hint(hint)[0] == 0, hint

    second = checkout / "data" / "warehouse" / "test.duckdb"
    shutil.copy(base_warehouse, second)
    code, output = core20_in_process("run", "--extract", str(clean_extracts), "--month", "2026-09", "--warehouse", str(second))
    assert code == 0, output
    assert _files(serving, reports) == before
    beside = second.parent / "test-serving"
    assert (beside / "current").exists() or any(beside.iterdir())
    assert any((second.parent / "test-reports").glob("*.html"))
    assert str(beside) in output

    hints = _hints(output)
    assert hints and all(f"--warehouse {shlex.quote(str(second))}" in hint for hint in hints), hints
    for hint in hints:
        code, printed = _run_hint(hint)
        assert code == 0, (hint, printed)
        assert str(second) in printed and "2026-09" in printed

    # A blocked month on the second warehouse, chosen by variable: blocked before anything is
    # written, the message names the option that fixes it, and its hint runs as printed.
    extract = tmp_path / "male_female" / "2026-09"
    shutil.copytree(clean_extracts / "2026-09", extract)
    patients = pl.read_parquet(extract / "patients.parquet")
    patients.with_columns(pl.col("sex").replace({"M": "Male", "F": "Female"})).write_parquet(extract / "patients.parquet")
    monkeypatch.setenv("CORE20_WAREHOUSE", str(second))
    code, output = core20_in_process("run", "--extract", str(extract.parent), "--month", "2026-09")
    assert code == 2, output
    assert "options.sex_values" in output and "column_mapping.yaml" in output
    hints = _hints(output)
    assert hints, output
    for hint in hints:
        code, printed = _run_hint(hint)
        assert code == 0, (hint, printed)
        assert str(second) in printed
    assert _files(serving, reports) == before
