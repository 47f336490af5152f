"""Read a practice-register extract and stage it to the table contracts.

An extract is one folder holding `patients` and `events` as CSV (optionally gzipped) or
Parquet. Suppliers name their columns differently, so an optional `column_mapping.yaml`
in the folder (or passed explicitly) maps the contract's names onto the supplier's
headers and states the date format and the vintage of a supplied LSOA code:

    patients:
      patient_id: PatientGUID
      practice_code: OrgCode
      postcode: Postcode
      date_of_birth: DOB
      sex: Gender
      registration_start_date: RegDate
      registration_end_date: DeRegDate
    events:
      patient_id: PatientGUID
      code: SnomedCode
      event_date: EffectiveDate
      value: Value1
    options:
      date_format: "%d/%m/%Y"      # default ISO %Y-%m-%d (Parquet dates need none)
      lsoa_vintage: 2011            # when `lsoa_code` is supplied: 2011 or 2021
      delimiter: ","
      sex_values: {"1": M, "2": F, "9": U}   # supplier codes -> M/F/I/U

Every failure is an `ExtractError` whose message names the file, the column and what was
expected, and never quotes a patient-level value.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Sequence

import polars as pl
import yaml

from pipelines.segmentation import codes, quarantine
from pipelines.segmentation.quarantine import ROW, UNREADABLE
from pipelines.segmentation.schemas import (
    INPUT_EVENTS,
    INPUT_PATIENTS,
    QUARANTINE,
    SEX_CODES,
    STAGING_EVENTS,
    STAGING_PATIENTS,
    Table,
)

MAPPING_FILE = "column_mapping.yaml"
SUFFIXES = (".parquet", ".csv", ".csv.gz")


class ExtractError(ValueError):
    """The extract cannot be read as the input contract describes.

    The message says everything (file, column or line, what was expected); the attributes
    repeat where, for the Dagster UI's failure metadata. Neither ever quotes a patient value.
    """

    def __init__(self, message: str, *, file: Path | None = None, column: str | None = None, line: int | None = None):
        super().__init__(message)
        self.file, self.column, self.line = file, column, line

    def metadata(self) -> dict[str, str | int]:
        """Return where the problem is: the file's name, and the column or line when known."""
        where = {"file": self.file.name if self.file else None, "column": self.column, "line": self.line}
        return {k: v for k, v in where.items() if v is not None}


@dataclass(frozen=True)
class ColumnMapping:
    """How a supplier's extract maps onto the input contract."""

    patients: dict[str, str] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    date_format: str = "%Y-%m-%d"
    lsoa_vintage: int | None = None
    delimiter: str = ","
    sex_values: dict[str, str] = field(default_factory=dict)

    def for_table(self, table: str) -> dict[str, str]:
        """Return contract name -> supplier header for `table` (identity where unmapped)."""
        return self.patients if table == "patients" else self.events


def _mapping_section(raw: dict, section: str, path: Path) -> dict[str, str]:
    value = raw.get(section)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ExtractError(
            f"{path}: section '{section}' must map contract column names to the supplier's headers "
            f"(e.g. `patient_id: PatientGUID`, one a line); found {_yaml_kind(value)}.", file=path,
        )
    bad_values = [k for k, v in value.items() if not isinstance(v, (str, int)) or isinstance(v, bool)]
    if bad_values:
        raise ExtractError(
            f"{path}: section '{section}': the header mapped to {sorted(map(str, bad_values))} must be a column "
            "name (text); found a list, mapping or empty value.", file=path, column=str(bad_values[0]),
        )
    mapped = {str(k): str(v) for k, v in value.items()}
    targets: dict[str, list[str]] = {}
    for contract, header in mapped.items():
        targets.setdefault(header, []).append(contract)
    shared = {h: sorted(c) for h, c in targets.items() if len(c) > 1}
    if shared:
        header, columns = sorted(shared.items())[0]
        raise ExtractError(
            f"{path}: section '{section}' maps {len(columns)} contract columns ({', '.join(columns)}) to the same "
            f"header '{header}'; expected one supplier column per contract column.", file=path, column=columns[0],
        )
    return mapped


def _yaml_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a single value of type {type(value).__name__}"


def _mapping_options(raw: dict, path: Path) -> dict[str, Any]:
    options = raw.get("options")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ExtractError(f"{path}: section 'options' must be a mapping of option: value; found {_yaml_kind(options)}.", file=path)
    allowed_options = {"date_format", "lsoa_vintage", "delimiter", "sex_values"}
    if set(options) - allowed_options:
        raise ExtractError(
            f"{path}: unknown option(s) {sorted(map(str, set(options) - allowed_options))}; expected {sorted(allowed_options)}.",
            file=path,
        )
    vintage = options.get("lsoa_vintage")
    if vintage is not None and (isinstance(vintage, bool) or str(vintage).strip() not in ("2011", "2021")):
        raise ExtractError(f"{path}: option 'lsoa_vintage' must be 2011 or 2021 (a year, as digits); found "
                           f"{_yaml_kind(vintage) if not isinstance(vintage, (str, int)) else repr(vintage)}.", file=path)
    delimiter = options.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ExtractError(f"{path}: option 'delimiter' must be a single character other than a quote or line break, "
                           f"e.g. \";\" or \"\\t\"; found {delimiter!r}.", file=path)
    date_format = options.get("date_format", "%Y-%m-%d")
    if not isinstance(date_format, str) or "%" not in date_format:
        raise ExtractError(f"{path}: option 'date_format' must be a strftime pattern such as \"%d/%m/%Y\"; found "
                           f"{date_format!r}.", file=path)
    sex_values = options.get("sex_values") or {}
    if not isinstance(sex_values, dict):
        raise ExtractError(
            f"{path}: option 'sex_values' must map the supplier's codes to {list(SEX_CODES)}, e.g. "
            f"`sex_values: {{\"1\": M, \"2\": F}}`; found {_yaml_kind(sex_values)}.", file=path,
        )
    sex_values = {str(k): str(v) for k, v in sex_values.items()}
    if set(sex_values.values()) - set(SEX_CODES):
        raise ExtractError(f"{path}: option 'sex_values' must map onto {list(SEX_CODES)}; found "
                           f"{sorted(set(sex_values.values()) - set(SEX_CODES))}.", file=path)
    return {"date_format": date_format, "lsoa_vintage": int(str(vintage).strip()) if vintage is not None else None,
            "delimiter": delimiter, "sex_values": sex_values}


