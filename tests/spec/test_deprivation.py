"""Spec tests for deprivation: input rows -> attach_deprivation -> expected rows.

The small reference below is made up but shaped like the real one; each table reads as
"patient with this postcode / LSOA gets these deciles, by this method". Tests marked
`reference` run against the real shared files.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.segmentation.deprivation import (
    DeprivationReference,
    attach_deprivation,
    imd_quintile,
    is_core20,
)
from pipelines.segmentation.schemas import MATCH_METHODS, PATIENT_DEPRIVATION

MONTH = dt.date(2026, 1, 1)


def frame(rows: list[tuple], columns: list[str], schema: dict | None = None) -> pl.DataFrame:
    """Build a frame from literal rows (readable tables in the tests)."""
    return pl.DataFrame(rows, schema=columns, orient="row", schema_overrides=schema or {})


# LSOA11 A (U, unchanged), B (S, split into B1 decile 2 / B2 decile 5), C (S, split into C1/C2,
# both decile 7), D+E (M, merged into DE21).
REFERENCE = DeprivationReference(
    postcodes=frame(
        [
            ("LS1 4AP", "E01000001", "E92000001", "E08000035"),  # live, unchanged LSOA
            ("AL1 1AA", "E01000001", "E92000001", "E07000240"),  # terminated 1994, same lookup
            ("NG7 2UH", "E01000002", "E92000001", "E06000018"),  # split LSOA, decile differs
            ("NG7 2UJ", "E01000002", "E92000001", "E06000018"),  # split LSOA, not in spatial table
            ("NG7 2ZZ", "E01000003", "E92000001", "E06000018"),  # terminated, split LSOA whose children agree
            ("DE1 1AA", "E01000004", "E92000001", "E06000015"),  # merged LSOA
            ("CF10 1AA", "W01001939", "W92000004", "W06000015"),  # Wales
            ("EH1 1AA", "S01008677", "S92000003", "S12000036"),  # Scotland
            ("BT1 1AA", "95AA01S1", "N92000002", "N09000003"),  # Northern Ireland
            ("ZZ9 9ZZ", None, None, None),  # lookup row without geography
        ],
        ["postcode", "lsoa11_code", "country_code", "lad_code"],
    ),
    imd2019=frame(
        [("E01000001", 3), ("E01000002", 1), ("E01000003", 6), ("E01000004", 9), ("E01000005", 9)],
        ["lsoa11_code", "imd2019_decile"],
        {"imd2019_decile": pl.Int8},
    ),
    imd2025=frame(
        [("E01000001", 4), ("E01035001", 2), ("E01035002", 5), ("E01035003", 7), ("E01035004", 7), ("E01035005", 10)],
        ["lsoa21_code", "imd2025_decile"],
        {"imd2025_decile": pl.Int8},
    ),
    lsoa11_lsoa21=frame(
        [
            ("E01000001", "U", "E01000001"),
            ("E01000002", "S", "E01035001"),
            ("E01000002", "S", "E01035002"),
            ("E01000003", "S", "E01035003"),
            ("E01000003", "S", "E01035004"),
            ("E01000004", "M", "E01035005"),
            ("E01000005", "M", "E01035005"),
        ],
        ["lsoa11_code", "change_code", "lsoa21_code"],
    ),
    lsoa21_geography=frame(
        [
            ("E01000001", "15F", "QWO", "E08000035"),
            ("E01035001", "52R", "QT1", "E06000018"),
            ("E01035002", "52R", "QT1", "E06000018"),
            ("E01035003", "52R", "QT1", "E06000018"),
            ("E01035004", "52R", "QT1", "E06000018"),
            ("E01035005", "15M", "QJ2", "E06000015"),
        ],
        ["lsoa21_code", "sicbl_code", "icb_code", "lad_code"],
    ),
    lsoa11_geography=frame(
        [
            ("E01000001", "15F", "QWO", "E08000035"),
            ("E01000002", "52R", "QT1", "E06000018"),
            ("E01000003", "52R", "QT1", "E06000018"),
            ("E01000004", "15M", "QJ2", "E06000015"),
            ("E01000005", "15M", "QJ2", "E06000015"),
        ],
        ["lsoa11_code", "sicbl_code", "icb_code", "lad_code"],
    ),
    spatial=frame(
        [
            # Children deciles 2 and 5: neither the decile nor Core20 status is certain.
            ("NG7 2UH", "E01035001", 2, False, False, "within_child"),
            ("NG7 2UK", "E01035001", 2, False, True, "nearest_child"),  # made-up: Core20-certain only
            ("NG1 9ZZ", "E01035003", 1, True, True, "point_in_polygon"),  # newer than the lookup
            ("ZZ9 9ZZ", "E01000001", 1, True, True, "point_in_polygon"),
        ],
        ["postcode", "lsoa21_code", "n_candidates", "is_decile_certain", "is_core20_certain", "spatial_rule"],
        {"n_candidates": pl.Int16},
    ),
    outside_england_postcodes=frame([("LL11 9ZZ",)], ["postcode"]),
    outside_england_outward=frame([("BT",), ("CF10",), ("EH",)], ["outward"]),
    practice_postcodes=frame([("P1", "LS1 4AP"), ("P2", "CF10 1AA")], ["practice_code", "postcode"]),
)

INPUT_COLUMNS = ["patient_id", "practice_code", "postcode", "postcode_status", "lsoa_code_supplied"]
EXPECTED_COLUMNS = [
    "patient_id", "lsoa11_code", "lsoa21_code", "imd2019_decile", "imd2019_method",
    "imd2025_decile", "imd2025_method", "imd2025_is_certain", "icb_code",
]


def run(rows: list[tuple], **options) -> pl.DataFrame:
    patients = frame(rows, INPUT_COLUMNS).with_columns(
        pl.lit(MONTH).alias("reporting_month"), pl.col("lsoa_code_supplied").cast(pl.String)
    )
    out = attach_deprivation(patients.lazy(), REFERENCE, **options).collect()
    assert out.schema == pl.Schema(PATIENT_DEPRIVATION.schema)
    assert out["patient_id"].to_list() == [r[0] for r in rows]
    assert set(out["imd2019_method"]) | set(out["imd2025_method"]) <= set(MATCH_METHODS)
    return out.select(EXPECTED_COLUMNS)


def expected(rows: list[tuple]) -> pl.DataFrame:
    return frame(
        rows, EXPECTED_COLUMNS, {"imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8, "imd2025_is_certain": pl.Boolean}
    ).with_columns(pl.col(c).cast(pl.String) for c in ("lsoa11_code", "lsoa21_code", "icb_code"))


def test_postcode_routes():
    out = run(
        [
            ("live", "P1", "LS1 4AP", "valid", None),
            ("terminated", "P1", "AL1 1AA", "valid", None),
            ("merged", "P1", "DE1 1AA", "valid", None),
            ("split_spatial", "P1", "NG7 2UH", "valid", None),
            ("split_no_centroid", "P1", "NG7 2UJ", "valid", None),
            ("split_terminated_children_agree", "P1", "NG7 2ZZ", "valid", None),
            ("new_postcode", "P1", "NG1 9ZZ", "valid", None),
            ("lookup_no_geography", "P1", "ZZ9 9ZZ", "valid", None),
            ("unknown", "P1", "XX1 1XX", "valid", None),
        ]
    )
    assert_frame_equal(
        out,
        expected(
            [
                ("live", "E01000001", "E01000001", 3, "postcode_lookup", 4, "postcode_lookup", True, "QWO"),
                ("terminated", "E01000001", "E01000001", 3, "postcode_lookup", 4, "postcode_lookup", True, "QWO"),
                ("merged", "E01000004", "E01035005", 9, "postcode_lookup", 10, "postcode_lookup", True, "QJ2"),
                ("split_spatial", "E01000002", "E01035001", 1, "postcode_lookup", 2, "spatial", False, "QT1"),
                ("split_no_centroid", "E01000002", None, 1, "postcode_lookup", None, "unmatched", None, "QT1"),
                # Not placeable (no centroid), but both children of the 2011 LSOA are decile 7.
                ("split_terminated_children_agree", "E01000003", None, 6, "postcode_lookup", 7, "postcode_lookup", True, "QT1"),
                # A split child has one parent, so its 2019 decile is the parent's.
                ("new_postcode", "E01000003", "E01035003", 6, "spatial", 7, "spatial", True, "QT1"),
                ("lookup_no_geography", "E01000001", "E01000001", 3, "spatial", 4, "spatial", True, "QWO"),
                ("unknown", None, None, None, "unmatched", None, "unmatched", None, None),
            ]
        ),
    )


def test_outside_england_gets_no_decile():
    out = run(
        [
            ("wales", "P1", "CF10 1AA", "valid", None),
            ("scotland", "P1", "EH1 1AA", "valid", None),
            ("ni", "P1", "BT1 1AA", "valid", None),
            ("ni_not_in_lookup", "P1", "BT99 9ZZ", "valid", None),
            ("welsh_district_new", "P1", "CF10 9ZZ", "valid", None),
            ("codepoint_wales_new", "P1", "LL11 9ZZ", "valid", None),
            # The postcode wins over a supplied English LSOA: IMD does not apply.
            ("wales_with_lsoa", "P1", "CF10 1AA", "valid", "E01000001"),
        ]
    )
    outside = [(pid, None, None, None, "outside_england", None, "outside_england", None, None) for pid in out["patient_id"]]
    assert_frame_equal(out, expected(outside))


def test_failures_are_named():
    out = run(
        [
            ("invalid", "P1", None, "invalid", None),
            ("blank", "P1", None, "blank", None),
            ("blank_bad_lsoa", "P1", None, "blank", "E0100"),
            ("blank_unknown_lsoa", "P1", None, "blank", "E01999999"),
        ]
    )
    assert_frame_equal(
        out,
        expected(
            [
                ("invalid", None, None, None, "invalid_postcode", None, "invalid_postcode", None, None),
                ("blank", None, None, None, "blank", None, "blank", None, None),
                ("blank_bad_lsoa", None, None, None, "unmatched", None, "unmatched", None, None),
                ("blank_unknown_lsoa", None, None, None, "unmatched", None, "unmatched", None, None),
            ]
        ),
    )


def test_supplied_lsoa_2011():
    out = run(
        [
            ("unchanged", "P1", None, "blank", "e01000001 "),
            ("split_differs", "P1", None, "blank", "E01000002"),
            ("split_agrees", "P1", None, "blank", "E01000003"),
            ("merged", "P1", None, "blank", "E01000005"),
            ("welsh", "P1", None, "blank", "W01001939"),
            # Postcode unmatched, so the supplied LSOA is used.
            ("postcode_unmatched", "P1", "XX1 1XX", "valid", "E01000001"),
            # Postcode matched, so the supplied LSOA is ignored.
            ("postcode_wins", "P1", "LS1 4AP", "valid", "E01000004"),
        ],
        lsoa_vintage=2011,
    )
    assert_frame_equal(
        out,
        expected(
            [
                ("unchanged", "E01000001", "E01000001", 3, "lsoa_supplied", 4, "lsoa_supplied", True, "QWO"),
                ("split_differs", "E01000002", None, 1, "lsoa_supplied", None, "lsoa_supplied", False, "QT1"),
                ("split_agrees", "E01000003", None, 6, "lsoa_supplied", 7, "lsoa_supplied", True, "QT1"),
                ("merged", "E01000005", "E01035005", 9, "lsoa_supplied", 10, "lsoa_supplied", True, "QJ2"),
                ("welsh", None, None, None, "outside_england", None, "outside_england", None, None),
                ("postcode_unmatched", "E01000001", "E01000001", 3, "lsoa_supplied", 4, "lsoa_supplied", True, "QWO"),
                ("postcode_wins", "E01000001", "E01000001", 3, "postcode_lookup", 4, "postcode_lookup", True, "QWO"),
            ]
        ),
    )


def test_supplied_lsoa_2021():
    out = run(
        [
            ("unchanged", "P1", None, "blank", "E01000001"),
            ("split_child", "P1", None, "blank", "E01035002"),
            # A merged 2021 LSOA has two 2011 parents: no unique 2019 LSOA.
            ("merged", "P1", None, "blank", "E01035005"),
            ("a_2011_only_code", "P1", None, "blank", "E01000002"),
        ],
        lsoa_vintage=2021,
    )
    assert_frame_equal(
        out,
        expected(
            [
                ("unchanged", "E01000001", "E01000001", 3, "lsoa_supplied", 4, "lsoa_supplied", True, "QWO"),
                ("split_child", "E01000002", "E01035002", 1, "lsoa_supplied", 5, "lsoa_supplied", True, "QT1"),
                ("merged", None, "E01035005", None, "lsoa_supplied", 10, "lsoa_supplied", True, "QJ2"),
                ("a_2011_only_code", None, None, None, "unmatched", None, "unmatched", None, None),
            ]
        ),
    )


def test_supplied_lsoa_vintage_inferred_when_not_stated():
    out = run(
        [("code_2011", "P1", None, "blank", "E01000004"), ("code_2021", "P1", None, "blank", "E01035002")],
    )
    assert out.select("lsoa11_code", "lsoa21_code", "imd2019_decile", "imd2025_decile").rows() == [
        ("E01000004", "E01035005", 9, 10),
        ("E01000002", "E01035002", 1, 5),
    ]


def test_practice_fallback_is_off_by_default_and_flagged_when_on():
    rows = [
        ("blank_p1", "P1", None, "blank", None),
        ("blank_p2_wales", "P2", None, "blank", None),
        ("matched", "P1", "DE1 1AA", "valid", None),
        ("outside", "P1", "CF10 1AA", "valid", None),
    ]
    off = run(rows)
    assert off["imd2019_method"].to_list() == ["blank", "blank", "postcode_lookup", "outside_england"]
    on = run(rows, practice_fallback=True)
    assert_frame_equal(
        on,
        expected(
            [
                # The practice's deciles, never its LSOA or ICB: those are not the patient's home.
                ("blank_p1", None, None, 3, "practice_fallback", 4, "practice_fallback", True, None),
                ("blank_p2_wales", None, None, None, "blank", None, "blank", None, None),
                ("matched", "E01000004", "E01035005", 9, "postcode_lookup", 10, "postcode_lookup", True, "QJ2"),
                ("outside", None, None, None, "outside_england", None, "outside_england", None, None),
            ]
        ),
    )
    explicit = run(rows[:1], practice_fallback=True, practice_postcodes=pl.LazyFrame({"practice_code": ["P1"], "postcode": ["de11aa"]}))
    assert explicit.row(0)[3:7] == (9, "practice_fallback", 10, "practice_fallback")


def test_output_matches_contract_without_optional_columns():
    patients = pl.LazyFrame({"reporting_month": [MONTH], "patient_id": ["x"], "practice_code": ["P1"], "lsoa_code_supplied": ["E01000001"]})
    out = attach_deprivation(patients, REFERENCE, lsoa_vintage=2011).collect()
    assert out.columns == PATIENT_DEPRIVATION.names
    assert out.row(0, named=True)["imd2019_method"] == "lsoa_supplied"


def test_duplicated_reference_key_is_refused_without_values():
    with pytest.raises(ValueError, match="unique on 'postcode'") as error:
        DeprivationReference(
            postcodes=pl.concat([REFERENCE.postcodes, REFERENCE.postcodes.head(1)]),
            imd2019=REFERENCE.imd2019,
            imd2025=REFERENCE.imd2025,
            lsoa11_lsoa21=REFERENCE.lsoa11_lsoa21,
            lsoa21_geography=REFERENCE.lsoa21_geography,
            lsoa11_geography=REFERENCE.lsoa11_geography,
        )
    assert "LS1" not in str(error.value)


def test_core20_certainty_and_quintiles_of_both_vintages():
    patients = frame(
        [
            ("exact", "P1", "LS1 4AP", "valid", None),
            ("split_uncertain", "P1", "NG7 2UH", "valid", None),
            ("split_core20_certain", "P1", "NG7 2UK", "valid", None),
            ("split_agree", "P1", "NG7 2ZZ", "valid", None),
            ("wales", "P1", "CF10 1AA", "valid", None),
        ],
        INPUT_COLUMNS,
    ).with_columns(pl.lit(MONTH).alias("reporting_month"), pl.col("lsoa_code_supplied").cast(pl.String))
    out = attach_deprivation(patients.lazy(), REFERENCE).collect()
    columns = ["imd2025_is_certain", "imd2025_core20_is_certain", "imd2019_quintile", "imd2019_is_core20",
               "imd2025_quintile", "imd2025_is_core20"]
    assert out.select(columns).rows() == [
        (True, True, 2, False, 2, False),
        (False, False, 1, True, 1, True),
        (False, True, 1, True, 1, True),
        (True, True, 3, False, 4, False),
        (None, None, None, None, None, None),
    ]


def test_quintile_and_core20_are_national():
    df = pl.DataFrame({"decile": [1, 2, 3, 9, 10, None]}, schema={"decile": pl.Int8})
    out = df.select(imd_quintile(pl.col("decile")).alias("q"), is_core20(pl.col("decile")).alias("c"))
    assert out["q"].to_list() == [1, 1, 2, 5, 5, None]
    assert out["c"].to_list() == [True, True, False, False, False, None]


# --- integration on the real shared reference files ----------------------------------------


@pytest.fixture(scope="module")
def real_reference():
    from pipelines.segmentation.deprivation import load_deprivation_reference

    return load_deprivation_reference()


def _patients(postcodes: list[str | None]) -> pl.LazyFrame:
    n = len(postcodes)
    return pl.LazyFrame(
        {
            "reporting_month": [MONTH] * n,
            "patient_id": [str(i) for i in range(n)],
            "practice_code": ["C84001"] * n,
            "postcode": postcodes,
            "postcode_status": ["valid" if p else "blank" for p in postcodes],
            "lsoa_code_supplied": pl.Series([None] * n, dtype=pl.String),
        }
    )


@pytest.mark.reference
def test_real_known_postcodes(real_reference):
    out = attach_deprivation(_patients(["SW1A 1AA", "CF10 1EP", "EH1 1YZ"]), real_reference).collect()
    sw1a = out.row(0, named=True)
    assert sw1a["lsoa11_code"] == "E01004736"
    assert sw1a["imd2019_method"] == "postcode_lookup"
    assert sw1a["icb_code"] == "QRV"  # North West London ICB
    assert out["imd2019_method"].to_list()[1:] == ["outside_england", "outside_england"]


@pytest.mark.reference
def test_real_sample_of_live_english_postcodes_matches_official_deciles(real_reference):
    from reference_data.loader import read_imd2019, scan_postcode_lsoa11

    sample = (
        scan_postcode_lsoa11()
        .filter(pl.col("date_terminated").is_null() & (pl.col("country_code") == "E92000001"))
        .select("postcode", "lsoa11_code")
        .collect()
        .sample(10_000, seed=2026)
    )
    official = sample.join(read_imd2019(), on="lsoa11_code", how="left")
    out = attach_deprivation(_patients(sample["postcode"].to_list()), real_reference).collect()
    assert out.height == 10_000
    assert (out["imd2019_method"] == "postcode_lookup").all()
    assert (out["imd2019_decile"] == official["imd2019_decile"]).all()
    # Without the spatial table only split/complex LSOAs (about 5%) lack a 2025 decile.
    share = (out["imd2025_method"] == "postcode_lookup").mean()
    assert 0.93 < share < 0.97
