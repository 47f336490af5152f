"""The input contract: reading, column mapping, casting and the errors an analyst sees."""

import datetime as dt
import gzip

import polars as pl
import pytest

from pipelines.segmentation.extract import ExtractError, month_end, read_extract, stage_extract

MONTH = dt.date(2026, 10, 1)

PATIENTS_CSV = """patient_id,practice_code,postcode,date_of_birth,sex,registration_start_date,registration_end_date
p1,c84001,ng7 2uh,1980-05-17,F,2010-01-01,
p2,C84001,NG72UH,2008-10-31,M,2010-01-01,
p3,C84001,,1950-01-01,M,2010-01-01,2026-10-31
p4,C84001,NOT KNOWN,1950-01-01,U,2010-01-01,2026-09-30
p5,C84001,NG7 2UH,1990-01-01,F,2026-11-01,
"""

EVENTS_CSV = """patient_id,code,event_date,value
p1,72313002,2026-10-31,138
p1,72313002,2026-10-31,138
p1,72313002,2026-11-01,150
p4,72313002,2026-01-01,120
p2,1091811000000102,2026-05-01,
"""


def write(folder, patients=PATIENTS_CSV, events=EVENTS_CSV, mapping=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "patients.csv").write_text(patients)
    (folder / "events.csv").write_text(events)
    if mapping is not None:
        (folder / "column_mapping.yaml").write_text(mapping)
    return folder


def test_staging_keeps_patients_registered_at_month_end(tmp_path):
    staged = stage_extract(read_extract(write(tmp_path / "x")), MONTH)
    # p3 ends on the reference date (not after it), p4 ended before, p5 starts after: all out.
    assert staged.patients["patient_id"].to_list() == ["p1", "p2"]
    assert staged.counts["n_not_registered_at_month_end"] == 3


def test_staging_normalises_codes_and_computes_age_at_month_end(tmp_path):
    staged = stage_extract(read_extract(write(tmp_path / "x")), MONTH)
    rows = staged.patients.select("patient_id", "practice_code", "postcode", "postcode_status", "age").rows()
    # p2 turns 18 on 2026-10-31, the reference date itself.
    assert rows == [("p1", "C84001", "NG7 2UH", "valid", 46), ("p2", "C84001", "NG7 2UH", "valid", 18)]


def test_staging_drops_exact_duplicate_events_and_events_after_month_end(tmp_path):
    staged = stage_extract(read_extract(write(tmp_path / "x")), MONTH)
    assert staged.counts["n_duplicate_event_rows"] == 1
    assert staged.counts["n_events_after_month_end"] == 1
    # p4's event goes with p4 (not registered); p1 keeps one copy of its 31 Oct reading.
    assert staged.events.select("patient_id", "event_date", "value").rows() == [
        ("p1", dt.date(2026, 10, 31), 138.0),
        ("p2", dt.date(2026, 5, 1), None),
    ]


def test_column_mapping_renames_supplier_headers_and_codes(tmp_path):
    patients = """PatientGUID;Org;PC;DOB;Gender;RegDate;DeRegDate
a;C84001;NG7 2UH;17/05/1980;2;01/01/2010;
"""
    events = """PatientGUID;Snomed;Effective;Val
a;72313002;31/10/2026;138
"""
    mapping = """
patients: {patient_id: PatientGUID, practice_code: Org, postcode: PC, date_of_birth: DOB, sex: Gender,
           registration_start_date: RegDate, registration_end_date: DeRegDate}
events: {patient_id: PatientGUID, code: Snomed, event_date: Effective, value: Val}
options: {date_format: "%d/%m/%Y", delimiter: ";", sex_values: {"1": M, "2": F}}
"""
    staged = stage_extract(read_extract(write(tmp_path / "x", patients, events, mapping)), MONTH)
    assert staged.patients.select("patient_id", "sex", "date_of_birth").rows() == [("a", "F", dt.date(1980, 5, 17))]
    assert staged.events["value"].to_list() == [138.0]