def load_column_mapping(path: Path | None) -> ColumnMapping:
    """Return the column mapping in `path`, or the identity mapping when there is none.

    Every way the file can be wrong (not YAML, not a mapping, a section or option of the
    wrong shape, two contract columns sent to one header) is an `ExtractError` naming the
    file and the section, option or column, and saying what was expected.

    Arguments:
        path: a YAML file as described in the module docstring, or None.
    """
    if path is None or not path.exists():
        return ColumnMapping()
    if not path.is_file():
        raise ExtractError(f"{path}: is not a file; expected a YAML column mapping.", file=path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ExtractError(f"{path}: is not UTF-8 text; expected a YAML column mapping.", file=path) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ExtractError(f"{path}: not valid YAML{where}; expected sections patients:, events: and options:.",
                           file=path, line=mark.line + 1 if mark is not None else None) from None
    if raw is None:
        return ColumnMapping()
    if not isinstance(raw, dict):
        raise ExtractError(
            f"{path}: must be a mapping with the sections patients:, events: and options:; found {_yaml_kind(raw)}.",
            file=path,
        )
    known_sections = {"patients", "events", "options"}
    unknown = set(map(str, raw)) - known_sections
    if unknown:
        raise ExtractError(f"{path}: unknown section(s) {sorted(unknown)}; expected {sorted(known_sections)}.", file=path)
    sections = {}
    for section, table in (("patients", INPUT_PATIENTS), ("events", INPUT_EVENTS)):
        sections[section] = _mapping_section(raw, section, path)
        bad = set(sections[section]) - set(table.names)
        if bad:
            raise ExtractError(
                f"{path}: section '{section}' maps unknown contract column(s) {sorted(bad)}; "
                f"the contract's columns are {table.names}.", file=path,
            )
    return ColumnMapping(patients=sections["patients"], events=sections["events"], **_mapping_options(raw, path))


def find_table_file(folder: Path, table: str) -> Path:
    """Return the file holding `table` in an extract folder (Parquet, CSV or gzipped CSV)."""
    if not folder.is_dir():
        raise ExtractError(f"extract folder {folder} does not exist.")
    candidates = [folder / f"{table}{suffix}" for suffix in SUFFIXES]
    for candidate in candidates:
        if candidate.is_symlink() and not candidate.exists():
            raise ExtractError(
                f"{candidate}: is a symbolic link that leads nowhere (its target is missing, or the link loops); "
                f"expected the '{table}' file or a link to it.", file=candidate,
            )
        if candidate.exists() and not candidate.is_file():
            raise ExtractError(f"{candidate}: is a folder, not a file; expected the '{table}' table as one file.",
                               file=candidate)
    found = [c for c in candidates if c.is_file()]
    if not found:
        raise ExtractError(
            f"extract folder {folder} has no '{table}' file: expected one of "
            f"{', '.join(table + s for s in SUFFIXES)}."
        )
    if len(found) > 1:
        raise ExtractError(f"extract folder {folder} has more than one '{table}' file: {[p.name for p in found]}.")
    return found[0]


def _is_parquet(path: Path) -> bool:
    return path.name.endswith(".parquet")


def _first_line_not_utf8(path: Path) -> int | None:
    """Return the 1-based line holding the first byte sequence that is not UTF-8, if any."""
    import gzip

    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return data.count(b"\n", 0, error.start) + 1
    return None


def _read_raw(path: Path, mapping: ColumnMapping) -> pl.DataFrame:
    # Messages never quote the reader's own error text for CSV: it can carry a field's value.
    if path.stat().st_size == 0:
        expected = "a Parquet file" if _is_parquet(path) else "a header line naming the columns, then one line per row"
        raise ExtractError(f"{path}: the file is empty (0 bytes); expected {expected}.", file=path)
    from pipelines.limits import InputTooLarge, check_input

    try:
        check_input(path)  # a compressed file may not expand without limit (pipelines/limits.py)
    except InputTooLarge as error:
        raise ExtractError(str(error), file=path) from None
    if _is_parquet(path):
        try:
            return pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as error:
            reason = str(error).splitlines()[0][:200]
            raise ExtractError(
                f"{path}: could not be read as Parquet ({reason}); expected a complete Parquet file. It may "
                "have been cut short in transfer: ask the supplier to send it again.", file=path,
            ) from None
    _refuse_utf16(path)
    try:
        raw = pl.read_csv(path, separator=mapping.delimiter, infer_schema_length=0, encoding="utf8")
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
        line = _first_line_not_utf8(path)
        if line is not None:
            raise ExtractError(
                f"{path}: line {line} is not valid UTF-8 text; expected the whole file in UTF-8. Re-export it "
                "as UTF-8 (for example 'CSV UTF-8' in Excel).", file=path, line=line,
            ) from None
        raise ExtractError(
            f"{path}: could not be read as CSV with the delimiter {mapping.delimiter!r}; expected a header line, "
            "then one line per row with the same number of fields (quotes closed on the same line).", file=path,
        ) from None
    _refuse_repeated_headers(raw, path)
    return raw


def _refuse_utf16(path: Path) -> None:
    """Refuse a UTF-16 export (Excel's 'Unicode text'), which polars would read as one garbled column set."""
    import gzip

    with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as handle:
        start = handle.read(2)
    if start in (b"\xff\xfe", b"\xfe\xff"):
        raise ExtractError(
            f"{path}: line 1 is not valid UTF-8 text; expected the whole file in UTF-8. It starts with a UTF-16 "
            "byte-order mark (Excel's 'Unicode text'): re-export it as UTF-8 (for example 'CSV UTF-8' in Excel).",
            file=path, line=1,
        )


def _refuse_repeated_headers(raw: pl.DataFrame, path: Path) -> None:
    """Refuse a header naming a column twice (polars would rename the second to NAME_duplicated_0)."""
    if _headers_if_names(raw.columns) is None:
        return  # no header line (a data row where the names should be): reported, unquoted, as missing columns
    for name in raw.columns:
        base, marker, number = name.rpartition("_duplicated_")
        if marker and number.isdigit() and base and base in raw.columns:
            positions = [i + 1 for i, c in enumerate(raw.columns) if c == base or c.startswith(base + "_duplicated_")]
            raise ExtractError(
                f"{path}: the header names '{base}' twice (fields {', '.join(map(str, positions))} of line 1); "
                "expected each column once.", file=path, column=base, line=1,
            )


_NAME_LIKE = re.compile(r"[A-Za-z_][A-Za-z0-9_ ()./-]{0,63}")


def _headers_if_names(columns: list[str]) -> list[str] | None:
    """Return the header fields when they all look like column names, else None.

    A file without a header has a patient's row where the names should be; such a "header"
    must never be quoted in a message, so it is shown only when every field is name-shaped
    and none is shaped like a postcode or a date.
    """
    from pipelines.segmentation.codes import POSTCODE_PATTERN

    for name in columns:
        compact = name.replace(" ", "").upper()
        if not _NAME_LIKE.fullmatch(name) or re.fullmatch(POSTCODE_PATTERN, compact) or re.search(r"\d{4}", name):
            return None
    return columns


def _describe_headers(columns: list[str]) -> str:
    names = _headers_if_names(columns)
    if names is None:
        return f"the first line has {len(columns)} field(s) that do not look like column names (is the header line missing?)"
    return f"the file's columns are {names}"


def _canonical(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _delimiter_hint(raw: pl.DataFrame, path: Path, mapping: ColumnMapping) -> None:
    if _is_parquet(path) or len(raw.columns) > 1:
        return
    header = raw.columns[0]
    found = [d for d in (";", "\t", "|", ",") if d != mapping.delimiter and d in header]
    likely = f" The header contains {found[0]!r}: set `delimiter: {found[0]!r}` under options: in {MAPPING_FILE}." if found else ""
    raise ExtractError(
        f"{path}: line 1 (the header) splits into a single column with the delimiter {mapping.delimiter!r}; "
        f"expected the contract's columns separated by {mapping.delimiter!r}.{likely}", file=path, line=1,
    )


def _rename_to_contract(raw: pl.DataFrame, table: Table, mapping: dict[str, str], path: Path) -> pl.DataFrame:
    renames = {}
    for column in table.columns:
        header = mapping.get(column.name, column.name)
        if header in raw.columns:
            renames[header] = column.name
        elif column.name in mapping:
            raise ExtractError(
                f"{path}: column '{header}' (mapped to '{column.name}' in {MAPPING_FILE}) is missing; expected a "
                f"column of that name: {_describe_headers(raw.columns)}.", file=path, column=column.name,
            )
    frame = raw.select(list(renames)).rename(renames)
    nested = [(header, name) for header, name in renames.items() if frame.schema[name].is_nested()]
    if nested:
        header, name = nested[0]
        kind = "a struct (several fields)" if isinstance(frame.schema[name], pl.Struct) else "a list of values"
        raise ExtractError(
            f"{path}: column '{header}'{f' (the contract column {name!r})' if header != name else ''} holds {kind} in "
            f"each row, stored as {frame.schema[name]}; expected one plain value per row "
            f"({'text' if table.column(name).dtype == pl.String else _expected(table.column(name).dtype, '%Y-%m-%d')}). "
            "Export the column flat.", file=path, column=name,
        )
    missing = [c.name for c in table.columns if c.required and c.name not in frame.columns]
    if missing:
        names = _headers_if_names(raw.columns) or []
        close = {m: h for m in missing for h in names if _canonical(h) == _canonical(m)}
        suggestion = "".join(
            f" The file has '{h}': add `{m}: {h}` under {table.name}: in {MAPPING_FILE}." for m, h in close.items()
        )
        raise ExtractError(
            f"{path}: required column(s) {missing} are missing; {_describe_headers(raw.columns)}.{suggestion} "
            f"Expected the contract's names ({', '.join(c.name for c in table.columns if c.required)}) or a "
            f"mapping of the supplier's headers in {MAPPING_FILE}.", file=path, column=missing[0],
        )
    return frame


def _cast_column(frame: pl.DataFrame, name: str, dtype: pl.DataType, date_format: str) -> pl.Expr:
    source = frame.schema[name]
    col = pl.col(name)
    if dtype == pl.Date:
        if source == pl.Date:
            return col
        if source == pl.Datetime or isinstance(source, pl.Datetime):
            return col.dt.date()
        text = col.cast(pl.String).str.strip_chars()
        return pl.when(text == "").then(None).otherwise(text).str.to_date(date_format, strict=False)
    text = col.cast(pl.String).str.strip_chars()
    if dtype == pl.String:
        return pl.when(text == "").then(None).otherwise(text)
    return pl.when(text == "").then(None).otherwise(text).cast(dtype, strict=False)


def _expected(dtype: pl.DataType, date_format: str) -> str:
    if dtype == pl.Date:
        return f"dates in the form {date_format}"
    return "whole numbers" if dtype.is_integer() else "numbers" if dtype.is_numeric() else str(dtype)


def _cast_to_contract(frame: pl.DataFrame, table: Table, path: Path, date_format: str) -> pl.DataFrame:
    """Cast every supplied column to its contract type, flagging the values that will not cast.

    A few unreadable values are row defects: the column `_unreadable_<name>` marks them
    and the quarantine sets those rows aside. A column none of whose values can be read is
    the wrong type altogether, and stops the run with a message saying what was expected.
    """
    exprs = [_cast_column(frame, c.name, c.dtype, date_format).alias(c.name) for c in table.columns if c.name in frame.columns]
    cast = frame.select(ROW, *exprs)
    flags = []
    for column in table.columns:
        # A column already of its contract type (typed Parquet) cannot fail to cast, so the
        # costly text comparison runs only for columns that were actually converted.
        if column.name not in frame.columns or frame.schema[column.name] == column.dtype:
            continue
        present = frame[column.name].cast(pl.String).str.strip_chars().fill_null("") != ""
        failed = present & cast[column.name].is_null()
        n_failed = int(failed.sum())
        if not n_failed:
            continue
        if n_failed == int(present.sum()):
            first = int(cast.filter(failed)[ROW][0])
            where = f"line {first + 1}" if not _is_parquet(path) else f"row {first}"
            hint = f" Set options.date_format in {MAPPING_FILE} if the dates use another form." if column.dtype == pl.Date else ""
            raise ExtractError(
                f"{path}: column '{column.name}' should hold {_expected(column.dtype, date_format)}, but none of its "
                f"{n_failed} non-blank value(s) can be read as such (the first is on {where}); the file stores it as "
                f"{frame.schema[column.name]}.{hint}", file=path, column=column.name,
                line=first + 1 if not _is_parquet(path) else None,
            )
        flags.append(failed.alias(UNREADABLE + column.name))
    return cast.with_columns(flags) if flags else cast


_SQL_TYPES = {pl.String: "VARCHAR", pl.Date: "DATE", pl.Float64: "DOUBLE"}


@dataclass(frozen=True)
class ParquetEvents:
    """A typed Parquet events file, read where it lies by DuckDB (never loaded into Python).

    Chosen when every contract column the file holds already has its contract type, so
    nothing needs casting and no value can be unreadable; other files are read and cast
    by polars as before. `renames` maps contract names to the file's headers.
    """

    path: Path
    renames: dict[str, str]
    n_rows: int

    def relation(self) -> str:
        """Return the file as a SQL relation in the contract's names, with `_row` (1-based data row)."""
        from pipelines.segmentation.sql import literal, quote

        columns = [f"{quote(self.renames[c.name])} AS {quote(c.name)}" if c.name in self.renames
                   else f"NULL::{_SQL_TYPES[c.dtype]} AS {quote(c.name)}" for c in INPUT_EVENTS.columns]
        return (f"(SELECT file_row_number + 1 AS {ROW}, {', '.join(columns)} "
                f"FROM read_parquet({literal(str(self.path))}, file_row_number = true))")


@dataclass
class RawExtract:
    """The two input tables cast to the contract, with the files they came from.

    `patients` and `events` carry `_row` (the data row in the file) and any
    `_unreadable_<column>` flags; `*_source` hold the same rows' contract columns as
    supplied, from which a quarantined row's record is written. A typed Parquet events
    file stays on disk (`ParquetEvents`) and is staged by DuckDB in one pass.
    """

    patients: pl.DataFrame
    events: pl.DataFrame | ParquetEvents
    patients_path: Path
    events_path: Path
    mapping: ColumnMapping
    patients_source: pl.DataFrame | None = None
    events_source: pl.DataFrame | None = None


def read_extract(folder: Path, mapping_path: Path | None = None) -> RawExtract:
    """Read and cast an extract folder to the input contract.

    Arguments:
        folder: the extract folder.
        mapping_path: a column-mapping file; default `column_mapping.yaml` in the folder.

    Raises:
        ExtractError for what makes a file unusable as a whole: missing or empty file,
        wrong delimiter, missing or misnamed column, a column of the wrong type, text that
        is not UTF-8, a truncated Parquet file. Row-level defects are left to the quarantine.
    """
    folder = Path(folder)
    mapping = load_column_mapping(mapping_path or folder / MAPPING_FILE)
    frames, sources, paths = {}, {}, {}
    for table in (INPUT_PATIENTS, INPUT_EVENTS):
        path = find_table_file(folder, table.name)
        if table is INPUT_EVENTS and _is_parquet(path):
            typed = _typed_parquet_events(path, mapping)
            if typed is not None:
                frames[table.name], sources[table.name], paths[table.name] = typed, None, path
                continue
        raw = _read_raw(path, mapping)
        _delimiter_hint(raw, path, mapping)
        if raw.height == 0:
            raise ExtractError(f"{path}: has a header but no rows; expected one row per {table.name[:-1]}.", file=path)
        renamed = _rename_to_contract(raw, table, mapping.for_table(table.name), path)
        if table is INPUT_PATIENTS:
            _check_patient_columns(renamed, path)
            if mapping.sex_values:
                renamed = renamed.with_columns(pl.col("sex").cast(pl.String).str.strip_chars().replace(mapping.sex_values))
        renamed = renamed.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW))
        frames[table.name] = _cast_to_contract(renamed, table, path, mapping.date_format)
        sources[table.name] = renamed
        paths[table.name] = path
    return RawExtract(frames["patients"], frames["events"], paths["patients"], paths["events"], mapping,
                      sources["patients"], sources["events"])


