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
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from pipelines.segmentation import codes
from pipelines.segmentation.schemas import (
    INPUT_EVENTS,
    INPUT_PATIENTS,
    SEX_CODES,
    STAGING_EVENTS,
    STAGING_PATIENTS,
    Table,
)

MAPPING_FILE = "column_mapping.yaml"
SUFFIXES = (".parquet", ".csv", ".csv.gz")


class ExtractError(ValueError):
    """The extract cannot be read as the input contract describes."""


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


def load_column_mapping(path: Path | None) -> ColumnMapping:
    """Return the column mapping in `path`, or the identity mapping when there is none.

    Arguments:
        path: a YAML file as described in the module docstring, or None.
    """
    if path is None or not path.exists():
        return ColumnMapping()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ExtractError(f"{path}: not valid YAML ({error}).") from error
    known_sections = {"patients", "events", "options"}
    unknown = set(raw) - known_sections
    if unknown:
        raise ExtractError(f"{path}: unknown section(s) {sorted(unknown)}; expected {sorted(known_sections)}.")
    for section, table in (("patients", INPUT_PATIENTS), ("events", INPUT_EVENTS)):
        bad = set(raw.get(section) or {}) - set(table.names)
        if bad:
            raise ExtractError(
                f"{path}: section '{section}' maps unknown contract column(s) {sorted(bad)}; "
                f"the contract's columns are {table.names}."
            )
    options: dict[str, Any] = raw.get("options") or {}
    allowed_options = {"date_format", "lsoa_vintage", "delimiter", "sex_values"}
    if set(options) - allowed_options:
        raise ExtractError(
            f"{path}: unknown option(s) {sorted(set(options) - allowed_options)}; expected {sorted(allowed_options)}."
        )
    vintage = options.get("lsoa_vintage")
    if vintage is not None and int(vintage) not in (2011, 2021):
        raise ExtractError(f"{path}: option 'lsoa_vintage' must be 2011 or 2021, found {vintage!r}.")
    sex_values = {str(k): str(v) for k, v in (options.get("sex_values") or {}).items()}
    if set(sex_values.values()) - set(SEX_CODES):
        raise ExtractError(f"{path}: option 'sex_values' must map onto {list(SEX_CODES)}.")
    return ColumnMapping(
        patients={k: str(v) for k, v in (raw.get("patients") or {}).items()},
        events={k: str(v) for k, v in (raw.get("events") or {}).items()},
        date_format=str(options.get("date_format", "%Y-%m-%d")),
        lsoa_vintage=int(vintage) if vintage is not None else None,
        delimiter=str(options.get("delimiter", ",")),
        sex_values=sex_values,
    )


def find_table_file(folder: Path, table: str) -> Path:
    """Return the file holding `table` in an extract folder (Parquet, CSV or gzipped CSV)."""
    if not folder.is_dir():
        raise ExtractError(f"extract folder {folder} does not exist.")
    found = [folder / f"{table}{suffix}" for suffix in SUFFIXES if (folder / f"{table}{suffix}").exists()]
    if not found:
        raise ExtractError(
            f"extract folder {folder} has no '{table}' file: expected one of "
            f"{', '.join(table + s for s in SUFFIXES)}."
        )
    if len(found) > 1:
        raise ExtractError(f"extract folder {folder} has more than one '{table}' file: {[p.name for p in found]}.")
    return found[0]


def _read_raw(path: Path, mapping: ColumnMapping) -> pl.DataFrame:
    if path.stat().st_size == 0:
        raise ExtractError(f"{path}: the file is empty.")
    try:
        if path.name.endswith(".parquet"):
            return pl.read_parquet(path)
        return pl.read_csv(path, separator=mapping.delimiter, infer_schema_length=0, encoding="utf8")
    except pl.exceptions.ComputeError as error:
        kind = "Parquet" if path.name.endswith(".parquet") else "CSV"
        raise ExtractError(f"{path}: could not be read as {kind} ({str(error).splitlines()[0]}).") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ExtractError(f"{path}: could not be read ({error.__class__.__name__}: {error}).") from None


