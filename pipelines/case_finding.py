"""Practice case-finding lists: each practice's own patients in a focus cohort, for direct care.

The seeds' improvement work starts from "identify the people in the focus population".
For a chosen cohort (`case_finding.cohort`, usually one of ics.yaml's focus cohorts) this
writes one CSV per practice listing that practice's registered patients in the cohort at the
month end, by the extract's pseudonymised id only, with the rules each one met - the same
rule descriptions `core20 explain` prints, evaluated by the same patient model as the
month's figures (so a list and the published counts cannot disagree about who is in).

It is patient-level output for direct care, so it is off by default (`case_finding.enabled`)
and written only to the restricted, owner-only folder (`paths.restricted`), which must not
overlap a serving or report folder; nothing served, published or reported reads it. The
practice re-identifies its own patients from the pseudonymised id through the route the
ICS's direct-care arrangements set (README, "Practice case-finding lists").
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import date
from pathlib import Path

import polars as pl

from pipelines import settings_file
from pipelines.cli import EXIT_ERROR, EXIT_OK
from pipelines.quarantine_export import _private_folder, _write_private, check_restricted
from pipelines.warehouse import connect

FOLDER = "case_finding"
NOTE = """Practice case-finding lists for {month}: cohort {cohort} v{version}
{title}