def _typed_parquet_events(path: Path, mapping: ColumnMapping) -> ParquetEvents | None:
    """Return the events file as `ParquetEvents` when its columns need no casting, else None.

    The file's footer is read for its columns and row count (no row is read); the same
    checks as for any file apply: empty, unreadable, no rows, missing or misnamed columns.
    """
    import duckdb

    from pipelines.segmentation.sql import literal

    if path.stat().st_size == 0:
        raise ExtractError(f"{path}: the file is empty (0 bytes); expected a Parquet file.", file=path)
    con = duckdb.connect()
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal(str(path))})").fetchall()
        n_rows = con.execute(f"SELECT count(*) FROM read_parquet({literal(str(path))})").fetchall()[0][0]
    except duckdb.Error as error:
        # DuckDB names its error class first ("Invalid Input Error: ..."): the analyst needs the reason.
        reason = re.sub(r"^[A-Za-z ]*Error: ", "", str(error).splitlines()[0])[:200]
        raise ExtractError(
            f"{path}: could not be read as Parquet ({reason}); expected a complete Parquet file. It may "
            "have been cut short in transfer: ask the supplier to send it again.", file=path,
        ) from None
    finally:
        con.close()
    types = {name: kind for name, kind, *_ in described}
    empty = pl.DataFrame(schema={name: pl.String for name in types})
    renamed = _rename_to_contract(empty, INPUT_EVENTS, mapping.for_table("events"), path)
    if n_rows == 0:
        raise ExtractError(f"{path}: has a header but no rows; expected one row per event.", file=path)
    headers = {c.name: mapping.for_table("events").get(c.name, c.name) for c in INPUT_EVENTS.columns if c.name in renamed.columns}
    if any(types[header] != _SQL_TYPES.get(INPUT_EVENTS.column(name).dtype) for name, header in headers.items()):
        return None  # something needs casting: the polars reader casts and flags it
    return ParquetEvents(path, headers, int(n_rows))