def _rename_to_contract(raw: pl.DataFrame, table: Table, mapping: dict[str, str], path: Path) -> pl.DataFrame:
    renames = {}
    for column in table.columns:
        header = mapping.get(column.name, column.name)
        if header in raw.columns:
            renames[header] = column.name
        elif column.name in mapping:
            raise ExtractError(
                f"{path}: column '{header}' (mapped to '{column.name}') is missing; the file's "
                f"columns are {raw.columns}."
            )
    frame = raw.select(list(renames)).rename(renames)
    missing = [c.name for c in table.columns if c.required and c.name not in frame.columns]
    if missing:
        hint = "" if len(raw.columns) > 1 else " (only one column was found: is the delimiter right?)"
        raise ExtractError(
            f"{path}: required column(s) {missing} are missing{hint}; found {raw.columns}. Map the "
            f"supplier's headers in {MAPPING_FILE}."
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
    if dtype == pl.String:
        return col.cast(pl.String).str.strip_chars()
    text = col.cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text).cast(dtype, strict=False)


def _cast_to_contract(frame: pl.DataFrame, table: Table, path: Path, date_format: str) -> pl.DataFrame:
    """Cast every supplied column to its contract type; a value that will not cast is an error."""
    exprs = []
    for column in table.columns:
        if column.name in frame.columns:
            exprs.append(_cast_column(frame, column.name, column.dtype, date_format).alias(column.name))
    cast = frame.select(exprs)
    for column in table.columns:
        if column.name not in frame.columns:
            continue
        # A column already of its contract type (typed Parquet) cannot fail to cast, so the
        # costly text comparison runs only for columns that were actually converted.
        failed = 0
        if frame.schema[column.name] != column.dtype:
            original_present = frame[column.name].cast(pl.String).str.strip_chars().fill_null("") != ""
            failed = int((original_present & cast[column.name].is_null()).sum())
        if failed:
            expected = f"dates in the form {date_format}" if column.dtype == pl.Date else str(column.dtype)
            raise ExtractError(
                f"{path}: column '{column.name}' has {failed} value(s) that are not {expected}. "
                f"Set options.date_format in {MAPPING_FILE} if the dates use another form."
            )
        if not column.nullable:
            nulls = int(cast[column.name].is_null().sum())
            if nulls:
                raise ExtractError(f"{path}: column '{column.name}' has {nulls} blank value(s); it must always be filled.")
    return cast


@dataclass
class RawExtract:
    """The two input tables cast to the contract, with the files they came from."""

    patients: pl.DataFrame
    events: pl.DataFrame
    patients_path: Path
    events_path: Path
    mapping: ColumnMapping


def read_extract(folder: Path, mapping_path: Path | None = None) -> RawExtract:
    """Read and cast an extract folder to the input contract.

    Arguments:
        folder: the extract folder.
        mapping_path: a column-mapping file; default `column_mapping.yaml` in the folder.
    """
    folder = Path(folder)
    mapping = load_column_mapping(mapping_path or folder / MAPPING_FILE)
    frames = {}
    paths = {}
    for table in (INPUT_PATIENTS, INPUT_EVENTS):
        path = find_table_file(folder, table.name)
        raw = _read_raw(path, mapping)
        if raw.height == 0:
            raise ExtractError(f"{path}: has a header but no rows.")
        renamed = _rename_to_contract(raw, table, mapping.for_table(table.name), path)
        if table is INPUT_PATIENTS and mapping.sex_values:
            renamed = renamed.with_columns(
                pl.col("sex").cast(pl.String).str.strip_chars().replace(mapping.sex_values)
            )
        frames[table.name] = _cast_to_contract(renamed, table, path, mapping.date_format)
        paths[table.name] = path
    patients = frames["patients"]
    _check_patient_rules(patients, paths["patients"])
    return RawExtract(patients, frames["events"], paths["patients"], paths["events"], mapping)


