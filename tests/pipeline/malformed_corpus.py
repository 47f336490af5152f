"""The malformed-input corpus: each function spoils a copy of a good generated extract folder in one
way a supplier's export, a transfer or a hand edit can, and returns the phrases the refusal must
contain (the file, the key or column, and what was expected).

Nothing here is checked-in data: every file is derived from the synthetic extract the test
fixture generates. Grow the corpus by adding a function to the right list.
"""

from __future__ import annotations

import gzip
import os
import zlib

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


def _patients(folder) -> pl.DataFrame:
    return pl.read_parquet(folder / "patients.parquet")


def _events(folder) -> pl.DataFrame:
    return pl.read_parquet(folder / "events.parquet")


def _patients_csv(folder, frame: pl.DataFrame | None = None, **options) -> None:
    (frame if frame is not None else _patients(folder)).write_csv(folder / "patients.csv", **options)
    (folder / "patients.parquet").unlink()


def _mapping(folder, text: str | bytes) -> None:
    path = folder / "column_mapping.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _feed(folder, name: str) -> pl.DataFrame:
    """Return the feed's rows, taken from the generated folder (any format) and removed from it."""
    for suffix in (".parquet", ".csv", ".csv.gz"):
        path = folder / f"{name}{suffix}"
        if path.exists():
            frame = pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path, infer_schema_length=0)
            path.unlink()
            return frame
    raise AssertionError(f"the generated extract has no {name} feed")


# --- the column-mapping file ---------------------------------------------------------------

MAPPING = "column_mapping.yaml: "


def mapping_is_a_scalar(folder):
    _mapping(folder, "42\n")
    return [MAPPING + "must be a mapping with the sections patients:, events: and options:; found a single value of type int"]


def mapping_is_not_yaml(folder):
    _mapping(folder, "patients:\n  patient_id: [unclosed\n")
    return [MAPPING + "not valid YAML at line", "expected sections patients:, events: and options:"]


def mapping_has_an_unknown_section(folder):
    _mapping(folder, "patient:\n  patient_id: PatientID\n")
    return [MAPPING + "unknown section(s) ['patient']; expected ['events', 'options', 'patients']"]


def mapping_section_is_a_list(folder):
    _mapping(folder, "patients:\n  - patient_id\n")
    return [MAPPING + "section 'patients' must map contract column names to the supplier's headers", "found a list"]


def mapping_header_is_a_list(folder):
    _mapping(folder, "patients:\n  patient_id: [PatientID, Id]\n")
    return [MAPPING + "section 'patients': the header mapped to ['patient_id'] must be a column name (text)"]


def mapping_names_an_unknown_contract_column(folder):
    _mapping(folder, "patients:\n  nhs_number: NHSNumber\n")
    return [MAPPING + "section 'patients' maps unknown contract column(s) ['nhs_number']; the contract's columns are"]


def mapping_sends_two_event_columns_to_one_header(folder):
    _mapping(folder, "events:\n  code: code\n  patient_id: code\n")
    return [MAPPING + "section 'events' maps 2 contract columns (code, patient_id) to the same header 'code'",
            "expected one supplier column per contract column"]


def options_is_a_list(folder):
    _mapping(folder, "options:\n  - delimiter\n")
    return [MAPPING + "section 'options' must be a mapping of option: value; found a list"]


def unknown_option(folder):
    _mapping(folder, "options:\n  encoding: latin-1\n")
    return [MAPPING + "unknown option(s) ['encoding']; expected ['date_format', 'delimiter', 'lsoa_vintage', 'sex_values']"]


def lsoa_vintage_in_words(folder):
    _mapping(folder, "options:\n  lsoa_vintage: twenty-eleven\n")
    return [MAPPING + "option 'lsoa_vintage' must be 2011 or 2021 (a year, as digits); found 'twenty-eleven'"]


def two_character_delimiter(folder):
    _mapping(folder, "options:\n  delimiter: ';;'\n")
    return [MAPPING + "option 'delimiter' must be a single character other than a quote or line break", "found ';;'"]


def date_format_without_a_pattern(folder):
    _mapping(folder, "options:\n  date_format: DD/MM/YYYY\n")
    return [MAPPING + "option 'date_format' must be a strftime pattern such as \"%d/%m/%Y\"; found 'DD/MM/YYYY'"]


