"""Unit tests for postcode, LSOA and ODS code normalisation (and the doctests of the module)."""

from __future__ import annotations


import polars as pl
import pytest

from pipelines.segmentation import codes, deprivation, spatial
from pipelines.segmentation.codes import (
    is_valid_lsoa_code,
    normalise_lsoa_code,
    normalise_ods_code,
    normalise_postcode,
    postcode_area,
    postcode_district,
    postcode_status,
)


def _normalise(values: list[str | None]) -> list[str | None]:
    return pl.DataFrame({"raw": values}, schema={"raw": pl.String}).select(normalise_postcode(pl.col("raw")))["raw"].to_list()


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("sw1a1aa", "SW1A 1AA"),  # AA9A 9AA
        ("SW1A 1AA", "SW1A 1AA"),
        ("  sw1a   1aa  ", "SW1A 1AA"),
        ("w1a 0ax", "W1A 0AX"),  # A9A 9AA
        ("m1 1ae", "M1 1AE"),  # A9 9AA
        ("b33 8th", "B33 8TH"),  # A99 9AA
        ("cr2 6xh", "CR2 6XH"),  # AA9 9AA
        ("dn55 1pt", "DN55 1PT"),  # AA99 9AA
        ("gir 0aa", "GIR 0AA"),
        ('"NG7 2UH",', "NG7 2UH"),  # spreadsheet quotes and a trailing comma
        ("ng7\t2uh", "NG7 2UH"),
        ("\u00a0LS1 4AP\u00a0", "LS1 4AP"),  # non-breaking spaces
        ("L S 1 4 A P", "LS1 4AP"),
        ("", None),
        ("   ", None),
        (None, None),
        ("SW1A 1A", None),  # inward code too short
        ("1SW 1AA", None),
        ("SW1A1AAA", None),
        ("SW1A-1AA", None),  # internal junk is not whitespace
        ("ABC1 1AA", None),
        ("unknown", None),
    ],
)
def test_normalise_postcode(raw, canonical):
    assert _normalise([raw]) == [canonical]


def test_postcode_status_separates_blank_from_invalid():
    df = pl.DataFrame({"raw": [None, "", " \t", "sw1a1aa", "--", "12345"]}, schema={"raw": pl.String})
    assert df.select(postcode_status(pl.col("raw")))["raw"].to_list() == [
        "blank", "blank", "blank", "valid", "invalid", "invalid",
    ]


def test_postcode_parts():
    df = pl.DataFrame({"postcode": ["SW1A 1AA", "B33 8TH", "GIR 0AA", None]})
    out = df.select(postcode_district(pl.col("postcode")).alias("d"), postcode_area(pl.col("postcode")).alias("a"))
    assert out.rows() == [("SW1A", "SW"), ("B33", "B"), ("GIR", None), (None, None)]


def test_lsoa_codes():
    df = pl.DataFrame({"raw": ["E01004736", " w01000001 ", "S01000001", "E010047361", "E02000977", None]})
    out = df.select(normalise_lsoa_code(pl.col("raw")).alias("code"), is_valid_lsoa_code(pl.col("raw")).alias("ok"))
    assert out.rows() == [
        ("E01004736", True), ("W01000001", True), (None, False), (None, False), (None, False), (None, False),
    ]


def test_ods_codes():
    df = pl.DataFrame({"raw": ["c84001", " QMF ", "52r", "C84 001", "AB", "C84-001", None]})
    assert df.select(normalise_ods_code(pl.col("raw")))["raw"].to_list() == [
        "C84001", "QMF", "52R", "C84001", None, None, None,
    ]



def test_segmentation_modules_do_not_import_geopandas_at_top():
    import subprocess
    import sys

    code = (
        "import sys; import pipelines.segmentation.codes, pipelines.segmentation.deprivation, "
        "pipelines.segmentation.spatial; "
        "sys.exit(int(any(m in sys.modules for m in ('geopandas', 'shapely', 'pyogrio'))))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
