"""Unit: the optional linked feeds are read with the extract's rules and staged per month."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pipelines.segmentation.extract import ExtractError
from pipelines.segmentation.feeds import read_feed, stage_feeds
from pipelines.segmentation.schemas import FEEDS

MONTH = date(2026, 1, 1)
PATIENTS = pl.DataFrame({"patient_id": ["p1", "p2", "p3"]})


def test_absent_feeds_are_none_and_recorded_as_absent(tmp_path):
    assert read_feed(tmp_path, FEEDS["maternity"]) is None
    staged = stage_feeds(tmp_path, None, MONTH, PATIENTS)
    assert staged.availability["is_present"].to_list() == [False] * len(FEEDS)
    assert all(frame.is_empty() and frame.columns == FEEDS[name].staging().names for name, frame in staged.frames.items())
    assert set(staged.present().values()) == {None}


def test_csv_feed_is_cast_to_its_contract_and_staged(tmp_path):
    (tmp_path / "maternity.csv").write_text(
        "patient_id,booking_date,is_on_continuity_pathway\n"
        "p1,2025-06-01,Yes\n"
        "p1,2025-06-01,Yes\n"          # exact duplicate: dropped
        "p2,2026-02-01,no\n"           # after the month end: dropped
        "stranger,2025-06-01,1\n"      # not registered: dropped
        "p3,2025-07-01,FALSE\n"
    )
    staged = stage_feeds(tmp_path, None, MONTH, PATIENTS)
    maternity = staged.frames["maternity"]
    assert maternity.schema == pl.Schema(FEEDS["maternity"].staging().schema)
    assert maternity.select("patient_id", "is_on_continuity_pathway").rows() == [("p1", True), ("p3", False)]
    row = staged.availability.filter(pl.col("feed") == "maternity").row(0, named=True)
    assert (row["is_present"], row["n_rows"], row["n_staged"]) == (True, 5, 2)
    assert staged.present()["maternity"] is not None and staged.present()["mh_contacts"] is None


def test_bad_feed_values_name_the_file_and_column_never_the_value(tmp_path):
    path = tmp_path / "maternity.csv"
    path.write_text("patient_id,booking_date,is_on_continuity_pathway\nSECRET1,2025-06-01,perhaps\n")
    with pytest.raises(ExtractError) as caught:
        read_feed(tmp_path, FEEDS["maternity"])
    message = str(caught.value)
    assert "maternity.csv" in message and "'is_on_continuity_pathway'" in message and "1 value(s)" in message
    assert "SECRET1" not in message and "perhaps" not in message

    path.unlink()
    (tmp_path / "cancer_registry.csv").write_text("patient_id,diagnosis_date,stage\nSECRET2,2025-06-01,5\nSECRET3,2025-06-01,\n")
    with pytest.raises(ExtractError, match=r"column 'stage' has 1 value\(s\) outside \['1', '2', '3', '4'\]"):
        read_feed(tmp_path, FEEDS["cancer_registry"])

    (tmp_path / "mh_contacts.csv").write_text("patient_id,date\nSECRET4,2025-06-01\n")
    with pytest.raises(ExtractError, match=r"required column\(s\) \['contact_date'\] are missing"):
        read_feed(tmp_path, FEEDS["mh_contacts"])


def test_two_files_for_one_feed_is_an_error(tmp_path):
    pl.DataFrame({"patient_id": ["p1"], "contact_date": [date(2025, 1, 1)]}).write_parquet(tmp_path / "mh_contacts.parquet")
    (tmp_path / "mh_contacts.csv").write_text("patient_id,contact_date\np1,2025-01-01\n")
    with pytest.raises(ExtractError, match="more than one 'mh_contacts' file"):
        read_feed(tmp_path, FEEDS["mh_contacts"])


def test_parquet_feed_with_typed_columns(tmp_path):
    frame = pl.DataFrame(
        {"patient_id": ["p1", "p2"], "episode_date": [date(2025, 5, 1), date(2025, 6, 1)], "is_caries_extraction": [True, False]}
    )
    frame.write_parquet(tmp_path / "dental_extractions.parquet")
    assert read_feed(tmp_path, FEEDS["dental_extractions"]).equals(frame)
