"""`core20 imd`: an analyst's CSV of postcodes in, the same columns plus national IMD out.

These run against the real shared reference data (marker `reference`), through the
command's own entry point, so they check exactly what an analyst gets.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines import cli
from pipelines.segmentation.imd_lookup import OUTPUT_COLUMNS

pytestmark = pytest.mark.reference


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def imd(*args: str) -> int:
    return cli.main(["imd", *map(str, args)])


def read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


def test_each_route_with_columns_passed_through_unchanged(tmp_path, capsys):
    source = write(
        tmp_path / "addresses.csv",
        "ref,postcode,notes\n"
        "007,sw1a1aa,lower case no space\n"
        '008,"  LS1   4AP. ",spaces and a full stop\n'
        "009,AL1 1AA,terminated in 1994\n"
        "010,CF10 1EP,Wales\n"
        "011,EH1 1YZ,Scotland\n"
        "012,BT1 1AA,Northern Ireland\n"
        "013,JE2 3QN,Jersey\n"
        "014,,blank\n"
        "015,12345,not a postcode\n"
        "016,ZZ99 9ZZ,valid shape but no such postcode\n",
    )
    out = tmp_path / "out.csv"
    assert imd("--vintage", "2019", source, out) == 0
    table = read(out)
    assert table.columns == ["ref", "postcode", "notes", *OUTPUT_COLUMNS]
    # Passed through byte for byte: leading zeros and untrimmed text survive.
    assert table["ref"].to_list() == [f"{n:03d}" for n in range(7, 17)]
    assert table["postcode"][1] == "  LS1   4AP. "
    assert table.select("postcode_normalised", "imd_match_method").rows() == [
        ("SW1A 1AA", "postcode_lookup"),
        ("LS1 4AP", "postcode_lookup"),
        ("AL1 1AA", "postcode_lookup"),
        ("CF10 1EP", "outside_england"),
        ("EH1 1YZ", "outside_england"),
        ("BT1 1AA", "outside_england"),
        ("JE2 3QN", "outside_england"),
        (None, "blank"),
        (None, "invalid_postcode"),
        ("ZZ99 9ZZ", "unmatched"),
    ]
    # SW1A 1AA is in LSOA E01004736 (Westminster), in North West London ICB.
    sw1a = table.row(0, named=True)
    assert (sw1a["lsoa_code"], sw1a["imd_vintage"], sw1a["icb_code"]) == ("E01004736", "IMD2019", "QRV")
    assert table.filter(pl.col("imd_match_method") != "postcode_lookup")["imd_decile"].null_count() == 7
    message = capsys.readouterr().out
    assert "10 rows: 3 (30.0%) got a national IMD2019 decile" in message
    assert "SW1A" not in message and "LS1" not in message


def test_decile_quintile_and_core20_agree_with_the_official_files(tmp_path):
    from reference_data.loader import read_imd2019, read_imd2025

    source = write(tmp_path / "a.csv", "postcode\nSW1A 1AA\nLS1 4AP\nAL1 1AA\n")
    for vintage, official, lsoa in ((2019, read_imd2019(), "lsoa11_code"), (2025, read_imd2025(), "lsoa21_code")):
        out = tmp_path / f"out{vintage}.csv"
        assert imd("--vintage", vintage, source, out) == 0
        table = read(out).with_columns(pl.col("imd_decile", "imd_quintile").cast(pl.Int8))
        joined = table.join(official.rename({lsoa: "lsoa_code"}), on="lsoa_code", how="left")
        decile = f"imd{vintage}_decile"
        assert joined.height == 3 and joined[decile].null_count() == 0
        assert (joined["imd_decile"] == joined[decile]).all()
        assert (joined["imd_quintile"] == (joined[decile] + 1) // 2).all()
        assert joined["is_core20"].to_list() == [str(d <= 2).lower() for d in joined[decile]]


def test_split_lsoa_postcode_is_placed_among_its_own_children(tmp_path):
    from pipelines.segmentation.spatial import build_spatial_lsoa21
    from reference_data.loader import read_lsoa11_lsoa21, scan_postcode_lsoa11

    spatial = build_spatial_lsoa21().filter(pl.col("spatial_rule") == "within_child")
    sample = spatial.sample(50, seed=3)
    parents = scan_postcode_lsoa11().select("postcode", "lsoa11_code").collect()
    expected_children = (
        sample.join(parents, on="postcode").join(read_lsoa11_lsoa21(), on="lsoa11_code", suffix="_child")
        .group_by("postcode").agg(pl.col("lsoa21_code_child"))
    )
    source = tmp_path / "split.csv"
    sample.select(pl.col("postcode").str.to_lowercase().str.replace(" ", "")).write_csv(source)
    out = tmp_path / "out.csv"
    assert imd("--vintage", "2025", source, out) == 0
    table = read(out).join(expected_children, left_on="postcode_normalised", right_on="postcode")
    assert table.height == 50
    assert (table["imd_match_method"] == "spatial").all()
    assert all(lsoa in children for lsoa, children in table.select("lsoa_code", "lsoa21_code_child").rows())
    assert table.filter(pl.col("imd_is_certain") == "true")["imd_decile"].null_count() == 0


def test_ten_thousand_messy_live_english_postcodes_get_the_official_2019_decile(tmp_path):
    from reference_data.loader import read_imd2019, scan_postcode_lsoa11

    sample = (
        scan_postcode_lsoa11()
        .filter(pl.col("date_terminated").is_null() & (pl.col("country_code") == "E92000001"))
        .select("postcode", "lsoa11_code")
        .collect()
        .sample(10_000, seed=20261122)
        .join(read_imd2019(), on="lsoa11_code", how="left")
    )
    # As typed into a spreadsheet: lower case, spaces dropped or doubled, stray quotes.
    style = pl.int_range(pl.len()) % 4
    messy = (
        pl.when(style == 0).then(pl.col("postcode").str.to_lowercase())
        .when(style == 1).then(pl.col("postcode").str.replace(" ", ""))
        .when(style == 2).then(pl.concat_str([pl.lit("  "), pl.col("postcode").str.replace(" ", "   "), pl.lit(" ")]))
        .otherwise(pl.concat_str([pl.lit("'"), pl.col("postcode"), pl.lit("'")]))
    )
    source = tmp_path / "sample.csv"
    sample.with_row_index("row").select("row", messy.alias("postcode")).write_csv(source)
    out = tmp_path / "out.csv"
    assert imd("--vintage", "2019", source, out) == 0
    table = read(out).with_columns(pl.col("row").cast(pl.UInt32), pl.col("imd_decile").cast(pl.Int8))
    assert table.height == 10_000
    assert (table["postcode_normalised"] == sample["postcode"]).all()
    assert (table["lsoa_code"] == sample["lsoa11_code"]).all()
    assert (table["imd_match_method"] == "postcode_lookup").all()
    assert (table["imd_decile"] == sample["imd2019_decile"]).all()


@pytest.mark.parametrize(
    ("content", "encoding", "expected"),
    [
        ("", "utf-8", "the file is empty; expected a header row with a 'postcode' column"),
        ("id,Post Code\n1,LS1 4AP\n", "utf-8", "no 'postcode' column; the header has 2 column(s): id, Post Code"),
        ("id,Postcode\n1,LS1 4AP\n", "utf-8", "no 'postcode' column (found 'Postcode': pass --postcode-column 'Postcode')"),
        ("postcode,imd_decile\nLS1 4AP,3\n", "utf-8", "already has column(s) imd_decile, which the output adds"),
        ("postcode,name\nLS1 4AP,Zo\u00eb\n", "latin-1", "it is not UTF-8 text"),
    ],
)
def test_unusable_input_is_refused_naming_file_and_column_and_output_is_untouched(tmp_path, capsys, content, encoding, expected):
    source = write(tmp_path / "input.csv", content, encoding)
    out = write(tmp_path / "out.csv", "previous,output\n")
    assert imd("--vintage", "2019", source, out) == 1
    message = capsys.readouterr().err
    assert str(source) in message and expected in message, message
    assert out.read_text() == "previous,output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.csv", "out.csv"]


def test_missing_file_is_named(tmp_path, capsys):
    assert imd("--vintage", "2025", tmp_path / "nope.csv", tmp_path / "out.csv") == 1
    assert f"{tmp_path / 'nope.csv'}: no such file" in capsys.readouterr().err


def test_console_script_runs_as_installed(tmp_path):
    source = write(tmp_path / "in.csv", "postcode\nng7 2uh\n")
    out = tmp_path / "out.csv"
    script = Path(sys.executable).with_name("core20")
    done = subprocess.run([str(script), "imd", "--vintage", "2025", str(source), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert read(out).row(0, named=True)["imd_vintage"] == "IMD2025"


@pytest.mark.parametrize(
    ("content", "encoding", "options"),
    [
        ("id;postcode\n1;ng7 2uh\n2;LS1 4AP\n", "utf-8", ["--delimiter", ";"]),
        ("id\tpostcode\n1\tng7 2uh\n2\tLS1 4AP\n", "utf-8", ["--delimiter", "\\t"]),
        ("id,postcode,name\n1,ng7 2uh,Zo\u00eb\n2,LS1 4AP,\u00c9mile\n", "cp1252", ["--encoding", "cp1252"]),
        ("\ufeffid,postcode\n1,ng7 2uh\n2,LS1 4AP", "utf-8", []),  # Excel's byte-order mark, no final newline
    ],
)
def test_semicolon_tab_cp1252_and_bom_files_are_read_with_their_options(tmp_path, content, encoding, options):
    source = write(tmp_path / "in.csv", content, encoding)
    out = tmp_path / "out.csv"
    assert imd("--vintage", "2019", *options, source, out) == 0
    separator = {"--delimiter": options[1].replace("\\t", "\t")}.get(options[0], ",") if options else ","
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n") and not text.endswith("\n\n")
    table = pl.read_csv(out, infer_schema=False, separator=separator)
    assert table["id"].to_list() == ["1", "2"]
    assert table["postcode_normalised"].to_list() == ["NG7 2UH", "LS1 4AP"]
    if encoding == "cp1252":
        assert table["name"].to_list() == ["Zo\u00eb", "\u00c9mile"]


@pytest.mark.parametrize(
    ("content", "encoding", "expected"),
    [
        ("id;postcode\n1;LS1 4AP\n", "utf-8", "no 'postcode' column (the header contains ';': pass --delimiter ';')"),
        ("id\tpostcode\n1\tLS1 4AP\n", "utf-8", "(the header contains '\\t': pass --delimiter '\\t')"),
        ("postcode,name\nLS1 4AP,Zo\u00eb\n", "cp1252", "it is not UTF-8 text (a spreadsheet saved as plain CSV on Windows is usually cp1252: pass --encoding cp1252)"),
    ],
)
def test_wrong_delimiter_or_encoding_gets_a_hint_before_the_reference_loads(tmp_path, capsys, content, encoding, expected):
    source = write(tmp_path / "input.csv", content, encoding)
    # A reference directory that does not exist: the input is judged before it is read.
    assert cli.main(["imd", "--vintage", "2025", "--reference-dir", str(tmp_path / "no-reference"),
                     str(source), str(tmp_path / "out.csv")]) == 1
    message = capsys.readouterr().err
    assert str(source) in message and expected in message, message
    assert "no-reference" not in message