def _check_patient_rules(patients: pl.DataFrame, path: Path) -> None:
    has_dob = "date_of_birth" in patients.columns
    has_ym = {"year_of_birth", "month_of_birth"} <= set(patients.columns)
    if not (has_dob or has_ym):
        raise ExtractError(
            f"{path}: needs 'date_of_birth', or both 'year_of_birth' and 'month_of_birth'; found {patients.columns}."
        )
    if "postcode" not in patients.columns and "lsoa_code" not in patients.columns:
        raise ExtractError(f"{path}: needs a 'postcode' column or an 'lsoa_code' column; found {patients.columns}.")
    bad_sex = int((~patients["sex"].is_in(list(SEX_CODES)) | patients["sex"].is_null()).sum())
    if bad_sex:
        raise ExtractError(
            f"{path}: column 'sex' has {bad_sex} value(s) outside {list(SEX_CODES)}; map supplier codes "
            f"with options.sex_values in {MAPPING_FILE}."
        )


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
    """Staged tables and the counts a data-quality report needs (no patient-level values)."""

    patients: pl.DataFrame
    events: pl.DataFrame
    counts: dict[str, int]


def stage_extract(raw: RawExtract, reporting_month: date) -> StagingResult:
    """Return the patients registered at the end of `reporting_month` and their events up to then.

    Exact duplicate rows are dropped and counted (suppliers re-send rows); a patient id that
    appears twice with different details is an error, because which row is right cannot be
    decided here.
    """
    reference_date = month_end(reporting_month)
    patients = raw.patients
    n_rows = patients.height
    patients = patients.unique(maintain_order=True)
    n_duplicate_patient_rows = n_rows - patients.height
    n_conflicting = patients.height - patients["patient_id"].n_unique()
    if n_conflicting:
        raise ExtractError(
            f"{raw.patients_path}: column 'patient_id' has {n_conflicting} id(s) appearing on more than one "
            "row with different details; each patient must appear once."
        )
    if "date_of_birth" not in patients.columns:
        # Only year and month are known: use the 15th so age is right to within half a month.
        patients = patients.with_columns(
            pl.date(pl.col("year_of_birth"), pl.col("month_of_birth"), 15).alias("date_of_birth")
        )
    for name in ("postcode", "lsoa_code"):
        if name not in patients.columns:
            patients = patients.with_columns(pl.lit(None, dtype=pl.String).alias(name))
    is_registered = (pl.col("registration_start_date") <= reference_date) & (
        pl.col("registration_end_date").is_null() | (pl.col("registration_end_date") > reference_date)
    )
    n_not_registered = int(patients.select((~is_registered).sum()).item())
    staged = patients.filter(is_registered).select(
        pl.lit(reporting_month).alias("reporting_month"),
        pl.col("patient_id"),
        codes.normalise_ods_code(pl.col("practice_code")).alias("practice_code"),
        codes.normalise_postcode(pl.col("postcode")).alias("postcode"),
        codes.postcode_status(pl.col("postcode")).alias("postcode_status"),
        codes.normalise_lsoa_code(pl.col("lsoa_code")).alias("lsoa_code_supplied"),
        pl.col("date_of_birth"),
        age_at(pl.col("date_of_birth"), reference_date).alias("age"),
        pl.col("sex"),
        pl.col("registration_start_date"),
        pl.col("registration_end_date"),
    ).cast(STAGING_PATIENTS.schema)

    events = raw.events
    n_event_rows = events.height
    events = events.unique(maintain_order=True)
    n_duplicate_events = n_event_rows - events.height
    if "value" not in events.columns:
        events = events.with_columns(pl.lit(None, dtype=pl.Float64).alias("value"))
    n_after_reference = int((events["event_date"] > reference_date).sum())
    staged_events = (
        events.filter(pl.col("event_date") <= reference_date)
        .join(staged.select("patient_id"), on="patient_id", how="semi")
        .select(pl.lit(reporting_month).alias("reporting_month"), "patient_id", "code", "event_date", "value")
        .cast(STAGING_EVENTS.schema)
    )
    counts = {
        "n_patient_rows": n_rows,
        "n_duplicate_patient_rows": n_duplicate_patient_rows,
        "n_not_registered_at_month_end": n_not_registered,
        "n_patients": staged.height,
        "n_event_rows": n_event_rows,
        "n_duplicate_event_rows": n_duplicate_events,
        "n_events_after_month_end": n_after_reference,
        "n_events": staged_events.height,
        "n_postcode_blank": int((staged["postcode_status"] == "blank").sum()),
        "n_postcode_invalid": int((staged["postcode_status"] == "invalid").sum()),
    }
    return StagingResult(staged, staged_events, counts)