def _check_patient_columns(patients: pl.DataFrame, path: Path) -> None:
    has_dob = "date_of_birth" in patients.columns
    has_ym = {"year_of_birth", "month_of_birth"} <= set(patients.columns)
    if not (has_dob or has_ym):
        raise ExtractError(
            f"{path}: needs 'date_of_birth', or both 'year_of_birth' and 'month_of_birth'; found {patients.columns}.",
            file=path, column="date_of_birth",
        )
    if "postcode" not in patients.columns and "lsoa_code" not in patients.columns:
        raise ExtractError(f"{path}: needs a 'postcode' column or an 'lsoa_code' column; found {patients.columns}.",
                           file=path, column="postcode")


def month_end(month: date) -> date:
    """Return the last day of `month`'s calendar month (the reference date of a reporting month).

    Examples:
        >>> month_end(date(2024, 2, 1))
        datetime.date(2024, 2, 29)
    """
    return date(month.year, month.month, calendar.monthrange(month.year, month.month)[1])


def age_at(date_of_birth: pl.Expr, reference_date: date) -> pl.Expr:
    """Return whole years of age at `reference_date` (birthday on the day counts as reached)."""
    ref = pl.lit(reference_date)
    years = ref.dt.year() - date_of_birth.dt.year()
    before_birthday = (ref.dt.month() < date_of_birth.dt.month()) | (
        (ref.dt.month() == date_of_birth.dt.month()) & (ref.dt.day() < date_of_birth.dt.day())
    )
    return (years - before_birthday.cast(pl.Int32)).cast(pl.Int32)