def test_year_and_month_of_birth_are_accepted(tmp_path):
    patients = """patient_id,practice_code,postcode,year_of_birth,month_of_birth,sex,registration_start_date,registration_end_date
a,C84001,NG7 2UH,2008,10,F,2010-01-01,
"""
    staged = stage_extract(read_extract(write(tmp_path / "x", patients)), MONTH)
    # Mid-month (15th) stands in for the unknown day: 18 at the end of October 2026.
    assert staged.patients.select("date_of_birth", "age").rows() == [(dt.date(2008, 10, 15), 18)]


def test_parquet_and_gzipped_csv_are_read(tmp_path):
    folder = write(tmp_path / "x")
    pl.read_csv(folder / "patients.csv", infer_schema_length=0).write_parquet(folder / "patients.parquet")
    (folder / "patients.csv").unlink()
    with gzip.open(folder / "events.csv.gz", "wt") as handle:
        handle.write(EVENTS_CSV)
    (folder / "events.csv").unlink()
    assert stage_extract(read_extract(folder), MONTH).patients.height == 2


@pytest.mark.parametrize(
    ("patients", "events", "expected"),
    [
        (PATIENTS_CSV.replace("sex", "gender"), EVENTS_CSV,
         r"patients.csv: required column\(s\) \['sex'\] are missing; the file's columns are \[.*'gender'.*\]"),
        (PATIENTS_CSV.replace("patient_id", "PatientID"), EVENTS_CSV,
         r"The file has 'PatientID': add `patient_id: PatientID` under patients: in column_mapping.yaml"),
        (PATIENTS_CSV.replace(",", ";"), EVENTS_CSV,
         r"patients.csv: line 1 \(the header\) splits into a single column with the delimiter ','.*set `delimiter: ';'`"),
        (PATIENTS_CSV.replace("1980-05-17", "17/05/1980").replace("2008-10-31", "31/10/2008").replace("1950-01-01", "01/01/1950")
         .replace("1990-01-01", "01/01/1990"), EVENTS_CSV,
         r"column 'date_of_birth' should hold dates in the form %Y-%m-%d, but none of its 5 non-blank value\(s\) can be "
         r"read as such \(the first is on line 2\).*Set options.date_format"),
        (PATIENTS_CSV, EVENTS_CSV.replace(",138", ",high").replace(",150", ",low").replace(",120", ",ok"),
         r"events.csv: column 'value' should hold numbers, but none of its 4 non-blank value\(s\) can be read as such"),
        (PATIENTS_CSV.splitlines()[0] + "\n", EVENTS_CSV, r"patients.csv: has a header but no rows"),
    ],
)
def test_malformed_files_name_the_file_column_or_line(tmp_path, patients, events, expected):
    with pytest.raises(ExtractError, match=expected):
        read_extract(write(tmp_path / "x", patients, events))


def test_a_few_unreadable_values_are_flagged_for_quarantine_not_fatal(tmp_path):
    raw = read_extract(write(tmp_path / "x", PATIENTS_CSV.replace("1980-05-17", "17/05/1980")))
    assert raw.patients.filter(pl.col("_unreadable_date_of_birth"))["patient_id"].to_list() == ["p1"]
    staged = stage_extract(raw, MONTH)
    assert staged.quarantine.select("row_number", "rule", "column").rows() == [(1, "date_of_birth_unreadable", "date_of_birth")]
    # The record is the row as supplied (the text that could not be read), kept in the private layer.
    assert '"date_of_birth":"17/05/1980"' in staged.quarantine["record"][0]
    assert staged.patients["patient_id"].to_list() == ["p2"]


def test_file_level_messages_never_quote_a_headerless_first_row(tmp_path):
    # Without a header line the "column names" are a patient's values: they must not be echoed.
    headerless = "\n".join(PATIENTS_CSV.splitlines()[1:]) + "\n"
    with pytest.raises(ExtractError) as caught:
        read_extract(write(tmp_path / "x", headerless))
    message = str(caught.value)
    assert "do not look like column names (is the header line missing?)" in message
    for value in ("p1", "ng7 2uh", "1980-05-17", "c84001"):
        assert value not in message.lower()


