"""`core20 quarantine --export`: quarantined rows go back to the supplier with their own line numbers,
into an owner-only folder that nothing serves, publishes or reports."""

from __future__ import annotations

import csv
import stat

import polars as pl

from pipeline_helpers import core20_in_process
from pipelines import settings_file

BAD_ROWS = (3, 50, 51, 700)  # data rows (from 1) given an unknown sex code


def test_export_writes_the_suppliers_lines_to_an_owner_only_folder(september, tmp_path):
    folder = september / "2026-09"
    patients = pl.read_parquet(folder / "patients.parquet")
    bad = pl.int_range(1, pl.len() + 1).is_in(list(BAD_ROWS))
    patients.with_columns(pl.when(bad).then(pl.lit("X")).otherwise(pl.col("sex")).alias("sex")).write_csv(folder / "patients.csv")
    (folder / "patients.parquet").unlink()
    warehouse = tmp_path / "w.duckdb"
    code, output = core20_in_process("run", "--extract", str(september), "--month", "2026-09", "--warehouse", str(warehouse))
    assert code == 0, output

    code, output = core20_in_process("quarantine", "--month", "2026-09", "--warehouse", str(warehouse))
    assert code == 0, output
    assert f"patients.csv: sex_code_unknown {len(BAD_ROWS)}" in output
    hint = output.strip().splitlines()[-1].split("supplier: ", 1)[1]
    assert hint.split()[1:] == ["quarantine", "--month", "2026-09", "--export", "--warehouse", str(warehouse)]

    code, output = core20_in_process(*hint.split()[1:])
    assert code == 0, output
    restricted = settings_file.beside_warehouse("restricted", warehouse)
    assert restricted == tmp_path / "w-restricted"
    exported = restricted / "quarantine" / "2026-09" / "patients_quarantined.csv"
    assert str(exported.parent) in output
    for level in (restricted, restricted / "quarantine", exported.parent):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700
    for file in exported.parent.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file

    supplier_lines = (folder / "patients.csv").read_text().splitlines()
    with exported.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["data_row"]) for r in rows] == list(BAD_ROWS)
    for row in rows:
        line = supplier_lines[int(row["file_line"]) - 1]  # the supplier's own line number, header = line 1
        assert line.startswith(row["patient_id"] + ",") and row["sex"] == "X" and ",X," in line
        assert row["rule"] == "sex_code_unknown" and row["column"] == "sex"

    # Nothing served or reported holds an exported row, and the export lies outside both.
    serving = settings_file.beside_warehouse("serving", warehouse)
    reports = settings_file.beside_warehouse("reports", warehouse)
    for place in (serving, reports):
        assert place.exists() and restricted not in place.parents and place not in restricted.parents
        for file in place.rglob("*"):
            if file.is_file():
                data = file.read_bytes()
                assert not any(row["patient_id"].encode() in data for row in rows), file


def test_a_restricted_folder_inside_the_serving_folder_is_refused(warehouse, tmp_path):
    code, output = core20_in_process("quarantine", "--month", "2026-10", "--warehouse", str(warehouse), "--export",
                                     "--restricted", str(settings_file.beside_warehouse("serving", warehouse) / "rows"))
    assert code == 1 and "overlaps" in output and "paths.restricted" in output
