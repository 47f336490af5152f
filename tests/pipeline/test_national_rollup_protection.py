"""The national roll-up's protection over four ICBs in two NHS England regions.

Every area (each ICB, each region, England) is protected in one problem, audited in scopes
(`month_disclosure._area_scopes`), the rest held at the truth. The ICB rows repeat each ICS's
own release (a reader may hold both), so only the regions and England are decided. Four ICBs
(Midlands: QOC, QPM; South West: QSL, QT6), so that each region has ICBs to pair
(`test_national_celery.py`'s Midlands is one ICB, which copies its region). The ICB months run
in this process (the Celery path is `test_national_celery.py`'s); what is checked here is the
roll-up's protection: the attacker of `tests/attack.py`, holding every area side by side,
learns nothing the ICS releases alone did not already tell, with linear and with integer
programmes, while the same counts suppressed area by area leak.
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
    own = pl.concat([store.read(icb, month, "published__gap_table").with_columns(pl.lit(icb).alias("geography_code"))
                     for icb in ICBS])
    return {"manifest": manifest, "published": store.read(NATIONAL, month, "gap_table"), "own": own,
            "truth": store.read(NATIONAL, month, "private__gap_counts"), "hierarchy": hierarchy, "fine": fine,
            "catalogue": catalogue}


def _sums() -> dict:
    return {"ENG": ICBS, **REGIONS}


def test_the_rollup_is_audited_in_scopes_of_an_area_or_two(rolled_up):
    figures = rolled_up["manifest"]["suppression"]
    assert figures["method"] == "linked"
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


def test_the_manifest_says_how_many_rows_each_level_hid_and_why(rolled_up):
    # Counted here from the published table by hand: rows per level, hidden rows, and above the
    # ICBs the hidden rows over a hidden row of one of the area's own ICBs.
    published = rolled_up["published"]
    figures = rolled_up["manifest"]["hidden_rows"]
    assert set(figures) == {"icb", "region", "england"}
    cell = ["indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"]
    hidden_icb = set(published.filter((pl.col("geography_level") == "icb") & pl.col("is_suppressed"))
                     .select("geography_code", *cell).rows())
    for level in ("icb", "region", "england"):
        rows = published.filter(pl.col("geography_level") == level)
        hidden = rows.filter("is_suppressed")
        assert figures[level]["rows"] == rows.height
        assert figures[level]["hidden"] == hidden.height
        assert figures[level]["share_hidden"] == round(hidden.height / rows.height, 4)
        if level == "icb":
            continue
        under = 0
        for code, *key in hidden.select("geography_code", *cell).rows():
            below = ICBS if level == "england" else REGIONS[code]
            under += any((icb, *key) in hidden_icb for icb in below)
        assert figures[level]["over_a_hidden_icb_row"] == under
        assert figures[level]["other"] == hidden.height - under
        # The roll-up hides a region's or England's row wherever one of its ICBs hid it.
        assert under > 0


def test_the_icb_rows_repeat_each_ics_own_release(rolled_up):
    # A reader may hold each ICS's own release and the national one: the national ICB rows must
    # show and hide exactly what the ICS did, or the two patterns of the same counts would
    # tell more than either. (The ICB rows decided afresh, as the 'joint' roll-up did, hide a
    # different set: on this month 6,083 rows against the ICSs' 5,331.)
    keys = ["geography_code", "indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"]
    national = rolled_up["published"].filter(pl.col("geography_level") == "icb")
    own = rolled_up["own"]
    both = own.select(*keys, "numerator", "denominator", "is_suppressed").join(
        national.select(*keys, "numerator", "denominator", "is_suppressed"), on=keys, how="left", suffix="_national")
    assert both.height == own.height > 1000
    assert both["is_suppressed_national"].null_count() == 0, "an ICS's published row is missing from the national release"
    assert (both["is_suppressed"] == both["is_suppressed_national"]).all()
    shown = both.filter(~pl.col("is_suppressed"))
    assert (shown["numerator"] == shown["numerator_national"]).all()
    assert (shown["denominator"] == shown["denominator_national"]).all()
    assert both["is_suppressed"].sum() > 100
    # Above the ICBs, a row is hidden wherever any of its ICBs' is (then the audit's complements).
    above = rolled_up["published"].filter(pl.col("geography_level") == "region")
    hidden_below = (own.filter("is_suppressed").join(pl.DataFrame({"geography_code": [i for m in REGIONS.values() for i in m],
                                                                   "region": [r for r, m in REGIONS.items() for _ in m]}),
                                                     on="geography_code")
                    .select(pl.col("region").alias("geography_code"), *keys[1:]).unique())
    forced = hidden_below.join(above.select(*keys, "is_suppressed"), on=keys, how="inner")
    assert forced.height > 0 and forced["is_suppressed"].all()


def test_a_reader_holding_every_area_learns_nothing_the_ics_releases_did_not_tell(rolled_up):
    from attack import own_releases_alone, recovered_across_areas

    attacked = pl.col("indicator_id").is_in(ATTACKED)
    published, truth = rolled_up["published"].filter(attacked), rolled_up["truth"].filter(attacked)
    assert published["indicator_id"].n_unique() == len(ATTACKED)
    assert published["is_suppressed"].sum() > 0
    recovered = recovered_across_areas(published, truth, _sums(), rolled_up["fine"])
    # The ICS releases alone already narrow a few totals above them (two hidden ICB counts of 1
    # or more each: England's is 2 or more), whatever the national release hides; the national
    # release must narrow nothing further, and nothing else.
    before = recovered_across_areas(own_releases_alone(published, rolled_up["own"].filter(attacked)), truth, _sums(),
                                    rolled_up["fine"])
    assert all(x[3] not in ICBS for x in before)
    assert sorted(recovered) == sorted(before)


def test_whole_numbers_recover_nothing_either(rolled_up):
    # Integer programmes can only narrow further than LPs; on a sample (one indicator, one region
    # and its ICBs), as they cost far more.
    from attack import own_releases_alone, recovered_across_areas

    sample = pl.col("indicator_id").eq("smi_health_check") & pl.col("geography_code").is_in(["Y58", *REGIONS["Y58"]])
    published, truth = rolled_up["published"].filter(sample), rolled_up["truth"].filter(sample)
    assert published["is_suppressed"].sum() > 0
    recovered = recovered_across_areas(published, truth, {"Y58": REGIONS["Y58"]}, rolled_up["fine"], integer=True)
    before = recovered_across_areas(own_releases_alone(published, rolled_up["own"].filter(sample)), truth, {"Y58": REGIONS["Y58"]},
                                    rolled_up["fine"], integer=True)
    assert sorted(recovered) == sorted(before)


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