def test_error_messages_carry_no_patient_values(tmp_path):
    patients = PATIENTS_CSV.replace(",F,", ",X,").replace("1980-05-17", "17/05/1980").replace("2008-10-31", "31/10/2008")
    patients = patients.replace("1950-01-01", "01/01/1950").replace("1990-01-01", "01/01/1990")
    with pytest.raises(ExtractError) as caught:
        read_extract(write(tmp_path / "x", patients))
    message = str(caught.value)
    assert "17/05/1980" not in message and "p1" not in message and "NG7" not in message.upper()


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ExtractError, match="does not exist"):
        read_extract(tmp_path / "nowhere")
    folder = write(tmp_path / "x")
    (folder / "events.csv").unlink()
    with pytest.raises(ExtractError, match=r"has no 'events' file: expected one of events.parquet"):
        read_extract(folder)
    (folder / "events.csv").write_text("")
    with pytest.raises(ExtractError, match=r"events.csv: the file is empty \(0 bytes\); expected a header line") as caught:
        read_extract(folder)
    assert caught.value.metadata() == {"file": "events.csv"}


def test_text_that_is_not_utf8_names_its_line(tmp_path):
    folder = write(tmp_path / "x")
    data = PATIENTS_CSV.encode().replace(b"NOT KNOWN", b"NOT KN\xd6WN")  # Latin-1, as some exports are
    (folder / "patients.csv").write_bytes(data)
    with pytest.raises(ExtractError, match=r"patients.csv: line 5 is not valid UTF-8 text; expected the whole file in UTF-8"):
        read_extract(folder)


