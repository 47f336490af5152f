"""`core20 quarantine`: what the month's row rules set aside, and an export to send back to the supplier.

Without `--export` it prints counts by file and rule (no value). With `--export` it writes
the quarantined rows, as supplied, to the restricted folder - one CSV per extract file,
each row with the supplier's own line number in that file, the rule that caught it and the
column it is about - so the supplier can find and fix them.

The restricted folder is row-level patient data: it is owner-only (0700, files 0600), it
sits beside the warehouse unless set (`paths.restricted`), it must not be inside a
serving or report folder, and nothing here reads it back into anything served, published
or reported.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from datetime import date
from pathlib import Path

import polars as pl

from pipelines import settings_file
from pipelines.cli import EXIT_ERROR, EXIT_OK
from pipelines.warehouse import connect, table_exists

NOTE = """Rows core20plus5 set aside (quarantined) from the {month} extract, to send back to the supplier.

RESTRICTED: these files hold patient-level rows exactly as supplied. Keep them in this
owner-only folder, send them only by the route agreed with the supplier for extracts, and
delete them once the supplier has them. Never copy them into a serving, report or shared folder.

One file per extract file. Columns:
  file_line    the line in the supplier's file (CSV: the header is line 1; Parquet: the row, from 1)
  data_row     the data row, from 1 (the header not counted)
  rule         the rule that caught the row (e.g. sex_code_unknown, event_date_unreadable)
  column       the column the rule is about
  then the row's columns as supplied (named as in core20plus5's input contract)