RESTRICTED, FOR DIRECT CARE ONLY. Each file lists one practice's own registered patients in
the cohort at {reference_date}, by the extract's pseudonymised patient id only, with the rules
each patient met. Send each practice only its own file, by the route the ICS's direct-care
arrangements set. Re-identification (pseudonymised id -> the patient's record) is done by the
practice, or by the party the data-sharing agreement names, and by no one else. Keep these
files in this owner-only folder; never copy them into a serving, report or shared folder;
delete them when the next month's lists replace them.

Columns:
  patient_id   the extract's pseudonymised patient id
  rules_met    the cohort's rules this patient met (as `core20 explain` words them), separated by ";"
"""


def enabled() -> bool:
    """Return whether the settings file switches the lists on (`[case_finding] enabled = true`)."""
    value, _ = settings_file.resolve("case_finding.enabled")
    return value is True


def cohort_setting(given: str | None = None) -> str | None:
    """Return the cohort the lists are for: flag, $CORE20_CASE_FINDING_COHORT, settings file."""
    value, _ = settings_file.resolve("case_finding.cohort", given)
    return value


def _met_rules(node, path: str, flags: dict[str, bool]) -> list[str]:
    """Return the descriptions of the rules a member met: through all_of/any_of to the rules that decided."""
    if node.key in ("all_of", "any_of"):
        return [rule for sub, child in node.children() for rule in _met_rules(child, f"{path}.{sub}", flags)
                if flags[f"{path}.{sub}"]]
    return [node.describe()]


def case_finding_lists(warehouse: Path, month: date, cohort_id: str, reference_dir: str | None = None) -> tuple[dict, pl.DataFrame]:
    """Return (the cohort's definition facts, one row per member: practice_code, patient_id, rules_met).

    The members and their rules come from the month's staged tables through the patient
    model the month's figures use, with the definitions the month ran with.
    """
    from pipelines.audit_commands import month_settings
    from pipelines.segmentation.cohorts import load_codelists
    from pipelines.segmentation.criteria import walk
    from pipelines.segmentation.definitions import load_definitions
    from pipelines.segmentation.extract import month_end
    from pipelines.segmentation.patient_model import ModelBuilder, ModelSession, flag_column, quote

    settings = month_settings(warehouse, month)
    defs = load_definitions(settings.definitions_dir)
    if cohort_id not in defs.cohorts:
        raise ValueError(f"case_finding.cohort '{cohort_id}' is not a cohort of {defs.directory}/cohorts.yaml; "
                         f"expected one of {', '.join(sorted(defs.cohorts))}")
    reason = defs.availability("cohort", cohort_id, settings.feeds_present)
    if reason:
        raise ValueError(f"cohort {cohort_id} is not available for {month:%Y-%m}: {reason}")
    codelists = load_codelists(defs, reference_dir)
    builder = ModelBuilder(defs, codelists, month_end(month), settings.imd_vintage).plan(feeds_present=settings.feeds_present)
    nodes: dict[str, str] = {}
    roots = defs.roots("cohort", cohort_id)
    for part, root in roots:
        for path, node in walk(root, part):
            nodes[path] = builder.criterion(node)
    with connect(warehouse, read_only=True) as con:
        ethnicity = pl.from_arrow(con.sql("SELECT * FROM reference.ethnicity_codes").to_arrow_table())
        session = ModelSession.in_warehouse(con, month, settings.feeds_present, ethnicity)
        table = session.materialise(builder, "_case_finding")
        paths = list(nodes)
        members = session.query(
            f"select practice_code, patient_id, {', '.join(f'{sql} as _n{i}' for i, sql in enumerate(nodes.values()))} "
            f"from {table} where {quote(flag_column('cohort', cohort_id))} order by practice_code, patient_id")
    rows = []
    for member in members.iter_rows(named=True):
        flags = {path: bool(member[f"_n{i}"]) for i, path in enumerate(paths)}
        rules = [rule for part, root in roots for rule in _met_rules(root, part, flags)]
        rows.append((member["practice_code"], member["patient_id"], "; ".join(rules)))
    definition = defs.cohorts[cohort_id]
    facts = {"cohort": cohort_id, "version": definition.version, "title": definition.title,
             "reference_date": month_end(month).isoformat(), "month": f"{month:%Y-%m}"}
    frame = pl.DataFrame(rows, schema={"practice_code": pl.String, "patient_id": pl.String, "rules_met": pl.String},
                         orient="row")
    return facts, frame


def write_lists(facts: dict, members: pl.DataFrame, restricted: Path, forbidden: tuple[Path, ...] = ()) -> Path:
    """Write one owner-only CSV per practice to `restricted/case_finding/YYYY-MM/<cohort>/`; return the folder.

    The month's lists for the cohort are replaced as a whole (written beside, then swapped
    in), so a patient who left the cohort is never left in an older file.
    """
    restricted = check_restricted(restricted, forbidden)
    parent = restricted / FOLDER / facts["month"]
    for level in (restricted, restricted / FOLDER, parent):
        _private_folder(level)
    folder = parent / facts["cohort"]
    staging = parent / f".{facts['cohort']}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    _private_folder(staging)
    for (practice,), group in members.group_by("practice_code", maintain_order=True):
        name = "".join(c for c in str(practice) if c.isalnum()) or "no_practice"
        _write_private(staging / f"{name}.csv", group.select("patient_id", "rules_met").write_csv().encode("utf-8"))
    _write_private(staging / "README.txt", NOTE.format(**facts).encode("utf-8"))
    old = parent / f".{facts['cohort']}.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def write_month(warehouse: Path, month: date, *, cohort: str | None = None, restricted: str | None = None,
                serving: str | None = None, reports: str | None = None, reference_dir: str | None = None,
                warehouse_given: str | None = None) -> tuple[Path, int, int]:
    """Write the month's lists for the configured cohort; return (folder, patients, practices)."""
    from pipelines.resources import ServingOutputs

    cohort_id = cohort_setting(cohort)
    if not cohort_id:
        raise ValueError("no cohort chosen: set [case_finding] cohort = \"<cohort id>\" in core20.toml "
                         "(or pass --cohort)")
    outputs = ServingOutputs(restricted_dir=restricted, serving_root=serving, reports_dir=reports,
                             warehouse=warehouse_given)
    forbidden = (outputs.serving_path(), outputs.reports_path())
    check_restricted(outputs.restricted_path(), forbidden)
    facts, members = case_finding_lists(warehouse, month, cohort_id, reference_dir)
    folder = write_lists(facts, members, outputs.restricted_path(), forbidden)
    return folder, members.height, members["practice_code"].n_unique()


def add_parser(sub) -> None:
    """Add the `case-finding` subcommand to the `core20` parser."""
    parser = sub.add_parser(
        "case-finding", help="write practice case-finding lists for the focus cohort (restricted, direct care; "
                             "off unless core20.toml switches it on)",
        description="For the cohort in [case_finding] of core20.toml, write one CSV per practice listing its own "
                    "patients in the cohort at the month end (pseudonymised id and the rules each met) to the "
                    "restricted owner-only folder. Patient-level, for direct care: refused unless "
                    "[case_finding] enabled = true. `core20 run` writes them after each published month when on.",
    )
    parser.add_argument("--month", required=True, help="reporting month YYYY-MM (must have been run)")
    parser.add_argument("--cohort", help="cohort id (default: case_finding.cohort of core20.toml)")
    parser.add_argument("--warehouse", help="DuckDB file (default $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/core20plus5.duckdb)")
    parser.add_argument("--restricted", help="restricted folder (default $CORE20_RESTRICTED, else core20.toml, else beside the warehouse)")
    parser.add_argument("--reference-dir", help="reference data folder (default $CORE20_REFERENCE_DIR, else core20.toml, else ../shared/reference_data)")


def run(args: argparse.Namespace) -> int:
    """Run `core20 case-finding`; return the exit code."""
    from pipelines.partitions import parse_month
    from pipelines.resources import resolve_warehouse_path

    if not enabled():
        print("core20 case-finding: off. Practice case-finding lists are patient-level output for direct care; "
              "switch them on with `[case_finding] enabled = true` in core20.toml once the ICS's direct-care basis "
              "and DPIA cover them (README, 'Practice case-finding lists').", file=sys.stderr)
        return EXIT_ERROR
    try:
        month = parse_month(args.month)
        warehouse = resolve_warehouse_path(args.warehouse)
        folder, n_patients, n_practices = write_month(warehouse, month, cohort=args.cohort, restricted=args.restricted,
                                                      reference_dir=args.reference_dir, warehouse_given=args.warehouse)
    except (ValueError, OSError) as error:
        print(f"core20 case-finding: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote case-finding lists for {n_practices} practice(s) to {folder} "
          "(owner-only; RESTRICTED, direct care only - see README.txt there)")
    return EXIT_OK