@dataclass
class StagingResult:
    """Staged tables, the quarantined rows and the counts a data-quality report needs (no patient-level values)."""

    patients: pl.DataFrame
    events: pl.DataFrame | None  # None when the events were written where they were staged (the warehouse)
    counts: dict[str, int]
    quarantine: pl.DataFrame = field(default_factory=QUARANTINE.empty)
    patient_split: quarantine.Split | None = None
    event_split: quarantine.Split | None = None


def candidate_patients(patients: pl.DataFrame, reporting_month: date) -> pl.DataFrame:
    """Return every patient row in the staged layout (plus `_row` and flags), before any row is set aside.

    The practice code is upper-cased and stripped but not nulled, so that a malformed one is
    caught by its rule rather than passing as a blank.
    """
    reference_date = month_end(reporting_month)
    if "date_of_birth" not in patients.columns:
        # Only year and month are known: use the 15th so age is right to within half a month.
        year, month = pl.col("year_of_birth"), pl.col("month_of_birth")
        patients = patients.with_columns(
            pl.when(month.is_between(1, 12) & year.is_between(1, 9999))
            .then(pl.date(year.clip(1, 9999), month.clip(1, 12), 15))
            .alias("date_of_birth")
        )
    for name in ("postcode", "lsoa_code"):
        if name not in patients.columns:
            patients = patients.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    flags = [c for c in patients.columns if c.startswith(quarantine.UNREADABLE)]
    return patients.select(
        pl.lit(reporting_month).alias("reporting_month"),
        pl.col("patient_id"),
        pl.col("practice_code").str.to_uppercase().str.replace_all(r"\s+", "").alias("practice_code"),
        codes.normalise_postcode(pl.col("postcode")).alias("postcode"),
        codes.postcode_status(pl.col("postcode")).alias("postcode_status"),
        codes.normalise_lsoa_code(pl.col("lsoa_code")).alias("lsoa_code_supplied"),
        pl.col("date_of_birth"),
        age_at(pl.col("date_of_birth"), reference_date).alias("age"),
        pl.col("sex"),
        pl.col("registration_start_date"),
        pl.col("registration_end_date"),
        pl.col(quarantine.ROW),
        *flags,
    ).cast(STAGING_PATIENTS.schema | {quarantine.ROW: pl.Int64})


def stage_extract(
    raw: RawExtract,
    reporting_month: date,
    *,
    patient_rules: Sequence[quarantine.RowRule] = (),
    event_rules: Sequence[quarantine.RowRule] = (),
    con=None,
    warehouse: bool = False,
    as_at: bool = False,
) -> StagingResult:
    """Return the patients registered at the end of `reporting_month`, their events up to then, and the quarantine.

    Exact duplicate rows are dropped and counted (suppliers re-send rows). Every other row
    is checked against the contract's rules (unreadable values, blanks where a value is
    required) and then `patient_rules` / `event_rules` (the suites' quarantine rules);
    rows caught are quarantined under the first rule that caught them.

    Arguments:
        raw: the extract as read by `read_extract`.
        reporting_month: first day of the month.
        patient_rules: rules over `candidate_patients` columns (e.g. age, sex, practice code).
        event_rules: rules over the event columns.
        con: the DuckDB connection the events are staged in (default: a private in-memory one).
        warehouse: `con` is the warehouse: the staged events are written there (keyed, see
            `stage_events`) instead of being returned; the patients gain their `patient_key`.
        as_at: the extract is a cumulative one cut after the month: the month is taken "as at"
            its end, as an extract cut on that day would have shown it. Patient rows registered
            after the month and event rows dated after it lie outside the month: they are left
            out before any rule (counted, never quarantined), so the after-month-end rule - a
            check on a month's own extract - cannot block it.
    """
    reference_date = month_end(reporting_month)
    patient_columns = [c for c in INPUT_PATIENTS.names if c in raw.patients.columns]
    in_scope = raw.patients
    if as_at:
        # A row whose start date is unreadable stays, for its rule to catch.
        in_scope = raw.patients.filter(~(pl.col("registration_start_date") > reference_date).fill_null(False))
    patients, n_duplicate_patient_rows = quarantine.drop_exact_duplicates(in_scope, patient_columns)
    candidates = candidate_patients(patients, reporting_month)
    patient_split = quarantine.split(
        candidates, quarantine.contract_rules(INPUT_PATIENTS, patients) + list(patient_rules),
        source=raw.patients_source if raw.patients_source is not None else raw.patients,
        reporting_month=reporting_month, source_table="patients", source_file=raw.patients_path.name,
    )
    is_registered = (pl.col("registration_start_date") <= reference_date) & (
        pl.col("registration_end_date").is_null() | (pl.col("registration_end_date") > reference_date)
    )
    kept = patient_split.kept
    staged = kept.filter(is_registered).select(STAGING_PATIENTS.names).with_columns(
        codes.normalise_ods_code(pl.col("practice_code")).alias("practice_code")
    )

    staged = staged.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("patient_key"))
    event_split, event_counts, staged_events = stage_events(
        raw, reporting_month, event_rules, staged.select("patient_id", "patient_key"), con=con, warehouse=warehouse,
        as_at=as_at)
    counts = {
        "n_patient_rows": raw.patients.height,
        **({"n_patient_rows_registered_after_month_end": raw.patients.height - in_scope.height} if as_at else {}),
        "n_duplicate_patient_rows": n_duplicate_patient_rows,
        "n_patient_rows_quarantined": patient_split.quarantined.height,
        "n_not_registered_at_month_end": kept.height - staged.height,
        "n_patients": staged.height,
        **event_counts,
        "n_postcode_blank": int((staged["postcode_status"] == "blank").sum()),
        "n_postcode_invalid": int((staged["postcode_status"] == "invalid").sum()),
    }
    return StagingResult(
        staged, staged_events, counts, pl.concat([patient_split.quarantined, event_split.quarantined]),
        patient_split, event_split,
    )