"""


def add_parser(sub) -> None:
    """Add the `quarantine` subcommand to the `core20` parser."""
    parser = sub.add_parser(
        "quarantine", help="count the rows a month's row rules set aside, or --export them for the supplier",
        description="Print how many rows of each extract file a month's row rules quarantined, by rule (no values). "
                    "With --export, write those rows as supplied, with the supplier's own line numbers, to the "
                    "restricted owner-only folder beside the warehouse (never served, published or reported).",
    )
    parser.add_argument("--month", required=True, help="reporting month YYYY-MM (must have been run, published or blocked)")
    parser.add_argument("--export", action="store_true",
                        help="write the quarantined rows to the restricted folder, one CSV per extract file")
    parser.add_argument("--warehouse", help="DuckDB file (default $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/core20plus5.duckdb)")
    parser.add_argument("--restricted", help="restricted folder for the export (default $CORE20_RESTRICTED, else core20.toml, "
                                             "else beside the warehouse: data/restricted)")


def run(args: argparse.Namespace) -> int:
    """Run `core20 quarantine`; return the exit code (1 with a message on bad input)."""
    from pipelines.partitions import parse_month
    from pipelines.resources import ServingOutputs, resolve_warehouse_path

    try:
        month = parse_month(args.month)
        warehouse = resolve_warehouse_path(args.warehouse)
        rows = quarantined_rows(warehouse, month)
        outputs = ServingOutputs(restricted_dir=args.restricted, warehouse=args.warehouse)
        forbidden = (outputs.serving_path(), outputs.reports_path())
        if args.export:
            check_restricted(outputs.restricted_path(), forbidden)
        print(f"quarantined rows of {month:%Y-%m} in {warehouse} (staging.quarantine, private):")
        if rows.is_empty():
            print("  none: every row of the extract passed the row rules")
            return EXIT_OK
        for source_file, rule, n in _counts(rows):
            print(f"  {source_file}: {rule} {n:,}")
        if not args.export:
            print(f"  to send them back to the supplier: {settings_file.hint('quarantine', warehouse, month=f'{month:%Y-%m}', export=True)}")
            return EXIT_OK
        folder = export(rows, month, outputs.restricted_path(), forbidden=forbidden)
    except (ValueError, OSError) as error:
        print(f"core20 quarantine: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {rows.height:,} row(s) to {folder} (owner-only; RESTRICTED patient-level rows - see README.txt there)")
    return EXIT_OK


def _counts(rows: pl.DataFrame) -> list[tuple[str, str, int]]:
    counted = rows.group_by("source_file", "rule").len().sort(["source_file", "len", "rule"], descending=[False, True, False])
    return [(Path(f).name, r, n) for f, r, n in counted.iter_rows()]


def quarantined_rows(warehouse: Path, month: date) -> pl.DataFrame:
    """Return the month's staging.quarantine rows, oldest file row first.

    Raises:
        ValueError: no warehouse, or the month never ran (the message says which command makes it).
    """
    if not warehouse.exists():
        raise ValueError(f"warehouse {warehouse} does not exist: run "
                         f"`{settings_file.hint('run', warehouse, month=f'{month:%Y-%m}')}` first.")
    with connect(warehouse, read_only=True) as con:
        if not table_exists(con, "staging", "quarantine"):
            raise ValueError(f"{warehouse} holds no staged extract: run "
                             f"`{settings_file.hint('run', warehouse, month=f'{month:%Y-%m}')}` first.")
        ran = con.execute("select count(*) from staging.patients where reporting_month = ?", [month]).fetchall()[0][0]
        rows = pl.from_arrow(con.sql(
            "select * from staging.quarantine where reporting_month = $1 order by source_table, source_file, row_number",
            params=[month]).to_arrow_table())
    if not ran and rows.is_empty():
        raise ValueError(f"{warehouse} holds no extract for {month:%Y-%m}: run "
                         f"`{settings_file.hint('run', warehouse, month=f'{month:%Y-%m}')}` first.")
    return rows


def file_line(source_file: str, row_number: pl.Expr) -> pl.Expr:
    """Return the supplier's line for a data row: CSV files have a header on line 1, Parquet rows count from 1.

    Examples:
        >>> pl.select(file_line("patients.csv", pl.lit(1)), file_line("patients.parquet", pl.lit(1)).alias("p")).row(0)
        (2, 1)
    """
    return row_number + 1 if not source_file.lower().endswith(".parquet") else row_number


def export(rows: pl.DataFrame, month: date, restricted: Path, forbidden: tuple[Path, ...] = ()) -> Path:
    """Write the quarantined rows to `restricted/quarantine/YYYY-MM/`, one owner-only CSV per extract file.

    Returns the folder written. Raises ValueError when the restricted folder is inside a
    served or reported folder (or holds one), or belongs to someone else.
    """
    restricted = check_restricted(restricted, forbidden)
    folder = restricted / "quarantine" / f"{month:%Y-%m}"
    for level in (restricted, restricted / "quarantine", folder):
        _private_folder(level)
    for source_file, group in rows.group_by("source_file", maintain_order=True):
        name = Path(source_file[0] if isinstance(source_file, tuple) else source_file).name
        records = group["record"].str.json_decode()
        frame = pl.concat([
            group.select(file_line(name, pl.col("row_number")).alias("file_line"), pl.col("row_number").alias("data_row"),
                         "rule", "column"),
            records.struct.unnest() if records.dtype == pl.Struct else pl.DataFrame(),
        ], how="horizontal")
        _write_private(folder / f"{Path(name).stem}_quarantined.csv", frame.write_csv().encode("utf-8"))
    _write_private(folder / "README.txt", NOTE.format(month=f"{month:%Y-%m}").encode("utf-8"))
    return folder


def check_restricted(restricted: Path, forbidden: tuple[Path, ...]) -> Path:
    """Return the restricted folder resolved, or raise ValueError when it overlaps a served or reported folder."""
    restricted = restricted.resolve()
    for place in forbidden:
        place = place.resolve()
        if restricted == place or place in restricted.parents or restricted in place.parents:
            raise ValueError(f"the restricted folder {restricted} overlaps {place}, which is served or reported; "
                             "set paths.restricted (or --restricted) to a folder of its own.")
    return restricted


def _private_folder(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ValueError(f"{path} belongs to another user; the restricted folder must be the analyst's own.")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only, from the first byte (never world-readable, even briefly)."""
    temporary = path.with_name(f".{path.name}.partial")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