def sex_values_as_a_list(folder):
    _mapping(folder, "options:\n  sex_values: [M, F]\n")
    return [MAPPING + "option 'sex_values' must map the supplier's codes to", "found a list"]


def sex_values_onto_unknown_codes(folder):
    _mapping(folder, "options:\n  sex_values: {'1': Male, '2': Female}\n")
    return [MAPPING + "option 'sex_values' must map onto", "found ['Female', 'Male']"]


def mapping_not_utf8(folder):
    _mapping(folder, b"patients:\n  patient_id: Patient\xe9ID\n")
    return [MAPPING + "is not UTF-8 text; expected a YAML column mapping"]


def mapping_is_a_folder(folder):
    (folder / "column_mapping.yaml").mkdir()
    return [MAPPING + "is not a file; expected a YAML column mapping"]


MAPPING_CASES = [
    mapping_is_a_scalar, mapping_is_not_yaml, mapping_has_an_unknown_section, mapping_section_is_a_list,
    mapping_header_is_a_list, mapping_names_an_unknown_contract_column, mapping_sends_two_event_columns_to_one_header,
    options_is_a_list, unknown_option, lsoa_vintage_in_words, two_character_delimiter, date_format_without_a_pattern,
    sex_values_as_a_list, sex_values_onto_unknown_codes, mapping_not_utf8, mapping_is_a_folder,
]


# --- files that are not there, or not what their names say -----------------------------------


def patients_file_missing(folder):
    (folder / "patients.parquet").unlink()
    return ["has no 'patients' file: expected one of patients.parquet, patients.csv, patients.csv.gz"]


def two_patients_files(folder):
    _patients(folder).write_csv(folder / "patients.csv")
    return ["has more than one 'patients' file: ['patients.parquet', 'patients.csv']"]


def symlink_loop(folder):
    (folder / "patients.parquet").unlink()
    os.symlink(folder / "patients.parquet", folder / "patients.parquet")
    return ["patients.parquet: is a symbolic link that leads nowhere (its target is missing, or the link loops)",
            "expected the 'patients' file or a link to it"]


def dangling_symlink(folder):
    (folder / "events.parquet").unlink()
    os.symlink(folder / "moved_away.parquet", folder / "events.parquet")
    return ["events.parquet: is a symbolic link that leads nowhere"]


def folder_named_patients_csv(folder):
    (folder / "patients.parquet").unlink()
    (folder / "patients.csv").mkdir()
    return ["patients.csv: is a folder, not a file; expected the 'patients' table as one file"]


def header_only_csv(folder):
    _patients_csv(folder, _patients(folder).head(0))
    return ["patients.csv: has a header but no rows; expected one row per patient"]


def parquet_without_rows(folder):
    _events(folder).head(0).write_parquet(folder / "events.parquet")
    return ["events.parquet: has a header but no rows; expected one row per event"]


def empty_gzip_file(folder):
    (folder / "events.parquet").unlink()
    (folder / "events.csv.gz").write_bytes(b"")
    return ["events.csv.gz: the file is empty (0 bytes); expected a header line naming the columns"]