# --- events: staged by DuckDB where they lie ------------------------------------------------


def _events_relation(con, raw: RawExtract) -> tuple[str, pl.DataFrame | None]:
    """Return the cast events as a SQL relation in `con` (and the frame of rows as supplied, if read)."""
    if isinstance(raw.events, ParquetEvents):
        return raw.events.relation(), None
    events = raw.events
    if "value" not in events.columns:
        events = events.with_columns(pl.lit(None, dtype=pl.Float64).alias("value"))
    con.register("_events_cast", events.to_arrow())
    return "_events_cast", raw.events_source if raw.events_source is not None else raw.events


EVENT_ROWS = ("staging", "event_rows")
EVENT_CODES = ("staging", "event_codes")
EVENTS_VIEW_SQL = """
create or replace view staging.events as
select r.reporting_month, p.patient_id, c.code, r.event_date, r.value
from staging.event_rows r
join staging.patients p on p.reporting_month = r.reporting_month and p.patient_key = r.patient_key
join staging.event_codes c on c.reporting_month = r.reporting_month and c.code_key = r.code_key
"""


def ensure_events_view(con) -> None:
    """Create the `staging.events` view over the keyed rows, first converting a warehouse
    that still holds staged events as a plain table (written before the keyed layout).

    Runs after the month's patients are written (the view reads their keys); the
    conversion gives the older months' patients keys and moves their events, in one
    transaction.
    """
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'staging' "
                       "AND table_name = 'events'").fetchall()
    if kind and kind[0][0] == "BASE TABLE":
        con.execute("BEGIN TRANSACTION")
        try:
            columns = {r[0] for r in con.execute("DESCRIBE staging.patients").fetchall()}
            if "patient_key" not in columns:
                con.execute("ALTER TABLE staging.patients ADD COLUMN patient_key INTEGER").fetchall()
            con.execute(
                "UPDATE staging.patients p SET patient_key = k.key FROM (SELECT reporting_month, patient_id, "
                "(row_number() OVER (PARTITION BY reporting_month ORDER BY patient_id))::INTEGER AS key "
                "FROM staging.patients WHERE patient_key IS NULL) k "
                "WHERE p.reporting_month = k.reporting_month AND p.patient_id = k.patient_id").fetchall()
            con.execute("CREATE TABLE IF NOT EXISTS staging.event_codes (reporting_month DATE, code_key INTEGER, code VARCHAR)")
            con.execute("CREATE TABLE IF NOT EXISTS staging.event_rows (reporting_month DATE, patient_key INTEGER, "
                        "code_key INTEGER, event_date DATE, value DOUBLE)")
            # Only the months not staged again in the keyed layout (this run's month already is).
            legacy = "(SELECT * FROM staging.events WHERE reporting_month NOT IN (SELECT DISTINCT reporting_month FROM staging.event_rows))"
            con.execute(
                "INSERT INTO staging.event_codes SELECT reporting_month, (row_number() OVER (PARTITION BY reporting_month "
                f"ORDER BY code))::INTEGER, code FROM (SELECT DISTINCT reporting_month, code FROM {legacy})").fetchall()
            con.execute(
                "INSERT INTO staging.event_rows SELECT e.reporting_month, p.patient_key, c.code_key, e.event_date, e.value "
                f"FROM {legacy} e JOIN staging.patients p USING (reporting_month, patient_id) "
                "JOIN staging.event_codes c USING (reporting_month, code)").fetchall()
            con.execute("DROP TABLE staging.events")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    con.execute(EVENTS_VIEW_SQL).fetchall()


