"""A national roll-up re-run after an ICB's extract was re-sent is linked to the national release before it.

The national release shows every ICB, its region and England side by side. When an ICB's
extract is re-sent (one patient added), its partition re-runs, linked to its ICS's first
release (`test_national_partition_resend.py`), and the month is rolled up again. A reader may
hold both national releases and know exactly what changed; suppressed on its own, the second
roll-up can show a region's or England's row the first hid, or bound it through another's.
The roll-up now keeps a private record of each national release (`private__releases`,
`private__release_structures`, per area) and links the next one to it and to the ICSs'
earlier releases (`rollup.earlier_releases`), as an ICS's own re-run is linked
(`pipelines/releases.py`).

Two ICBs of one NHS England region (South West: QSL, QT6), so the roll-up is also a regional
team's: England is the region, cell for cell. Controls: the same re-sent partitions rolled up
into a store that never held the first national release.
"""

import shutil
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGION, ICBS, RESENT = "Y58", ["QSL", "QT6"], "QT6"
SCALE = 0.003
ATTACKED = ["bp_case_finding", "smi_health_check", "smoking_status_recorded"]
KEYS = ["geography_code", "indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"]


@pytest.fixture(scope="module")
def resent(tmp_path_factory):
    from attack_month import add_one_patient
    from pipelines import synthetic
    from pipelines.national.partition import run_icb_month
    from pipelines.national.rollup import rollup_month
    from pipelines.national.store import NATIONAL, PartitionStore
    from pipelines.national.synth import generate_national

    root = tmp_path_factory.mktemp("national_rollup_resend")
    month = synthetic.default_reporting_month()
    key = month.isoformat()
    generate_national(root / "extracts", reporting_month=month, scale=SCALE, icbs=",".join(ICBS), include_feeds=False)

    def run_icb(icb: str, store: str = "linked") -> dict:
        return run_icb_month(icb, key, extracts_root=str(root / "extracts"), store_root=str(root / store),
                             scratch_root=str(root / "scratch"))

    def release(store: PartitionStore, manifest: dict) -> dict:
        own = pl.concat([store.read(icb, key, "published__gap_table").with_columns(pl.lit(icb).alias("geography_code"))
                         for icb in ICBS])
        return {"manifest": manifest, "published": store.read(NATIONAL, key, "gap_table"),
                "truth": store.read(NATIONAL, key, "private__gap_counts"), "own": own}

    for icb in ICBS:
        run_icb(icb)
    linked = PartitionStore(root / "linked")
    first = release(linked, rollup_month(str(root / "linked"), key, sii_repetitions=1000))
    first_record = linked.read(NATIONAL, key, "private__releases")
    # The control of the re-send: the same partitions in a store that never held a national release.
    shutil.copytree(root / "linked", root / "unchecked", ignore=shutil.ignore_patterns(f"icb={NATIONAL}"))
    add_one_patient(root / "extracts" / RESENT / f"{month:%Y-%m}")
    resent_manifest = run_icb(RESENT)
    run_icb(RESENT, "unchecked")
    unchecked = PartitionStore(root / "unchecked")
    unchecked_own = pl.concat([unchecked.read(icb, key, "published__gap_table").with_columns(pl.lit(icb).alias("geography_code"))
                               for icb in ICBS])
    second = release(linked, rollup_month(str(root / "linked"), key, sii_repetitions=1000))
    record = {name: linked.read(NATIONAL, key, name) for name in ("private__releases", "private__release_structures")}
    # A plain re-run of the roll-up on the same partitions: the same release, nothing recorded.
    rerun = rollup_month(str(root / "linked"), key, sii_repetitions=1000)
    # The control: the re-sent partitions in a store that never held the first national release.
    shutil.copytree(root / "linked", root / "alone", ignore=shutil.ignore_patterns(f"icb={NATIONAL}"))
    alone = release(PartitionStore(root / "alone"), rollup_month(str(root / "alone"), key, sii_repetitions=1000))
    hierarchy = pl.concat([linked.read(icb, key, "gap_hierarchy") for icb in ICBS], how="diagonal_relaxed").unique()
    fine = {"ethnicity_16": dict(hierarchy.select("__ethnicity_16", "__ethnicity_broad").drop_nulls().unique().rows()),
            "sub_icb": dict(hierarchy.select("__sub_icb", "__icb").drop_nulls().unique().rows())}
    return {"first": first, "second": second, "alone": alone, "rerun": rerun, "first_record": first_record,
            "record": record, "fine": fine, "resent_manifest": resent_manifest, "unchecked_own": unchecked_own}


