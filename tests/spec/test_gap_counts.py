"""The gap table's counts as DuckDB makes them (gaps.gap_counts) and the membership patterns'
representatives (populations.membership_representatives), checked against counts made by hand."""

import datetime as dt

import duckdb
import polars as pl

from pipelines.segmentation.gaps import gap_counts
from pipelines.segmentation.month_disclosure import population_memberships
from pipelines.segmentation.populations import membership_patterns, membership_representatives

MONTH = dt.date(2026, 1, 1)
CATALOGUE = pl.DataFrame({"indicator_id": ["a"], "indicator_version": [1], "clinical_area": ["SMI"],
                          "direction": ["higher_is_better"]})


def _results(rows: list[tuple[str, str, bool]]) -> pl.LazyFrame:
    return pl.LazyFrame({"reporting_month": [MONTH] * len(rows), "patient_id": [r[0] for r in rows],
                         "indicator_id": [r[1] for r in rows], "indicator_version": [1] * len(rows),
                         "is_numerator": [r[2] for r in rows]}, schema_overrides={"indicator_version": pl.Int32})


def _people(ids: list[str], sex: list[str | None], decile: list[int | None]) -> pl.LazyFrame:
    return pl.LazyFrame({"reporting_month": [MONTH] * len(ids), "patient_id": ids, "sex": sex,
                         "imd2019_decile": decile, "imd2025_decile": decile},
                        schema_overrides={"imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8})


def _cells(counts: pl.DataFrame, breakdown: str, vintage: str = "IMD2019") -> dict[str, tuple[int, int]]:
    rows = counts.filter(breakdown=breakdown, imd_vintage=vintage).select("group", "numerator", "denominator").rows()
    return {group: (n, d) for group, n, d in rows}


def test_counts_by_group_match_a_hand_count():
    # p1 F decile 1 numerator; p2 ' m ' decile 2; p3 no sex, decile 10 numerator; p4 no attributes row.
    results = _results([("p1", "a", True), ("p2", "a", False), ("p3", "a", True), ("p4", "a", False)])
    people = _people(["p1", "p2", "p3"], ["F", " m ", None], [1, 2, 10])
    cohorts = pl.LazyFrame({"reporting_month": [MONTH] * 2, "patient_id": ["p1", "p3"], "cohort_id": ["smi", "smi"]})
    counted = gap_counts(results, people, CATALOGUE, cohorts=cohorts, breakdowns=["overall", "sex", "core20", "imd_quintile"])
    counts = counted.counts
    assert _cells(counts, "overall") == {"all": (2, 4)}
    assert _cells(counts, "sex") == {"F": (1, 1), "M": (0, 1), "unknown": (1, 2)}
    assert _cells(counts, "core20") == {"core20": (1, 2), "rest": (1, 2)}
    assert _cells(counts, "imd_quintile") == {"1": (1, 2), "5": (1, 1), "unknown": (0, 1)}
    assert _cells(counts, "cohort:smi") == {"member": (2, 2), "not_member": (0, 2)}
    assert _cells(counts, "core20|cohort:smi") == {"core20|member": (1, 1), "core20|not_member": (0, 1),
                                                    "rest|member": (1, 1), "rest|not_member": (0, 1)}
    assert counted.emitted == ["overall", "sex", "core20", "imd_quintile", "cohort:smi", "core20|cohort:smi"]


def test_more_cohorts_than_one_grouping_query_takes_are_counted_in_several_passes():
    # 70 cohorts (beyond GROUPING()'s 60 columns a query): cohort k has the one member p<k>.
    ids = [f"p{k}" for k in range(70)]
    results = _results([(i, "a", k % 2 == 0) for k, i in enumerate(ids)])
    people = _people(ids, ["F"] * 70, [5] * 70)
    cohorts = pl.LazyFrame({"reporting_month": [MONTH] * 70, "patient_id": ids, "cohort_id": [f"c{k:02d}" for k in range(70)]})
    counts = gap_counts(results, people, CATALOGUE, cohorts=cohorts, breakdowns=["overall"], intersections=()).counts
    for k in range(70):
        assert _cells(counts, f"cohort:c{k:02d}") == {"member": (int(k % 2 == 0), 1), "not_member": (35 - int(k % 2 == 0), 69)}


def test_representatives_keep_one_patient_per_membership_pattern():
    # Patterns: {a den+num, b den} x2 (p1, p2), {a den} (p3), deprivation only (p4, p5 alike),
    # and p6 like p4 but with no IMD 2019 decile (one more pattern).
    results = _results([("p1", "a", True), ("p1", "b", False), ("p2", "a", True), ("p2", "b", False), ("p3", "a", False)])
    deprivation = pl.DataFrame({
        "reporting_month": [MONTH] * 6, "patient_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
        "imd2019_decile": [1, 1, 2, 3, 3, None], "imd2019_method": ["postcode_lookup"] * 5 + ["unmatched"],
        "imd2025_decile": [1, 1, 2, 3, 3, 4], "imd2025_method": ["postcode_lookup"] * 6,
    }, schema_overrides={"imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8})
    con = duckdb.connect()
    con.register("_results", results.collect().to_arrow())
    con.register("_deprivation", deprivation.to_arrow())
    kept_results, kept_deprivation = membership_representatives(con, "_results", "_deprivation")
    kept = set(kept_results["patient_id"]) | set(kept_deprivation["patient_id"])
    assert kept == {"p1", "p3", "p4", "p6"}
    whole = population_memberships(results, deprivation.lazy()).collect()
    names = sorted(whole["population"].unique().to_list())
    few = population_memberships(kept_results.lazy(), kept_deprivation.lazy()).collect()
    assert sorted(few["population"].unique().to_list()) == names
    assert membership_patterns(few, names).tolist() == membership_patterns(whole, names).tolist()
