"""Property tests: postcode normalisation is idempotent and spacing/case-blind, and
attaching deprivation never adds or drops a patient."""

from __future__ import annotations

import datetime as dt
import os

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.segmentation.codes import normalise_postcode, postcode_status
from pipelines.segmentation.deprivation import attach_deprivation
from pipelines.segmentation.schemas import PATIENT_DEPRIVATION

EXAMPLES = int(os.environ.get("CORE20_HYPOTHESIS_EXAMPLES", "50"))

LETTER = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGIT = st.sampled_from("0123456789")
OUTWARD_SHAPES = ("A9", "A99", "AA9", "AA99", "A9A", "AA9A")


@st.composite
def valid_postcodes(draw) -> str:
    """A canonical postcode of any of the six standard shapes."""
    shape = draw(st.sampled_from(OUTWARD_SHAPES))
    outward = "".join(draw(LETTER if c == "A" else DIGIT) for c in shape)
    return f"{outward} {draw(DIGIT)}{draw(LETTER)}{draw(LETTER)}"


@st.composite
def messy_variants(draw, canonical: str) -> str:
    """The same postcode with random case, whitespace anywhere and junk at the ends."""
    chars = []
    for c in canonical.replace(" ", ""):
        chars.append(draw(st.sampled_from([c.lower(), c.upper()])))
        chars.append(draw(st.sampled_from(["", "", " ", "  ", "\t", "\u00a0"])))
    junk = st.sampled_from(["", " ", "'", '"', ",", ".", " -"])
    return draw(junk) + "".join(chars) + draw(junk)


def _spec_reference():
    """Return the small reference of the deprivation spec tests (loaded by path: tests is no package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "spec" / "test_deprivation.py"
    spec = importlib.util.spec_from_file_location("_deprivation_spec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.REFERENCE


def _normalise(values: list[str | None]) -> list[str | None]:
    return pl.DataFrame({"raw": values}, schema={"raw": pl.String}).select(normalise_postcode(pl.col("raw")))["raw"].to_list()


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=12), valid_postcodes()), max_size=30))
def test_normalisation_is_idempotent(values):
    once = _normalise(values)
    assert _normalise(once) == once


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.data())
def test_spacing_and_case_variants_normalise_to_the_same_value(data):
    canonical = data.draw(valid_postcodes())
    variants = [data.draw(messy_variants(canonical)) for _ in range(5)]
    assert _normalise(variants) == [canonical] * 5
    statuses = pl.DataFrame({"raw": variants}).select(postcode_status(pl.col("raw")))["raw"].to_list()
    assert statuses == ["valid"] * 5


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["LS1 4AP", "AL1 1AA", "NG7 2UH", "NG7 2UJ", "DE1 1AA", "CF10 1AA", "NG1 9ZZ", "XX1 1XX", None, "bad"]),
            st.sampled_from([None, "E01000001", "E01000002", "E01035005", "W01001939", "junk"]),
            st.sampled_from(["P1", "P2", "P9"]),
        ),
        max_size=40,
    ),
    st.sampled_from([None, 2011, 2021]),
    st.booleans(),
)
def test_attach_keeps_one_row_per_patient(rows, vintage, fallback):
    REFERENCE = _spec_reference()
    n = len(rows)
    patients = pl.LazyFrame(
        {
            "reporting_month": [dt.date(2026, 1, 1)] * n,
            "patient_id": [f"id{i}" for i in range(n)],
            "practice_code": [r[2] for r in rows],
            "postcode": pl.Series([r[0] for r in rows], dtype=pl.String),
            "lsoa_code_supplied": pl.Series([r[1] for r in rows], dtype=pl.String),
        }
    ).with_columns(
        # Both read the raw postcode: with_columns evaluates against the incoming frame.
        normalise_postcode(pl.col("postcode")).alias("postcode"),
        postcode_status(pl.col("postcode")).alias("postcode_status"),
    )
    out = attach_deprivation(patients, REFERENCE, lsoa_vintage=vintage, practice_fallback=fallback).collect()
    assert out.height == n
    assert out["patient_id"].to_list() == [f"id{i}" for i in range(n)]
    assert out.columns == PATIENT_DEPRIVATION.names
    # A decile is present exactly when the method is one that yields one (or a split is undecided).
    assert out.filter(pl.col("imd2019_method").is_in(["outside_england", "blank", "invalid_postcode", "unmatched"]))["imd2019_decile"].null_count() == out.filter(
        pl.col("imd2019_method").is_in(["outside_england", "blank", "invalid_postcode", "unmatched"])
    ).height