def stage_events(
    raw: RawExtract,
    reporting_month: date,
    rules: Sequence[quarantine.RowRule],
    population: pl.DataFrame | pl.Series,
    *,
    con=None,
    warehouse: bool = False,
    as_at: bool = False,
) -> tuple[quarantine.Split, dict[str, int], pl.DataFrame | None]:
    """Stage the month's events in DuckDB: drop exact repeats, quarantine by rule, keep the population's.

    The semantics are `stage_extract`'s (exact duplicates dropped first, keeping the first
    row; then each remaining row checked against the contract's and the suite's rules, the
    first rule that catches it naming it; then only events on or before R of patients
    registered at R kept), computed where the rows lie, in three passes over them:

    1. the rules' SQL form picks the rows a rule catches and any dated after R — few rows,
       which come into Python, where exact repeats among them are dropped and the polars
       form of the same rules sorts them under their first rule and writes their records
       (it must agree with the SQL);
    2. the rows of patients outside the population (few), set aside by one anti-join and
       counted with and without repeats, and the month's code dictionary (the code column
       alone) - no aggregation over the whole month;
    3. every other row is written, a slice of patients at a time, exact repeats dropped
       within each patient's rows, so the rules are evaluated once and the big table is
       read once and written once (through a temporary table of its keyed rows).

    In the warehouse the staged events are stored with integer keys — `staging.event_rows`
    (patient_key, code_key, event_date, value) and `staging.event_codes` (the month's code
    dictionary) — less writing than text ids, and read as the contract's `staging.events`
    through a view (`ensure_events_view`, once the month's patients are written).

    Arguments:
        raw: the extract (typed Parquet events stay on disk).
        reporting_month: first day of the month.
        rules: the events' row rules (`RowRule.sql` set), in priority order.
        population: the staged patients (patient_id, and patient_key in the warehouse).
        con: a DuckDB connection (default: a private in-memory one).
        warehouse: write into the warehouse's staging tables (`con` is the warehouse);
            otherwise the staged events are returned as a frame in file order.
        as_at: the month is run "as at" its end from a later, cumulative extract: rows dated
            after R are outside the month, so no rule judges them (they are counted in
            `n_events_after_month_end` and left out, never quarantined).

    Returns:
        The quarantine split (its `kept` is empty: the kept rows stay in DuckDB), the
        event counts, and the staged events when not writing to the warehouse.
    """
    import duckdb

    from pipelines.pushdown import as_gx_sees_sql
    from pipelines.segmentation.sql import literal, quote

    started = time.perf_counter()
    own = con is None
    con = duckdb.connect() if own else con
    population = population.to_frame() if isinstance(population, pl.Series) else population
    if "patient_key" not in population.columns:
        population = population.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("patient_key"))
    try:
        relation, source = _events_relation(con, raw)
        names = [c.name for c in INPUT_EVENTS.columns]
        flags = [f for f in (f"{quarantine.UNREADABLE}{n}" for n in names) if f in _columns(con, relation)]
        # Pass 1. Rules see the rows as GX does (a NaN value is missing); rows keep their values,
        # and the contract's not-finite rule reads them as supplied (`__raw_<column>`).
        seen = as_gx_sees_sql(con, relation, keep_raw=True)
        prefix = quarantine.RAW
        raw_floats = [c[len(prefix):] for c in _columns(con, seen) if c.startswith(prefix)]
        # (A value column the file stores as whole numbers holds no NaN or infinity: no such rule.)
        all_rules = quarantine.contract_rules(INPUT_EVENTS, pl.DataFrame(schema={
            **{c.name: c.dtype for c in INPUT_EVENTS.columns if c.dtype != pl.Float64 or c.name in raw_floats},
            **{f: pl.Boolean for f in flags}}))
        all_rules += list(rules)
        missing_sql = [r.name for r in all_rules if r.sql is None]
        if missing_sql:
            raise ValueError(f"event rule(s) {missing_sql} have no SQL form; the staged events are checked in DuckDB")
        con.register("_population", population.select("patient_id", "patient_key").to_arrow())
        reference_date = month_end(reporting_month)
        any_rule = " OR ".join(f"({sql})" for sql in _per_code_rules(con, relation, all_rules)) or "false"
        if as_at:
            any_rule = f"({any_rule}) AND NOT coalesce(event_date > {literal(reference_date)}, false)"
        restored = ", ".join(f"{quote(prefix + c)} AS {quote(c)}" for c in raw_floats)
        excluded = ", ".join(quote(prefix + c) for c in raw_floats)
        restore = f" EXCLUDE ({excluded}) REPLACE ({restored})" if raw_floats else ""
        subset = pl.from_arrow(con.sql(
            f"SELECT * FROM (SELECT *{restore}, ({any_rule}) AS _caught FROM {seen}) "
            f"WHERE _caught OR event_date > {literal(reference_date)} ORDER BY {ROW}"
        ).to_arrow_table())
        con.register("_set_aside", subset.select(ROW, "code").to_arrow())
        distinct, n_subset_repeats = quarantine.drop_exact_duplicates(subset, names)
        caught = distinct.filter("_caught").drop("_caught")
        records = caught.select(ROW, *names) if source is None else source.filter(pl.col(ROW).is_in(caught[ROW].implode()))
        split = quarantine.split(caught, all_rules, source=records, reporting_month=reporting_month,
                                 source_table="events", source_file=raw.events_path.name)
        if split.kept.height:
            raise RuntimeError(
                f"{split.kept.height} event row(s) caught by a rule's SQL form pass its polars form; the two "
                "engines disagree (pipelines/pushdown.py)"
            )
        n_after = distinct.filter(~pl.col("_caught")).height
        # The gate's own time is pass 1, the rules; passes 2 and 3 are staging (the month's
        # write among them), which the events gate's `gate_seconds` counted until now.
        rules_seconds = time.perf_counter() - started
        rest = f"(SELECT * FROM {relation} WHERE {ROW} NOT IN (SELECT {ROW} FROM _set_aside))"
        others = ", ".join(quote(n) for n in names if n != "code")
        # Pass 2: the rows of patients outside the population (few) are set aside in a small
        # table by one anti-join, and counted there with and without exact repeats (a repeat
        # has the same code, so distinct rows per code add up to the distinct rows); the
        # month's code dictionary reads the code column alone. Neither aggregates the month.
        # (The population's anti-join first, then the set-aside rows' on the few rows left:
        # about 20% less CPU than the other way round, same rows.)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _outside AS SELECT {', '.join(quote(n) for n in names)} FROM "
            f"(SELECT * FROM {relation} WHERE patient_id NOT IN (SELECT patient_id FROM _population)) "
            f"WHERE {ROW} NOT IN (SELECT {ROW} FROM _set_aside)").fetchall()
        n_outside, n_outside_distinct = con.execute(
            f"SELECT coalesce(sum(n), 0), coalesce(sum(n_distinct), 0) FROM (SELECT count(*) AS n, "
            f"count(DISTINCT ({others})) AS n_distinct FROM _outside GROUP BY code)").fetchall()[0]
        # The code dictionary is the codes of every row not set aside: the month's distinct
        # codes (`_month_codes`, from the file's dictionary), less those of set-aside rows
        # unless another row still has them - which reads only the rows of those few codes,
        # not the month (a null code is always set aside: the contract's code_missing rule).
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _event_code_counts AS SELECT code FROM _month_codes WHERE code IS NOT NULL "
            "AND code NOT IN (SELECT code FROM _set_aside WHERE code IS NOT NULL) UNION "
            f"SELECT DISTINCT code FROM {relation} WHERE code IN (SELECT code FROM _set_aside WHERE code IS NOT NULL) "
            f"AND {ROW} NOT IN (SELECT {ROW} FROM _set_aside)").fetchall()
        # Pass 3. Everything else is the month's staged events, exact repeats dropped per patient.
        n_rows = con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
        month = literal(reporting_month)
        if warehouse:
            from pipelines.warehouse import write_query

            write_query(con, *EVENT_CODES, f"SELECT {month}::DATE AS reporting_month, (row_number() OVER (ORDER BY code))::INTEGER "
                        f"AS code_key, code FROM _event_code_counts",
                        partition_column="reporting_month", partition_value=reporting_month)
            # Written a slice of patients at a time (the slices the patient model aggregates,
            # `patient_slices`), exact repeats dropped within each slice: a repeat is the same
            # patient's row, so it lies in the same slice. The keyed rows are first put,
            # unordered, in a temporary table; each slice then sorts each patient's rows (a
            # window partitioned by patient) and drops a row equal to the one before it, in
            # place of a month-wide DISTINCT and a month-wide sort. At 1M patients this took
            # the month's CPU from 91-92 s to 81-84 s and its peak memory from 1.71-1.76 to
            # 1.58 GiB (a hash DISTINCT per slice: 85-87 s, 1.74 GiB; README "Performance").
            # A slice's rows lie together and each patient's rows come out together, so a slice
            # of the model reads only its part of the table and meets each patient in one run.
            # Which patient comes first within a slice is the window's hash order, on which no
            # reader depends (the model's aggregates ignore row order; explain sorts).
            from pipelines.segmentation.patient_model import patient_slices

            con.execute("SET preserve_insertion_order = false")
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _keyed AS SELECT p.patient_key, c.code_key, e.event_date, e.value "
                f"FROM {rest} e JOIN _population p ON p.patient_id = e.patient_id "
                f"JOIN (SELECT code_key, code FROM staging.event_codes WHERE reporting_month = {month}) c ON c.code = e.code"
            ).fetchall()
            con.execute("SET preserve_insertion_order = true")
            keys = population["patient_key"]
            row = "row(code_key, event_date, value)"  # equal rows: nulls equal, as DISTINCT has them
            n_events = write_query(
                con, *EVENT_ROWS,
                [f"SELECT {month}::DATE AS reporting_month, patient_key, code_key, event_date, value FROM ("
                 f"SELECT *, {row} IS NOT DISTINCT FROM lag({row}) OVER (PARTITION BY patient_key "
                 f"ORDER BY code_key, event_date, value) AS _repeat FROM _keyed "
                 f"WHERE patient_key BETWEEN {low} AND {high}) WHERE NOT _repeat"
                 for low, high in patient_slices(keys.min(), keys.max()) or [(0, 0)]],
                partition_column="reporting_month", partition_value=reporting_month)
            staged = None
        else:
            staged = pl.from_arrow(con.sql(
                f"SELECT {month}::DATE AS reporting_month, patient_id, code, event_date, value, min({ROW}) AS _first "
                f"FROM {rest} WHERE patient_id IN (SELECT patient_id FROM _population) "
                f"GROUP BY ALL ORDER BY _first").to_arrow_table()).drop("_first").cast(STAGING_EVENTS.schema)
            n_events = staged.height
        n_in_population = n_rows - subset.height - n_outside
        counts = {
            "n_event_rows": int(n_rows),
            "n_duplicate_event_rows": int(n_subset_repeats + (n_outside - n_outside_distinct) + (n_in_population - n_events)),
            "n_event_rows_quarantined": split.quarantined.height,
            "n_events_after_month_end": int(n_after),
            "n_events_not_in_population": int(n_outside_distinct),
            "n_events": int(n_events),
        }
        n_distinct = n_rows - counts["n_duplicate_event_rows"]
        if as_at:
            # Rows dated after an as-at month are outside it: no rule judged them, so they are
            # not in the rules' denominator (as in an extract cut on the month's last day).
            n_distinct -= n_after
        split = quarantine.Split(STAGING_EVENTS.empty(), split.quarantined, int(n_distinct), split.n_failing,
                                 split.n_quarantined, rules_seconds)
        return split, counts, staged
    finally:
        for name in ("_events_cast", "_population", "_set_aside"):
            try:
                con.unregister(name)
            except Exception:  # noqa: BLE001 - not registered for this source
                pass
        con.execute("DROP TABLE IF EXISTS _event_code_counts").fetchall()
        con.execute("DROP TABLE IF EXISTS _month_codes").fetchall()
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary AND "
                                    "starts_with(table_name, '_code_rule_')").fetchall():
            con.execute(f"DROP TABLE IF EXISTS {table}").fetchall()
        con.execute("DROP TABLE IF EXISTS _outside").fetchall()
        con.execute("DROP TABLE IF EXISTS _keyed").fetchall()
        if own:
            con.close()


