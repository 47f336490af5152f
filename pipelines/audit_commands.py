"""`core20 explain` and `core20 diff-definitions`: answer auditors from the warehouse.

Both read a month's private, patient-level staged tables from the warehouse (read-only)
and print to the console. Nothing here writes a table, a log line or run metadata:
`explain` output is patient-level by design and must stay on the analyst's screen.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import polars as pl

from pipelines import settings_file
from pipelines.cli import EXIT_ERROR, EXIT_OK
from pipelines.warehouse import connect, table_exists

CONSOLE_ONLY = (
    "core20 explain: patient-level output for this console only - do not paste it into tickets, e-mail "
    "or shared documents."
)


@dataclass
class MonthSettings:
    """What the month ran with: its primary IMD vintage, definitions folder and feeds."""

    imd_vintage: str
    definitions_dir: str | None
    feeds_present: list[str]
    usage_hashes: dict[tuple[str, str], str]


def _recorded_settings(con, month) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Return the month's recorded settings and the hash of each definition it used (empty when not recorded)."""
    settings: dict[str, str] = {}
    usage: dict[tuple[str, str], str] = {}
    if table_exists(con, "lineage", "run_manifest"):
        settings = dict(con.execute(
            "select item_id, item_version from lineage.run_manifest where reporting_month = ? and item_type = 'setting'",
            [month]).fetchall())
    if table_exists(con, "lineage", "definition_usage"):
        usage = {(k, i): h for k, i, h in con.execute(
            "select definition_kind, definition_id, definition_hash from lineage.definition_usage where reporting_month = ?",
            [month]).fetchall()}
    return settings, usage


def month_settings(warehouse: Path, month: date) -> MonthSettings:
    """Return the settings a month ran with, from its run manifest, usage and feed availability.

    Raises:
        ValueError: the warehouse or the month is missing (the message says how to make it).
    """
    if not warehouse.exists():
        raise ValueError(f"warehouse {warehouse} does not exist: run `core20 run` first (or pass --warehouse).")
    with connect(warehouse, read_only=True) as con:
        if not table_exists(con, "staging", "patients"):
            raise ValueError(f"{warehouse} holds no staged extract: run `core20 run --month {month:%Y-%m}` first.")
        n_month = con.execute("select count(*) from staging.patients where reporting_month = ?", [month]).fetchall()[0][0]
        if n_month == 0:
            raise ValueError(f"{warehouse} holds no staged extract for {month:%Y-%m}: run `core20 run --month {month:%Y-%m}` first.")
        present: list[str] = []
        if table_exists(con, "staging", "feed_availability"):
            present = [row[0] for row in con.execute(
                "select feed from staging.feed_availability where reporting_month = ? and is_present order by feed",
                [month]).fetchall()]
        settings, usage = _recorded_settings(con, month)
    return MonthSettings(settings.get("primary_imd_vintage") or "IMD2025", settings.get("definitions_dir") or None,
                         present, usage)


@dataclass
class MonthTables:
    """A month's staged inputs read from the warehouse (all patients, or one)."""

    patients: pl.DataFrame
    events: pl.DataFrame
    deprivation: pl.DataFrame | None
    ethnicity: pl.DataFrame | None
    feeds: dict[str, pl.DataFrame | None]
    imd_vintage: str
    definitions_dir: str | None
    usage_hashes: dict[tuple[str, str], str]


def _read(con, sql: str, params: list) -> pl.DataFrame:
    return pl.from_arrow(con.sql(sql, params=params).to_arrow_table())