def _hidden(release: dict) -> set:
    return set(release["published"].filter("is_suppressed").select(KEYS).rows())


def _sums() -> dict:
    return {"ENG": [REGION], REGION: ICBS}


def test_each_rollup_is_recorded_as_a_national_release_and_a_plain_rerun_adds_none(resent):
    assert resent["first"]["manifest"]["release"] == 1
    assert resent["second"]["manifest"]["release"] == 2
    assert resent["rerun"]["release"] == 2
    record = resent["record"]["private__releases"]
    assert sorted(record["release"].unique()) == [1, 2]
    assert sorted(resent["record"]["private__release_structures"]["geography_code"].unique()) == sorted([*ICBS, REGION, "ENG"])
    order = ["geography_code", "population", "imd_vintage", "breakdown", "group"]
    assert record.filter(pl.col("release") == 1).sort(order).equals(resent["first_record"].sort(order))
    # The second roll-up was linked to the first and to the re-sent ICS's first release.
    assert resent["second"]["manifest"]["suppression"]["n_earlier_releases"] >= 2
    assert resent["alone"]["manifest"]["release"] == 1


def test_what_the_first_national_release_hid_stays_hidden(resent):
    hidden_first = _hidden(resent["first"])
    above = {row for row in hidden_first if row[0] not in ICBS}
    assert above, "the first national release hid no region or England row: nothing to test"
    assert hidden_first <= _hidden(resent["second"])
    # Control: rolled up on its own, the re-sent month shows rows the first national release hid.
    assert not hidden_first <= _hidden(resent["alone"])


def _attacked(release: dict, name: str, indicators=None) -> pl.DataFrame:
    return release[name].filter(pl.col("indicator_id").is_in(indicators or ATTACKED))


def _recovered(published: pl.DataFrame, resent: dict, earlier: list, indicators=None) -> set:
    """What a reader holding `published`, the `earlier` releases and the exact change narrows down (tests/attack.py)."""
    from attack import recovered_across_areas

    truth = _attacked(resent["second"], "truth", indicators)
    return set(recovered_across_areas(published, truth, _sums(), resent["fine"], earlier=earlier))


def test_the_second_national_release_tells_nothing_the_earlier_releases_did_not(resent):
    from attack import own_releases_alone

    first, second = resent["first"], resent["second"]
    earlier = [(_attacked(first, "published"), _attacked(first, "truth"))]
    recovered = _recovered(_attacked(second, "published"), resent, earlier)
    # What the reader held before the second national release: the first national release and
    # each ICS's tables of both sends (the second send's areas above unknown). The second
    # national release cannot take that back; it must add nothing to it.
    before = _recovered(own_releases_alone(_attacked(second, "published"), _attacked(second, "own")), resent, earlier)
    assert recovered <= before
    # (No control leaks here: rolled up without the first release, the re-sent month's extra shown
    # rows are not narrowed further by this attacker. The hidden set above is the control.)


def test_an_ics_resend_after_the_national_rollup_tells_nothing_the_releases_before_it_did_not(resent):
    """The re-sent ICB's rows, published after the national release, with that release in the reader's hands.

    The reader holds the first national release (every ICB, the region and England) and the
    re-sent ICS's new rows, and knows the exact change: the ICB's new rows give its old ones,
    and the region's rows minus those give its neighbour's. The partition re-run is checked
    against the national release before it is committed (`national.context`).
    """
    from attack import own_releases_alone

    first, second = resent["first"], resent["second"]
    indicators = ["lipid_statin"]
    national_first = [(_attacked(first, "published", indicators), _attacked(first, "truth", indicators))]
    ics_first = own_releases_alone(_attacked(first, "published", indicators), _attacked(first, "own", indicators))
    earlier_ics = [(ics_first, _attacked(first, "truth", indicators))]

    def told(own: pl.DataFrame) -> tuple[set, set]:
        """(what the ICS releases alone tell, what they tell with the first national release) of the second send."""
        ics_second = own_releases_alone(_attacked(second, "published", indicators), own.filter(
            pl.col("indicator_id").is_in(indicators)))
        return (_recovered(ics_second, resent, earlier_ics, indicators),
                _recovered(ics_second, resent, national_first, indicators))

    ics_alone, with_national = told(_attacked(second, "own", indicators))
    assert with_national <= ics_alone
    check = resent["resent_manifest"]["national_release_check"]
    assert check["runs"] >= 2 and check["n_units_hidden"] >= 1
    # Control: the same re-send into a store without the national release, so not checked against it.
    control_alone, control_national = told(resent["unchecked_own"])
    assert not control_national <= control_alone