def test_truncated_parquet_is_named(tmp_path):
    folder = write(tmp_path / "x")
    pl.read_csv(folder / "events.csv").write_parquet(folder / "events.parquet")
    (folder / "events.csv").unlink()
    data = (folder / "events.parquet").read_bytes()
    (folder / "events.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExtractError, match=r"events.parquet: could not be read as Parquet \(.*\); expected a complete Parquet file"):
        read_extract(folder)


def test_mapping_file_errors_name_the_problem(tmp_path):
    folder = write(tmp_path / "x", mapping="patients: {patient_ident: PatientGUID}\n")
    with pytest.raises(ExtractError, match=r"maps unknown contract column\(s\) \['patient_ident'\]"):
        read_extract(folder)
    folder = write(tmp_path / "y", mapping="options: {lsoa_vintage: 2001}\n")
    with pytest.raises(ExtractError, match="'lsoa_vintage' must be 2011 or 2021"):
        read_extract(folder)


MALFORMED_MAPPINGS = [
    ("- patients\n- events\n", "must be a mapping with the sections patients:, events: and options:; found a list"),
    ("42\n", "must be a mapping with the sections patients:, events: and options:; found a single value of type int"),
    ("patients: [patient_id, postcode]\n", "section 'patients' must map contract column names to the supplier's headers"),
    ("patients: PatientGUID\n", "section 'patients' must map contract column names"),
    ("events: {code: [SnomedCode, ReadCode]}\n", "section 'events': the header mapped to ['code'] must be a column name"),
    ("patients: {patient_id: ID, postcode: ID}\n",
     "section 'patients' maps 2 contract columns (patient_id, postcode) to the same header 'ID'"),
    ("options: [date_format]\n", "section 'options' must be a mapping of option: value; found a list"),
    ("options: {lsoa_vintage: twenty-eleven}\n", "option 'lsoa_vintage' must be 2011 or 2021 (a year, as digits); found 'twenty-eleven'"),
    ("options: {lsoa_vintage: [2011]}\n", "option 'lsoa_vintage' must be 2011 or 2021 (a year, as digits); found a list"),
    ("options: {delimiter: ';;'}\n", "option 'delimiter' must be a single character other than a quote or line break"),
    ("options: {delimiter: 9}\n", "option 'delimiter' must be a single character"),
    ("options: {date_format: 2026}\n", "option 'date_format' must be a strftime pattern such as \"%d/%m/%Y\""),
    ("options: {sex_values: [M, F]}\n", "option 'sex_values' must map the supplier's codes to ['M', 'F', 'I', 'U']"),
    ("options: {sex_values: {Male: Man}}\n", "option 'sex_values' must map onto ['M', 'F', 'I', 'U']; found ['Man']"),
    ("patients: {patient_id: [\n", "not valid YAML at line"),
]


@pytest.mark.parametrize(("mapping", "expected"), MALFORMED_MAPPINGS, ids=[m[1][:40] for m in MALFORMED_MAPPINGS])
def test_a_malformed_mapping_file_is_refused_naming_the_file_and_what_was_expected(tmp_path, mapping, expected):
    folder = write(tmp_path / "x", mapping=mapping)
    with pytest.raises(ExtractError) as caught:
        read_extract(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder / 'column_mapping.yaml'}: ") and expected in message, message
    assert caught.value.metadata()["file"] == "column_mapping.yaml"


def test_a_folder_or_a_dangling_link_where_a_table_should_be_is_named(tmp_path):
    folder = write(tmp_path / "x")
    (folder / "patients.csv").unlink()
    (folder / "patients.csv").mkdir()
    with pytest.raises(ExtractError, match=r"patients.csv: is a folder, not a file; expected the 'patients' table as one file"):
        read_extract(folder)
    (folder / "patients.csv").rmdir()
    (folder / "patients.csv").symlink_to(folder / "patients.csv")  # a link to itself: a loop
    with pytest.raises(ExtractError, match=r"patients.csv: is a symbolic link that leads nowhere"):
        read_extract(folder)


def test_month_end_handles_leap_years():
    assert month_end(dt.date(2024, 2, 1)) == dt.date(2024, 2, 29)
    assert month_end(dt.date(2026, 12, 1)) == dt.date(2026, 12, 31)


REPEATS_PATIENTS_CSV = "patient_id,practice_code,postcode,date_of_birth,sex,registration_start_date,registration_end_date\n" + "".join(
    f"q{i},C84001,NG7 2UH,1980-05-17,F,2010-01-01,\n" for i in range(1, 6))
# Exact repeats (with and without a value), rows differing only in value, code or date
# (not repeats), a repeat of a patient's row far apart in the file, for five patients.
REPEATS_EVENTS_CSV = """patient_id,code,event_date,value
q1,72313002,2026-10-01,138
q2,72313002,2026-10-01,
q1,72313002,2026-10-01,138
q3,1091811000000102,2026-05-01,
q2,72313002,2026-10-01,
q1,72313002,2026-10-01,139
q4,72313002,2026-09-01,120
q5,1091811000000102,2026-05-01,
q3,1091811000000102,2026-05-02,
q4,1091811000000102,2026-09-01,120
q3,1091811000000102,2026-05-01,
q3,1091811000000102,2026-05-01,
"""


@pytest.mark.parametrize("slice_patients", ["1", "2", "250000"])
def test_warehouse_staging_drops_exact_repeats_within_each_slice_of_patients(tmp_path, monkeypatch, slice_patients):
    import duckdb

    monkeypatch.setenv("CORE20_MODEL_SLICE_PATIENTS", slice_patients)
    raw = read_extract(write(tmp_path / "x", REPEATS_PATIENTS_CSV, REPEATS_EVENTS_CSV))
    with duckdb.connect() as con:
        staged = stage_extract(raw, MONTH, con=con, warehouse=True)
        con.register("_staged_patients", staged.patients.select("patient_id", "patient_key").to_arrow())
        stored = con.execute(
            "SELECT p.patient_id, c.code, r.event_date, r.value, r.patient_key FROM staging.event_rows r "
            "JOIN staging.event_codes c USING (reporting_month, code_key) JOIN _staged_patients p USING (patient_key)"
        ).fetchall()
        keys = [key for (key,) in con.execute("SELECT patient_key FROM staging.event_rows").fetchall()]
    expected = pl.read_csv(tmp_path / "x" / "events.csv", schema_overrides={"code": pl.String, "event_date": pl.Date})
    distinct = sorted(expected.unique().rows(), key=repr)
    assert sorted([row[:4] for row in stored], key=repr) == distinct
    assert staged.counts["n_events"] == len(distinct) == 8
    assert staged.counts["n_duplicate_event_rows"] == expected.height - len(distinct) == 4
    # As stored: each slice's rows together, in slice order, and each patient's rows together.
    size = int(slice_patients)
    slices = [(key - 1) // size for key in keys]
    assert slices == sorted(slices)
    assert len([k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]) == len(set(keys))