def truncated_gzip(folder):
    data = gzip.compress(_events(folder).write_csv().encode())
    (folder / "events.parquet").unlink()
    (folder / "events.csv.gz").write_bytes(data[: len(data) // 2])
    return ["events.csv.gz: is not a complete gzip file (cut short); expected a gzip-compressed CSV"]


def plain_csv_named_gz(folder):
    (folder / "events.parquet").unlink()  # the events themselves do not matter: the file is refused first
    (folder / "events.csv.gz").write_text("patient_id,code,event_date,value\n")
    return ["events.csv.gz: is not a complete gzip file (damaged); expected a gzip-compressed CSV"]


def small_decompression_bomb(folder):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    header = (",".join(_events(folder).columns) + "\n").encode()
    data = compressor.compress(header) + b"".join(compressor.compress(bytes(1 << 20)) for _ in range(32)) + compressor.flush()
    (folder / "events.parquet").unlink()
    (folder / "events.csv.gz").write_bytes(data)
    return ["events.csv.gz: expands to at least", "more than 100 times its compressed size",
            "$CORE20_MAX_COMPRESSION_RATIO"]


def csv_named_parquet(folder):
    (folder / "patients.parquet").write_text(_patients(folder).write_csv())
    return ["patients.parquet: could not be read as Parquet (", "expected a complete Parquet file"]


def parquet_named_csv(folder):
    data = (folder / "patients.parquet").read_bytes()
    (folder / "patients.parquet").unlink()
    (folder / "patients.csv").write_bytes(data)
    return ["patients.csv: line", "is not valid UTF-8 text; expected the whole file in UTF-8"]


FILE_CASES = [
    patients_file_missing, two_patients_files, symlink_loop, dangling_symlink, folder_named_patients_csv,
    header_only_csv, parquet_without_rows, empty_gzip_file, truncated_gzip, plain_csv_named_gz,
    small_decompression_bomb, csv_named_parquet, parquet_named_csv,
]


# --- the files' shape and columns ------------------------------------------------------------


def nested_parquet_column(folder):
    events = _events(folder)
    events.with_columns(pl.concat_list("value", "value").alias("value")).write_parquet(folder / "events.parquet")
    return ["events.parquet: column 'value' holds a list of values in each row",
            "expected one plain value per row (numbers)"]


def struct_parquet_column(folder):
    patients = _patients(folder)
    patients.with_columns(pl.struct("postcode", "lsoa_code").alias("postcode")).write_parquet(folder / "patients.parquet")
    return ["patients.parquet: column 'postcode' holds a struct (several fields) in each row",
            "expected one plain value per row (text)"]


def csv_without_a_header(folder):
    (folder / "patients.csv").write_text(_patients(folder).write_csv(include_header=False))
    (folder / "patients.parquet").unlink()
    return ["patients.csv: required column(s)", "are missing", "Expected the contract's names"]


def duplicate_header(folder):
    text = _patients(folder).write_csv()
    header, rest = text.split("\n", 1)
    (folder / "patients.csv").write_text(header.replace("sex", "patient_id") + "\n" + rest)
    (folder / "patients.parquet").unlink()
    return ["patients.csv: the header names 'patient_id' twice (fields 1, 8 of line 1); expected each column once"]


def ragged_rows(folder):
    lines = _patients(folder).write_csv().split("\n")
    lines[5] += ",extra,fields"
    (folder / "patients.csv").write_text("\n".join(lines))
    (folder / "patients.parquet").unlink()
    return ["patients.csv: could not be read as CSV with the delimiter ','",
            "then one line per row with the same number of fields"]


def unclosed_quote(folder):
    lines = _patients(folder).write_csv().split("\n")
    lines[3] = '"' + lines[3]
    (folder / "patients.csv").write_text("\n".join(lines))
    (folder / "patients.parquet").unlink()
    return ["patients.csv: could not be read as CSV with the delimiter ','", "(quotes closed on the same line)"]


def tab_separated_without_the_option(folder):
    _patients_csv(folder, separator="\t")
    return ["patients.csv: line 1 (the header) splits into a single column with the delimiter ','",
            "set `delimiter: '\\t'` under options: in column_mapping.yaml"]


def utf16_export(folder):
    (folder / "patients.csv").write_bytes(_patients(folder).write_csv().encode("utf-16"))
    (folder / "patients.parquet").unlink()
    return ["patients.csv: line 1 is not valid UTF-8 text; expected the whole file in UTF-8", "UTF-16 byte-order mark"]


def events_without_code(folder):
    _events(folder).drop("code").write_parquet(folder / "events.parquet")
    return ["events.parquet: required column(s) ['code'] are missing", "Expected the contract's names"]


def patients_without_any_birth_date(folder):
    _patients(folder).drop("date_of_birth", "year_of_birth", "month_of_birth", strict=False).write_parquet(
        folder / "patients.parquet")
    return ["patients.parquet: needs 'date_of_birth', or both 'year_of_birth' and 'month_of_birth'; found ["]


def value_column_of_words(folder):
    events = _events(folder).with_columns(pl.lit("high").alias("value"))
    events.write_csv(folder / "events.csv")
    (folder / "events.parquet").unlink()
    return ["events.csv: column 'value' should hold numbers", "none of its"]


def event_date_stored_as_true_false(folder):
    _events(folder).with_columns(pl.col("event_date").is_not_null().alias("event_date")).write_parquet(folder / "events.parquet")
    return ["events.parquet: column 'event_date' should hold dates", "the file stores it as Boolean"]


SHAPE_CASES = [
    nested_parquet_column, struct_parquet_column, csv_without_a_header, duplicate_header, ragged_rows, unclosed_quote,
    tab_separated_without_the_option, utf16_export, events_without_code, patients_without_any_birth_date,
    value_column_of_words, event_date_stored_as_true_false,
]


# --- the optional linked feeds ---------------------------------------------------------------


def feed_boolean_in_words(folder):
    frame = _feed(folder, "maternity").with_columns(pl.lit("perhaps").alias("is_on_continuity_pathway"))
    frame.write_csv(folder / "maternity.csv")
    return ["maternity.csv: column 'is_on_continuity_pathway' has", "value(s) that are not true/false (expected one of"]


def feed_missing_a_column(folder):
    _feed(folder, "maternity").drop("booking_date").write_csv(folder / "maternity.csv")
    return ["maternity.csv: required column(s) ['booking_date'] are missing"]


def feed_stage_outside_its_values(folder):
    frame = _feed(folder, "cancer_registry").with_columns(pl.lit("9").alias("stage"))
    frame.write_csv(folder / "cancer_registry.csv")
    return ["cancer_registry.csv: column 'stage' has", "value(s) outside ['1', '2', '3', '4'] (blank is allowed)"]


def feed_stage_not_a_finite_number(folder):
    # A feed has no quarantine: NaN or infinity where a whole number belongs refuses the file.
    frame = _feed(folder, "cancer_registry")
    stages = pl.Series(["NaN", "inf", "1e400"] * (frame.height // 3 + 1)).head(frame.height)
    frame.with_columns(stages.alias("stage")).write_csv(folder / "cancer_registry.csv")
    return ["cancer_registry.csv: column 'stage' should hold whole numbers"]


def feed_unreadable_dates(folder):
    frame = _feed(folder, "cancer_registry").with_columns(pl.lit("sometime").alias("diagnosis_date"))
    frame.write_csv(folder / "cancer_registry.csv")
    return ["cancer_registry.csv: column 'diagnosis_date'", "dates in the form %Y-%m-%d"]


def feed_blank_required_date(folder):
    frame = _feed(folder, "mh_contacts").with_columns(pl.lit(None, dtype=pl.String).alias("contact_date"))
    frame.write_csv(folder / "mh_contacts.csv")
    return ["mh_contacts.csv: column 'contact_date' has", "blank value(s); it must always be filled"]


def feed_empty_file(folder):
    _feed(folder, "dental_extractions")
    (folder / "dental_extractions.csv").write_bytes(b"")
    return ["dental_extractions.csv: the file is empty (0 bytes); expected a header line naming the columns"]


def feed_truncated_parquet(folder):
    frame = _feed(folder, "mh_contacts")
    frame.write_parquet(folder / "mh_contacts.parquet")
    data = (folder / "mh_contacts.parquet").read_bytes()
    (folder / "mh_contacts.parquet").write_bytes(data[: len(data) // 2])
    return ["mh_contacts.parquet: could not be read as Parquet (", "expected a complete Parquet file"]


def feed_in_two_files(folder):
    frame = _feed(folder, "maternity")
    frame.write_csv(folder / "maternity.csv")
    frame.write_parquet(folder / "maternity.parquet")
    return ["has more than one 'maternity' file: ['maternity.parquet', 'maternity.csv']"]


def feed_nested_column(folder):
    frame = _feed(folder, "dental_extractions")
    table = frame.to_arrow()
    index = table.schema.get_field_index("episode_date")
    # The list type is given, not inferred: a month whose feed has no rows would otherwise
    # write a column of type null, which is no nested column at all.
    column = table.column(index)
    nested = pa.array([[value] for value in column.to_pylist()], type=pa.list_(column.type))
    pq.write_table(table.set_column(index, "episode_date", nested), folder / "dental_extractions.parquet")
    return ["dental_extractions.parquet: column 'episode_date' holds a list of values in each row",
            "expected one plain value per row (dates in the form %Y-%m-%d)"]


def feed_is_a_folder(folder):
    _feed(folder, "mh_contacts")
    (folder / "mh_contacts.csv").mkdir()
    return ["mh_contacts.csv: is a folder, not a file"]


FEED_CASES = [
    feed_boolean_in_words, feed_missing_a_column, feed_stage_outside_its_values, feed_stage_not_a_finite_number,
    feed_unreadable_dates,
    feed_blank_required_date, feed_empty_file, feed_truncated_parquet, feed_in_two_files, feed_nested_column,
    feed_is_a_folder,
]

CORPUS = MAPPING_CASES + FILE_CASES + SHAPE_CASES + FEED_CASES
