"""The national roll-up's protection over four ICBs in two NHS England regions.

Every area (each ICB, each region, England) is protected in one problem, audited in scopes
(`month_disclosure._area_scopes`): each count first in a model of its own ICB, its ICB and a
neighbour, its region, its region with England, the rest held at the truth. Four ICBs
(Midlands: QOC, QPM; South West: QSL, QT6), so that each region has ICBs to pair
(`test_national_celery.py`'s Midlands is one ICB, which copies its region). The ICB months run
in this process (the Celery path is `test_national_celery.py`'s); what is checked here is the
roll-up's protection: the attacker of `tests/attack.py`, holding every area side by side,
recovers nothing, with linear and with integer programmes, while the same counts suppressed
area by area leak.
"""

import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGIONS = {"Y60": ["QOC", "QPM"], "Y58": ["QSL", "QT6"]}
ICBS = sorted(icb for members in REGIONS.values() for icb in members)
SCALE = 0.003
ATTACKED = ["bp_case_finding", "copd_flu_vaccination", "smi_health_check"]


@pytest.fixture(scope="module")
def rolled_up(tmp_path_factory):
    from pipelines import synthetic
    from pipelines.national.partition import run_icb_month
    from pipelines.national.rollup import rollup_month
    from pipelines.national.store import NATIONAL, PartitionStore
    from pipelines.national.synth import generate_national

    root = tmp_path_factory.mktemp("national_rollup")
    month = synthetic.default_reporting_month().isoformat()
    generate_national(root / "extracts", reporting_month=synthetic.default_reporting_month(), scale=SCALE,
                      icbs=",".join(ICBS), include_feeds=False)
    for icb in ICBS:
        run_icb_month(icb, month, extracts_root=str(root / "extracts"), store_root=str(root / "partitions"),
                      scratch_root=str(root / "scratch"))
    manifest = rollup_month(str(root / "partitions"), month, sii_repetitions=1000)
    store = PartitionStore(root / "partitions")
    hierarchy = pl.concat([store.read(icb, month, "gap_hierarchy") for icb in ICBS], how="diagonal_relaxed").unique()
    fine = {"ethnicity_16": dict(hierarchy.select("__ethnicity_16", "__ethnicity_broad").drop_nulls().unique().rows()),
            "sub_icb": dict(hierarchy.select("__sub_icb", "__icb").drop_nulls().unique().rows())}
    catalogue = pl.concat([store.read(icb, month, "indicator_catalogue") for icb in ICBS]).unique()
    return {"manifest": manifest, "published": store.read(NATIONAL, month, "gap_table"),
            "truth": store.read(NATIONAL, month, "private__gap_counts"), "hierarchy": hierarchy, "fine": fine,
            "catalogue": catalogue}


def _sums() -> dict:
    return {"ENG": ICBS, **REGIONS}


def test_the_rollup_is_audited_in_scopes_of_an_area_or_two(rolled_up):
    figures = rolled_up["manifest"]["suppression"]
    assert figures["method"] == "joint"
    # Many models (ICBs, pairs of ICBs, regions, a region with England), the largest smaller
    # than the release's whole problem.
    assert figures["n_lp_models"] > len(ICBS)
    assert 0 < figures["largest_lp_model"] < figures["n_variables"]
    published = rolled_up["published"]
    assert set(published["geography_code"]) == {*ICBS, *REGIONS, "ENG"}
    # Practice, Sub-ICB and ICB rows are published in the ICB tables only.
    wider = published.filter(pl.col("geography_level") != "icb")
    assert not wider["breakdown"].is_in(["practice", "sub_icb", "icb"]).any()
    assert published.filter(pl.col("geography_level") == "icb")["breakdown"].is_in(["practice"]).any()


def test_a_reader_holding_every_area_recovers_nothing(rolled_up):
    from attack import recovered_across_areas

    attacked = pl.col("indicator_id").is_in(ATTACKED)
    published, truth = rolled_up["published"].filter(attacked), rolled_up["truth"].filter(attacked)
    assert published["indicator_id"].n_unique() == len(ATTACKED)
    assert published["is_suppressed"].sum() > 0
    assert recovered_across_areas(published, truth, _sums(), rolled_up["fine"]) == []


def test_whole_numbers_recover_nothing_either(rolled_up):
    # Integer programmes can only narrow further than LPs; on a sample (one indicator, one region
    # and its ICBs), as they cost far more.
    from attack import recovered_across_areas

    sample = pl.col("indicator_id").eq("smi_health_check") & pl.col("geography_code").is_in(["Y58", *REGIONS["Y58"]])
    published, truth = rolled_up["published"].filter(sample), rolled_up["truth"].filter(sample)
    assert published["is_suppressed"].sum() > 0
    assert recovered_across_areas(published, truth, {"Y58": REGIONS["Y58"]}, rolled_up["fine"], integer=True) == []


def test_each_area_suppressed_alone_would_leak(rolled_up):
    # The control: the same counts, each area suppressed on its own; the same reader recovers counts.
    from attack import recovered_across_areas
    from pipelines.segmentation.disclosure import PROFILES
    from pipelines.segmentation.gaps import gap_table_from_counts

    attacked = pl.col("indicator_id").is_in(ATTACKED)
    published, truth = rolled_up["published"].filter(attacked), rolled_up["truth"].filter(attacked)
    profile = PROFILES[published["disclosure_profile"][0]]
    vintage = published.filter(pl.col("breakdown") == "overall")["imd_vintage"][0]
    alone = []
    for code in sorted(set(truth["geography_code"])):
        counts = truth.filter(pl.col("geography_code") == code).drop("geography_level", "geography_code", "geography_name")
        if code not in ICBS:
            counts = counts.filter(~pl.col("breakdown").is_in(["practice", "sub_icb", "icb"]))
        table = gap_table_from_counts(counts, rolled_up["hierarchy"], rolled_up["catalogue"], profile=profile,
                                      primary_vintage=vintage)
        alone.append(table.with_columns(pl.lit(code).alias("geography_code")))
    assert recovered_across_areas(pl.concat(alone, how="diagonal_relaxed"), truth, _sums(), rolled_up["fine"]) != []
