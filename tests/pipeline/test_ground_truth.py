"""Every register's prevalence and every indicator's rate against the generator's ground truth.

A generated extract (40,000 patients, all four linked feeds) is staged and evaluated with
the shipped definitions, exactly as the monthly run does. Two comparisons per figure:

1. Exact: the generator records what it wrote (register members by construction; for
   each indicator the denominator and the realised numerator, drawn or counted over the
   written rows independently of the pipeline's engine). The pipeline must reproduce
   them exactly: any difference is a rule mismatch, not chance.
2. Statistical: where the generator draws the outcome directly, it also records the
   expected count (sum of p_i) and its standard deviation sqrt(sum p_i (1 - p_i)) - the
   numerator is a sum of independent Bernoulli draws. The pipeline's count must lie within
   4 standard deviations of it (|z| <= 4). Under the normal approximation a correct
   generator fails one such check with probability about 6e-5, so all 20 checks (8 registers, 12 indicators) together
   fail by chance about once in 830 seeds; checks whose SD is under 2 (a handful of
   patients, where the normal approximation is poor) are left to the exact comparison.
"""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from pipelines.segmentation.cohorts import evaluate_indicators, evaluate_registers, indicator_catalogue, load_codelists
from pipelines.segmentation.definitions import load_definitions
from pipelines.segmentation.extract import month_end, read_extract, stage_extract
from pipelines.segmentation.feeds import stage_feeds
from pipelines.synthetic import CYP_MAX_AGE, FLU_CAMPAIGN_START, RELIEVER_THRESHOLD, generate_extract

pytestmark = pytest.mark.reference

MONTH = date(2026, 3, 1)
Z_LIMIT = 4.0
MIN_SD = 2.0


def evaluate(folder):
    truth = json.loads((folder / "ground_truth.json").read_text())
    staged = stage_extract(read_extract(folder), MONTH)
    feeds = stage_feeds(folder, None, MONTH, staged.patients)
    defs = load_definitions()
    codelists = load_codelists(defs)
    reference_date = month_end(MONTH)
    registers = evaluate_registers(defs, staged.patients.lazy(), staged.events.lazy(), codelists, reference_date).collect()
    results = evaluate_indicators(
        defs, staged.patients.lazy(), staged.events.lazy(), None, codelists, reference_date, feeds=feeds.present()
    ).collect()
    present = feeds.availability.filter("is_present")["feed"].to_list()
    return truth, registers, results, indicator_catalogue(defs, present), staged.patients.height


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("truth")
    generate_extract(folder, reporting_month=MONTH, n_patients=40_000, seed=2024)
    return evaluate(folder)


def test_generator_assumes_the_shipped_ics_parameters():
    parameters = load_definitions().ics.parameters
    assert parameters["flu_campaign_start"] == parameters["covid_campaign_start"] == "%02d-%02d" % FLU_CAMPAIGN_START
    assert parameters["reliever_issues_threshold"] == RELIEVER_THRESHOLD
    assert parameters["cyp_max_age"] == CYP_MAX_AGE


def test_every_register_matches_exactly_and_its_expected_prevalence(run):
    truth, registers, _, _, n_registered = run
    counts = dict(registers.group_by("register_id").len().iter_rows())
    checked = 0
    for register_id, expected in truth["registers"].items():
        n = counts.get(register_id, 0)
        assert n == expected["n_registered"], register_id
        z = (n - expected["expected_prevalence"] * n_registered) / expected["expected_count_sd"]
        assert abs(z) <= Z_LIMIT, (register_id, n, expected["expected_prevalence"], z)
        checked += 1
    assert checked == 8


def test_every_available_indicator_matches_its_ground_truth(run):
    truth, _, results, catalogue, _ = run
    available = set(catalogue.filter("is_available")["indicator_id"])
    assert available == set(truth["indicators"]), "the generator must cover every available indicator"
    n_statistical = 0
    for indicator_id, expected in truth["indicators"].items():
        rows = results.filter(pl.col("indicator_id") == indicator_id)
        overall = expected["all_patients"]
        denominator, numerator = rows.height, int(rows["is_numerator"].sum())
        assert overall["n_denominator"] > 0, indicator_id
        assert (denominator, numerator) == (overall["n_denominator"], overall["realised_numerator"]), indicator_id
        if overall.get("expected_rate") is not None and overall["expected_numerator_sd"] >= MIN_SD:
            z = (numerator - overall["expected_rate"] * denominator) / overall["expected_numerator_sd"]
            assert abs(z) <= Z_LIMIT, (indicator_id, numerator, overall["expected_rate"] * denominator, z)
            n_statistical += 1
    assert n_statistical >= 12  # all drawn outcomes but the two CYP diabetes ones (a few dozen patients)


def test_without_feeds_their_indicators_are_not_available(tmp_path):
    generate_extract(tmp_path, reporting_month=MONTH, n_patients=3_000, seed=5, include_feeds=False)
    truth, _, results, catalogue, _ = evaluate(tmp_path)
    feed_indicators = {"maternity_continuity_of_carer", "cancer_early_stage", "cyp_tooth_extractions", "cyp_mental_health_access"}
    assert not feed_indicators & set(results["indicator_id"])
    unavailable = catalogue.filter(pl.col("indicator_id").is_in(list(feed_indicators)))
    assert unavailable["is_available"].to_list() == [False] * 4
    assert all("not supplied in this month's extract" in reason for reason in unavailable["not_available_reason"])
    assert not feed_indicators & set(truth["indicators"])