CODE_RULE_TABLE = "_code_rule_{}"


def _per_code_rules(con, relation: str, rules: Sequence[quarantine.RowRule]) -> list[str]:
    """Return each rule's SQL test for pass 1, a rule that reads the code alone evaluated once per distinct code.

    A rule such as the SNOMED pattern (a regular expression) costs seconds over 25M rows but
    milliseconds over the month's few thousand distinct codes, which a Parquet file's
    dictionary yields almost for free. Whether a rule reads the code alone is asked of
    DuckDB itself: its SQL is bound against a relation holding only `code`, and a rule that
    names any other column fails to bind and stays a row test. The month's distinct codes are
    left in `_month_codes` (the code dictionary is made from them). The codes a rule catches stay
    in a temporary table (`_code_rule_<n>`, dropped by `stage_events`); its test becomes
    membership in that table (`false` when it holds none, as in a clean month), and the
    polars form of every rule still judges the rows caught.
    """
    import duckdb

    tests = []
    con.execute(f"CREATE OR REPLACE TEMP TABLE _month_codes AS SELECT DISTINCT code FROM {relation}").fetchall()
    for index, rule in enumerate(rules):
        table = CODE_RULE_TABLE.format(index)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT code FROM _month_codes WHERE {rule.sql}").fetchall()
        except duckdb.BinderException:  # the rule reads another column: judged row by row
            tests.append(rule.sql)
            continue
        n_codes, n_null = con.execute(f"SELECT count(code), count(*) - count(code) FROM {table}").fetchall()[0]
        parts = ([f"coalesce(code IN (SELECT code FROM {table} WHERE code IS NOT NULL), false)"] if n_codes else []) + (
            ["code IS NULL"] if n_null else [])
        tests.append(" OR ".join(parts) or "false")
    return tests


def _columns(con, relation: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