def load_month(warehouse: Path, month: date, patient_id: str | None = None) -> MonthTables:
    """Read a month's staged tables (optionally one patient's rows) from the warehouse.

    Raises:
        ValueError: the warehouse or the month is missing (the message says how to make it).
    """
    from pipelines.segmentation.schemas import FEEDS

    if not warehouse.exists():
        raise ValueError(f"warehouse {warehouse} does not exist: run `{settings_file.hint('run', warehouse, month=f'{month:%Y-%m}')}` "
                         "first (or pass the --warehouse that month ran with).")
    where = "reporting_month = $1" + (" and patient_id = $2" if patient_id is not None else "")
    params = [month] + ([patient_id] if patient_id is not None else [])
    with connect(warehouse, read_only=True) as con:
        if not table_exists(con, "staging", "patients"):
            raise ValueError(f"{warehouse} holds no staged extract: run `{settings_file.hint('run', warehouse, month=f'{month:%Y-%m}')}` first.")
        n_month = con.execute("select count(*) from staging.patients where reporting_month = ?", [month]).fetchall()[0][0]
        if n_month == 0:
            raise ValueError(f"{warehouse} holds no staged extract for {month:%Y-%m}: "
                             f"run `{settings_file.hint('run', warehouse, month=f'{month:%Y-%m}')}` first.")
        patients = _read(con, f"select * from staging.patients where {where}", params)
        # In the order staging used to store them (patient, code, date, value): the stored
        # order within a slice of patients is the write's DISTINCT's (`extract.stage_events`).
        events = _read(con, f"select * from staging.events where {where} order by patient_id, code, event_date, value",
                       params)
        deprivation = (_read(con, f"select * from population.patient_deprivation where {where}", params)
                       if table_exists(con, "population", "patient_deprivation") else None)
        ethnicity = (_read(con, f"select patient_id, ethnic_category, ethnicity_16, ethnicity_broad from "
                                f"population.patient_attributes where {where}", params)
                     if table_exists(con, "population", "patient_attributes") else None)
        present: set[str] = set()
        if table_exists(con, "staging", "feed_availability"):
            present = {row[0] for row in con.execute(
                "select feed from staging.feed_availability where reporting_month = ? and is_present", [month]).fetchall()}
        feeds = {
            name: _read(con, f'select * from staging."{name}" where {where}', params) if name in present else None
            for name in FEEDS
        }
        settings, usage = _recorded_settings(con, month)
    return MonthTables(patients, events, deprivation, ethnicity, feeds,
                       settings.get("primary_imd_vintage") or "IMD2025", settings.get("definitions_dir") or None, usage)


def _term_lookup(defs, reference_dir):
    from pipelines.segmentation.cohorts import read_definition_codelist

    @lru_cache(maxsize=None)
    def lookup(codelist_id: str) -> dict[str, str]:
        return dict(read_definition_codelist(defs, codelist_id, reference_dir).select("code", "term").iter_rows())

    return lookup


def add_parsers(sub) -> None:
    """Add the `explain` and `diff-definitions` subcommands to the `core20` parser."""
    explain = sub.add_parser("explain", help="show why one patient is in or out of every register, cohort and indicator (console only)")
    explain.add_argument("--patient", required=True, help="the pseudonymised patient id, as in the extract")
    explain.add_argument("--month", required=True, help="reporting month YYYY-MM (must have been run)")
    explain.add_argument("--warehouse", help="DuckDB file (default $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/core20plus5.duckdb)")
    explain.add_argument("--definitions", help="definitions folder (default: the one the month ran with)")
    explain.add_argument("--reference-dir", help="reference data folder (default $CORE20_REFERENCE_DIR, else core20.toml, else ../shared/reference_data)")

    diff = sub.add_parser("diff-definitions", help="compare two definition folders on a month: who enters and leaves, and why")
    diff.add_argument("old", help="the current definitions folder")
    diff.add_argument("new", help="the proposed definitions folder")
    diff.add_argument("--month", required=True, help="reporting month YYYY-MM (must have been run)")
    diff.add_argument("--warehouse", help="DuckDB file (default $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/core20plus5.duckdb)")
    diff.add_argument("--reference-dir", help="reference data folder (default $CORE20_REFERENCE_DIR, else core20.toml, else ../shared/reference_data)")


