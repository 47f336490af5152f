"""Spec: directly age-standardised rates (ESP2013, Dobson) against a worked example by hand.

The example (PHE DSR method, DOMAIN.md section 5; PHEindicatormethods::phe_dsr) has two
Core20 / rest groups in two ESP2013 bands, 40-44 (standard weight 7,000) and 70-74 (5,000);
every count is a multiple of 5 and above 7, so disclosure control leaves it unchanged.

Core20: 40/100 aged 40-44, 15/20 aged 70-74 (crude 55/120 = 45.8%).
    DSR   = (7000 x 40/100 + 5000 x 15/20) / 12000 = 6550 / 12000 = 0.545833
    var   = (40 x (7000/100)^2 + 15 x (5000/20)^2) / 12000^2 = 1,133,500 / 144,000,000 = 0.00787153
    O = 55; Byar (z = 1.959964): lower = 55 (1 - 1/495 - z / (3 sqrt 55))^3 = 41.4309,
    upper = 56 (1 - 1/504 + z / (3 sqrt 56))^3 = 71.5914
    limits = DSR + sqrt(var / O) x (O_limit - O) = 0.383502, 0.744320
Rest: 25/50 aged 40-44, 80/100 aged 70-74 (crude 105/150 = 70.0%).
    DSR = (3500 + 4000) / 12000 = 0.625; var = (25 x 140^2 + 80 x 50^2) / 12000^2 = 0.00479167
Gap (Core20 - rest) = -0.079167, limits -0.079167 -/+ z sqrt(0.00787153 + 0.00479167) =
    -0.299723, 0.141390. The crude gap is -24.2 points: most of it is the age mix.
A third band, 90+, holds 3/5 Core20 patients: hidden by the profile (1-7), so the band
enters neither group's DSR, and the values above stand.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5
from pipelines.segmentation.standardised import AGE_STANDARDISED, build_standardised_table

MONTH = date(2026, 1, 1)


def _people(groups):
    """(decile, age, n, x) blocks -> results and attributes frames."""
    rows, attrs, k = [], [], 0
    for decile, age, n, x in groups:
        for i in range(n):
            pid = f"p{k}"
            k += 1
            rows.append((MONTH, pid, "bp_case_finding", 2, i < x))
            attrs.append((MONTH, pid, age, decile, decile, "White"))
    results = pl.DataFrame(rows, schema={"reporting_month": pl.Date, "patient_id": pl.String, "indicator_id": pl.String,
                                         "indicator_version": pl.Int32, "is_numerator": pl.Boolean}, orient="row")
    attributes = pl.DataFrame(attrs, schema={"reporting_month": pl.Date, "patient_id": pl.String, "age": pl.Int32,
                                             "imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8,
                                             "ethnicity_broad": pl.String}, orient="row")
    return results.lazy(), attributes.lazy()


def _gap_rows(core20=(55, 120), rest=(105, 150), core20_hidden=False):
    rows = []
    for vintage in ("IMD2019", "IMD2025"):
        for group, (x, n) in (("core20", core20), ("rest", rest)):
            hidden = core20_hidden and group == "core20"
            rows.append({"reporting_month": MONTH, "indicator_id": "bp_case_finding", "indicator_version": 2,
                         "value_type": "proportion", "multiplier": 1, "imd_vintage": vintage, "breakdown": "core20",
                         "group": group, "reference_group": "rest", "numerator": None if hidden else x,
                         "denominator": None if hidden else n, "rate": None if hidden else x / n,
                         "rate_lower": None, "rate_upper": None,
                         "gap": None if hidden or group == "rest" else x / n - rest[0] / rest[1],
                         "gap_lower": None, "gap_upper": None, "is_suppressed": hidden})
    return pl.DataFrame(rows, schema_overrides={"indicator_version": pl.Int32, "numerator": pl.Int64,
                                                "denominator": pl.Int64, "multiplier": pl.Int64})


EXAMPLE = [(1, 42, 100, 40), (1, 72, 20, 15), (1, 92, 5, 3), (9, 43, 50, 25), (9, 71, 100, 80), (9, 95, 30, 20)]


def test_dsr_and_its_gap_match_the_worked_example():
    results, attributes = _people(EXAMPLE)
    table = build_standardised_table(results, attributes, _gap_rows(core20=(60, 125), rest=(125, 180)),
                                     NHS_SUPPRESS_ROUND5, primary_vintage="IMD2025")
    row = {r["group"]: r for r in table.filter(pl.col("imd_vintage") == "IMD2019").iter_rows(named=True)}
    c, r = row["core20"], row["rest"]
    assert c["dsr"] == pytest.approx(0.5458333, abs=1e-6)
    assert (c["dsr_lower"], c["dsr_upper"]) == (pytest.approx(0.383502, abs=1e-6), pytest.approx(0.744320, abs=1e-6))
    assert r["dsr"] == pytest.approx(0.625, abs=1e-9)
    assert (r["dsr_lower"], r["dsr_upper"]) == (pytest.approx(0.495822, abs=1e-6), pytest.approx(0.774361, abs=1e-6))
    assert c["dsr_gap"] == pytest.approx(-0.0791667, abs=1e-6)
    assert (c["dsr_gap_lower"], c["dsr_gap_upper"]) == (pytest.approx(-0.299723, abs=1e-6), pytest.approx(0.141390, abs=1e-6))
    assert r["dsr_gap"] is None  # the reference group has no gap
    # 90+ is out (a hidden Core20 cell): both groups are standardised over the same two bands.
    assert c["standardised_ages"] == r["standardised_ages"] == "40-44, 70-74" and c["bands_used"] == 2
    assert c["standard_population"] == "ESP2013" and c["status"] == "computed"
    assert c["age_confounding"] == AGE_STANDARDISED["bp_case_finding"]
    # Crude figures and counts are the gap table's, published unchanged beside the DSR.
    assert (c["numerator"], c["denominator"]) == (60, 125) and c["crude_rate"] == pytest.approx(60 / 125)


def test_hidden_crude_row_shows_no_dsr_and_no_new_count():
    results, attributes = _people(EXAMPLE)
    gaps = _gap_rows(core20_hidden=True)
    table = build_standardised_table(results, attributes, gaps, NHS_SUPPRESS_ROUND5)
    core20 = table.filter((pl.col("group") == "core20") & (pl.col("breakdown") == "core20"))
    assert core20["dsr"].is_null().all() and core20["dsr_lower"].is_null().all() and core20["dsr_gap"].is_null().all()
    assert core20["numerator"].is_null().all() and core20["status"].to_list() == ["counts hidden by disclosure control"] * 2
    # Every count shown is one the gap table shows.
    shown = set(table.select("numerator", "denominator").drop_nulls().rows())
    assert shown <= set(gaps.select("numerator", "denominator").drop_nulls().rows())


def test_under_10_events_no_dsr():
    results, attributes = _people([(1, 42, 10, 0), (1, 72, 10, 0), (9, 43, 50, 25), (9, 71, 100, 80)])
    table = build_standardised_table(results, attributes, _gap_rows(core20=(0, 20)), NHS_SUPPRESS_ROUND5)
    core20 = table.filter((pl.col("group") == "core20") & (pl.col("imd_vintage") == "IMD2019")).row(0, named=True)
    assert core20["dsr"] is None and core20["status"] == "fewer than 10 events in the bands used"


def test_the_published_audit_covers_the_table():
    # The disclosure audit reads the DSR columns as statistics: none may show over hidden counts.
    from pipelines.disclosure_audit import STATISTIC_COLUMNS, audit_table

    assert {"dsr", "dsr_lower", "dsr_upper", "dsr_gap", "crude_rate", "crude_gap"} <= set(STATISTIC_COLUMNS)
    results, attributes = _people(EXAMPLE)
    table = build_standardised_table(results, attributes, _gap_rows(core20_hidden=True), NHS_SUPPRESS_ROUND5)
    assert audit_table("age_standardised_rates", table, NHS_SUPPRESS_ROUND5) == []
    leaked = table.with_columns(pl.lit(0.5).alias("dsr"))
    assert [v.rule for v in audit_table("age_standardised_rates", leaked, NHS_SUPPRESS_ROUND5)] == ["statistic_over_hidden"]


def test_the_warehouse_path_gives_the_same_table_as_the_patient_rows():
    # The monthly run aggregates the rows in DuckDB (standardised_rows_sql) instead of loading
    # every denominator patient; the worked example must come out the same either way.
    import duckdb

    from pipelines.segmentation.standardised import standardised_rows_sql

    results, attributes = _people(EXAMPLE)
    gaps = _gap_rows(core20=(60, 125), rest=(125, 180))
    expected = build_standardised_table(results, attributes, gaps, NHS_SUPPRESS_ROUND5, primary_vintage="IMD2025")
    con = duckdb.connect()
    con.register("r", results.collect().to_arrow())
    con.register("a", attributes.collect().to_arrow())
    rows = standardised_rows_sql(con, "r", "a")
    assert rows.collect()["n_patients"].sum() == results.collect().height  # every patient counted once
    assert rows.collect().height < results.collect().height  # aggregated: alike patients are one row
    got = build_standardised_table(None, None, gaps, NHS_SUPPRESS_ROUND5, primary_vintage="IMD2025", rows=rows)
    assert got.filter(pl.col("status") == "computed").height > 0
    assert got.equals(expected)


def test_an_area_with_no_usable_band_shows_crude_rows_without_a_dsr():
    # Every band holds 1-7 patients of a group: the profile hides them all, so no band is common
    # to both groups and nothing is standardised (a small ICB); the crude rows still come out.
    results, attributes = _people([(1, 42, 5, 3), (1, 72, 6, 2), (9, 43, 7, 4), (9, 71, 4, 1)])
    table = build_standardised_table(results, attributes, _gap_rows(core20=(10, 10), rest=(10, 10)), NHS_SUPPRESS_ROUND5)
    core20 = table.filter((pl.col("breakdown") == "core20") & (pl.col("group") == "core20"))
    assert core20.height == 2 and core20["dsr"].is_null().all() and core20["bands_used"].fill_null(0).eq(0).all()
    assert (core20["crude_rate"] == 1.0).all()
