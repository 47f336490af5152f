"""Practice case-finding lists: each practice's own patients in the focus cohort, restricted, off by default.

The lists are patient-level output for direct care. The tests hold them to that: written
only when core20.toml switches them on, only to the owner-only restricted folder, each file
holding exactly the cohort members registered at its practice (the month's own cohort
membership, by pseudonymised id), and no list id anywhere in what is served, reported or
published.
"""

from __future__ import annotations

import csv
import datetime as dt
import stat
from pathlib import Path

import polars as pl
import pytest

from pipeline_helpers import core20
from pipelines import settings_file
from pipelines.warehouse import connect

MONTH = "2026-10"
COHORT = "nn_cvd_focus"


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """One month published twice from one extract: with the lists switched on, and with the defaults."""
    from pipelines.synthetic import generate_extract

    root = tmp_path_factory.mktemp("case_finding")
    extract = root / "extracts" / MONTH
    generate_extract(extract, reporting_month=dt.date.fromisoformat(f"{MONTH}-01"), n_patients=12_000, seed=1617)
    settings = root / "core20.toml"
    settings.write_text(f'[case_finding]\nenabled = true\ncohort = "{COHORT}"\n')
    on = root / "on" / "warehouse.duckdb"
    ran_on = core20("run", "--settings", str(settings), "--extract", str(extract.parent), "--month", MONTH,
                    "--warehouse", str(on))
    off = root / "off" / "warehouse.duckdb"
    ran_off = core20("run", "--extract", str(extract.parent), "--month", MONTH, "--warehouse", str(off))
    return {"root": root, "extract": extract, "settings": settings, "on": on, "off": off, "ran_on": ran_on,
            "ran_off": ran_off}


def _lists(warehouse: Path) -> Path:
    return settings_file.beside_warehouse("restricted", warehouse) / "case_finding" / MONTH / COHORT


def _read(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_each_list_holds_exactly_its_own_practices_cohort_members(month):
    code, output = month["ran_on"]
    assert code == 0, output[-3000:]
    folder = _lists(month["on"])
    assert f"case-finding lists (RESTRICTED, direct care)" in output and str(folder) in output
    with connect(month["on"], read_only=True) as con:
        members = pl.from_arrow(con.execute(
            "select p.practice_code, m.patient_id from cohorts.cohort_membership m "
            "join staging.patients p using (reporting_month, patient_id) "
            "where m.reporting_month = ? and m.cohort_id = ?", [dt.date.fromisoformat(f"{MONTH}-01"), COHORT]).to_arrow_table())
    extract = pl.read_parquet(month["extract"] / "patients.parquet")
    expected = {practice: set(group["patient_id"]) for (practice,), group in members.group_by("practice_code")}
    files = sorted(folder.glob("*.csv"))
    assert len(expected) >= 2 and [f.stem for f in files] == sorted(expected)
    for file in files:
        rows = _read(file)
        ids = [r["patient_id"] for r in rows]
        assert set(ids) == expected[file.stem] and len(ids) == len(set(ids)), file.name
        # Every id is one the extract registers at this practice, and nothing else about the patient is listed.
        own = set(extract.filter(pl.col("practice_code") == file.stem)["patient_id"])
        assert set(ids) <= own
        assert list(rows[0]) == ["patient_id", "rules_met"]
        assert all(r["rules_met"].startswith("in cohort core20; aged 40 or over") for r in rows)
        # Each names the risk factor it met (cohort v3): diabetes, the latest smoking status, QRISK or
        # BMI value, a CKD 3-5 code, or a CHD / stroke / PAD code.
        risk_factors = ("on register diabetes_register", "latest", "a ckd35 code", "a chd_cod / strk_cod / pad_cod code")
        assert all(any(factor in r["rules_met"] for factor in risk_factors) for r in rows)
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert "DIRECT CARE ONLY" in (folder / "README.txt").read_text()


def test_no_list_reaches_what_is_served_reported_or_published(month):
    listed = {r["patient_id"] for file in _lists(month["on"]).glob("*.csv") for r in _read(file)}
    assert listed
    warehouse = month["on"]
    restricted = settings_file.beside_warehouse("restricted", warehouse)
    for name in ("serving", "reports"):
        place = settings_file.beside_warehouse(name, warehouse)
        assert place.exists() and restricted not in place.parents and place not in restricted.parents
        for file in place.rglob("*"):
            if file.is_file():
                data = file.read_bytes()
                assert not any(pid.encode() in data for pid in listed), file
    with connect(warehouse, read_only=True) as con:
        for (table,) in con.execute("select table_name from information_schema.tables where table_schema = 'published'").fetchall():
            text = repr(con.execute(f"select * from published.{table}").fetchall())
            assert not any(pid in text for pid in listed), table
    # The disclosure audit of what is served and reported still passes with the lists on.
    code, output = core20("disclosure-audit", "--warehouse", str(warehouse), "--month", MONTH)
    assert code == 0, output[-2000:]


def test_lists_are_off_by_default(month):
    code, output = month["ran_off"]
    assert code == 0, output[-3000:]
    assert not (settings_file.beside_warehouse("restricted", month["off"]) / "case_finding").exists()
    assert "case-finding lists" not in output
    code, output = core20("case-finding", "--month", MONTH, "--warehouse", str(month["off"]))
    assert code == 1 and "off" in output and "enabled = true" in output
    assert not (settings_file.beside_warehouse("restricted", month["off"]) / "case_finding").exists()


def test_a_restricted_folder_inside_the_serving_folder_is_refused(month):
    serving = settings_file.beside_warehouse("serving", month["on"])
    code, output = core20("case-finding", "--settings", str(month["settings"]), "--month", MONTH,
                          "--warehouse", str(month["on"]), "--restricted", str(serving / "lists"))
    assert code == 1 and "overlaps" in output
    assert not (serving / "lists").exists()