def run(args: argparse.Namespace) -> int:
    """Run `explain` or `diff-definitions`; return the exit code (1 with a message on bad input)."""
    from pipelines.segmentation.definitions import DefinitionError
    from reference_data.loader import ReferenceDataError

    command = "explain" if args.command == "explain" else "diff-definitions"
    try:
        return _explain(args) if command == "explain" else _diff(args)
    except (ValueError, DefinitionError, ReferenceDataError) as error:
        print(f"core20 {command}: {error}", file=sys.stderr)
        return EXIT_ERROR


def _month(text: str) -> date:
    from pipelines.partitions import parse_month

    return parse_month(text)


def _explain(args: argparse.Namespace) -> int:
    from pipelines.resources import resolve_warehouse_path
    from pipelines.segmentation.cohorts import load_codelists
    from pipelines.segmentation.definitions import load_definitions
    from pipelines.segmentation.explain import explain_patient
    from pipelines.segmentation.extract import month_end

    month = _month(args.month)
    tables = load_month(resolve_warehouse_path(args.warehouse), month, args.patient)
    if tables.patients.height != 1:
        raise ValueError(
            f"no patient registered in {month:%Y-%m} has that id (staging.patients holds the month's registered "
            "patients); check the id and the month."
        )
    folder = args.definitions or tables.definitions_dir
    defs = load_definitions(folder)
    codelists = load_codelists(defs, args.reference_dir)
    explanation = explain_patient(
        defs, codelists, tables.patients, tables.events, month_end(month),
        deprivation=tables.deprivation, ethnicity=tables.ethnicity, feeds=tables.feeds,
        imd_vintage=tables.imd_vintage, term_lookup=_term_lookup(defs, args.reference_dir),
    )
    print(CONSOLE_ONLY)
    print(f"definitions: {defs.directory}")
    differing = sorted(f"{k} {i}" for (k, i), h in tables.usage_hashes.items()
                       if k != "ics" and i in defs.store(k) and defs.definition_hash(k, i) != h)
    if differing:
        print(f"note: the month was run with other versions of {len(differing)} definition(s): {', '.join(differing)}")
    for line in explanation.lines():
        print(line)
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from pipelines.resources import resolve_warehouse_path
    from pipelines.segmentation.cohorts import load_codelists
    from pipelines.segmentation.definition_diff import MonthData, diff_definitions, format_changes
    from pipelines.segmentation.definitions import load_definitions
    from pipelines.segmentation.extract import month_end
    from pipelines.segmentation.patient_model import ModelSession

    month = _month(args.month)
    old, new = load_definitions(args.old), load_definitions(args.new)
    old_codelists, new_codelists = load_codelists(old, args.reference_dir), load_codelists(new, args.reference_dir)
    warehouse = resolve_warehouse_path(args.warehouse)
    settings = month_settings(warehouse, month)
    # Both models are built where the month's staged rows are: nothing patient-level leaves DuckDB.
    with connect(warehouse, read_only=True) as con:
        ethnicity = pl.from_arrow(con.sql("SELECT * FROM reference.ethnicity_codes").to_arrow_table())
        session = ModelSession.in_warehouse(con, month, settings.feeds_present, ethnicity)
        n_patients = con.execute("select count(*) from staging.patients where reporting_month = ?", [month]).fetchall()[0][0]
        data = MonthData(None, None, None, None, {}, month_end(month), settings.imd_vintage, session=session)
        old_terms, new_terms = _term_lookup(old, args.reference_dir), _term_lookup(new, args.reference_dir)

        def terms(codelist_id: str) -> dict[str, str]:
            merged: dict[str, str] = {}
            for lookup, defs in ((old_terms, old), (new_terms, new)):
                if codelist_id in defs.codelist_ids():
                    merged.update(lookup(codelist_id))
            return merged

        changes = diff_definitions(old, new, old_codelists, new_codelists, data, term_lookup=terms)
    print(f"diff-definitions {month:%Y-%m}: {old.directory} -> {new.directory} "
          f"({n_patients:,} registered patients; counts are unrounded, for this console only)")
    for line in format_changes(changes):
        print(line)
    return EXIT_OK
