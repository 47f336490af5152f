"""A partition re-run on a re-sent extract is suppressed against what the partition published before.

Each run of an ICB partition starts from a scratch warehouse holding the reference tables
alone. Without its earlier release, a re-run on a re-sent extract (one patient added) was a
release suppressed on its own, and a reader holding the ICB rows from before and after the
re-send could subtract them. The partition now exports the ICS month's private record of its
releases (`disclosure.releases`, `disclosure.release_structures`) and puts it back into the
next run's scratch warehouse (`partition.carry_releases`), so the re-run links to it as an
ICS's own re-run does (`tests/spec/test_release_linking.py` works that linking by hand).
Control: the same re-sent extract run into a store that never held the first release.
"""

import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ICB = "QT6"
SCALE = 0.003
KEY = ["population", "imd_vintage", "breakdown", "group"]


@pytest.fixture(scope="module")
def resent(tmp_path_factory):
    from attack_month import add_one_patient
    from pipelines import synthetic
    from pipelines.national.partition import run_icb_month
    from pipelines.national.store import PartitionStore
    from pipelines.national.synth import generate_national

    root = tmp_path_factory.mktemp("national_resend")
    month = synthetic.default_reporting_month()
    generate_national(root / "extracts", reporting_month=month, scale=SCALE, icbs=ICB, include_feeds=False)

    def run(store: str) -> dict:
        return run_icb_month(ICB, month.isoformat(), extracts_root=str(root / "extracts"),
                             store_root=str(root / store), scratch_root=str(root / "scratch"))

    run("linked")
    linked = PartitionStore(root / "linked")
    first = linked.read(ICB, month.isoformat(), "releases")
    add_one_patient(root / "extracts" / ICB / f"{month:%Y-%m}")
    run("linked")
    run("alone")
    alone = PartitionStore(root / "alone")
    return {"first": first, "linked": linked.read(ICB, month.isoformat(), "releases"),
            "alone": alone.read(ICB, month.isoformat(), "releases"),
            "structures": linked.read(ICB, month.isoformat(), "release_structures")}


def _hidden(releases: pl.DataFrame, release: int) -> set:
    return set(releases.filter((pl.col("release") == release) & pl.col("is_hidden")).select(KEY).rows())


def test_the_rerun_is_recorded_as_the_partitions_second_release_with_the_first_kept(resent):
    assert resent["first"]["release"].unique().to_list() == [1]
    assert sorted(resent["linked"]["release"].unique()) == [1, 2]
    assert resent["structures"]["release"].to_list() == [1, 2]
    kept = resent["linked"].filter(pl.col("release") == 1).sort(KEY)
    assert kept.equals(resent["first"].sort(KEY))
    # The re-send changed counts: the second release is a release of other numbers, not a re-run.
    second = resent["linked"].filter(pl.col("release") == 2).sort(KEY)
    assert not second.select(*KEY, "value").equals(kept.select(*KEY, "value"))


def test_what_the_first_release_hid_stays_hidden_in_the_rerun(resent):
    hidden_first = _hidden(resent["first"], 1)
    assert hidden_first
    assert hidden_first <= _hidden(resent["linked"], 2)
    # Control: suppressed on its own, the re-sent month shows counts the first release hid.
    assert resent["alone"]["release"].unique().to_list() == [1]
    assert not hidden_first <= _hidden(resent["alone"], 1)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    from pipelines import synthetic
    from pipelines.national.partition import run_icb_month
    from pipelines.national.synth import generate_national

    root = tmp_path_factory.mktemp("national_forced")
    month = synthetic.default_reporting_month()
    generate_national(root / "extracts", reporting_month=month, scale=SCALE, icbs=ICB, include_feeds=False)

    def run() -> dict:
        return run_icb_month(ICB, month.isoformat(), extracts_root=str(root / "extracts"), store_root=str(root / "store"),
                             scratch_root=str(root / "scratch"))

    return {"run": run, "first": run(), "month": month, "root": root}


def _check_wanting(unit: tuple, calls: list):
    """A stand-in for the national-release check that wants `unit` hidden while the run shows it."""
    month, indicator, version, (vintage, breakdown, group) = unit

    def check(store, icb, key, tables, info, **_):
        calls.append(key)
        row = tables["published__gap_table"].filter(
            (pl.col("indicator_id") == indicator) & (pl.col("indicator_version") == version)
            & (pl.col("imd_vintage") == vintage) & (pl.col("breakdown") == breakdown) & (pl.col("group") == group))
        shown = row.height == 1 and not row["is_suppressed"][0]
        return ({unit} if shown else set()), {"n_lp_solves": 0, "seconds": 0.0}

    return check


def test_units_the_check_wants_hidden_are_hidden_by_a_new_run_of_the_month(one_run, monkeypatch):
    from pipelines.national import context
    from pipelines.national.store import PartitionStore

    month = one_run["month"]
    store = PartitionStore(one_run["root"] / "store")
    shown = store.read(ICB, month.isoformat(), "published__gap_table").filter(
        ~pl.col("is_suppressed") & (pl.col("breakdown") == "imd_quintile")).sort("indicator_id", "group").row(0, named=True)
    unit = (month, shown["indicator_id"], shown["indicator_version"], (shown["imd_vintage"], "imd_quintile", shown["group"]))
    first_hidden = int(store.read(ICB, month.isoformat(), "published__gap_table")["is_suppressed"].sum())
    calls: list = []
    monkeypatch.setattr(context, "hidden_for_national_release", _check_wanting(unit, calls))
    manifest = one_run["run"]()
    assert manifest["national_release_check"] == {"runs": 2, "n_units_hidden": 1, "n_lp_solves": 0, "seconds": 0.0}
    assert len(calls) == 2
    published = store.read(ICB, month.isoformat(), "published__gap_table")
    row = published.filter((pl.col("indicator_id") == shown["indicator_id"]) & (pl.col("breakdown") == "imd_quintile")
                           & (pl.col("imd_vintage") == shown["imd_vintage"]) & (pl.col("group") == shown["group"]))
    assert row["is_suppressed"].to_list() == [True] and row["numerator"].to_list() == [None]
    # The month was suppressed again with the row hidden from the start (its complements with it).
    assert int(published["is_suppressed"].sum()) > first_hidden


def test_a_month_that_keeps_showing_what_the_check_hides_is_not_committed(one_run, monkeypatch):
    from pipelines.national import context
    from pipelines.national.partition import PartitionFailed
    from pipelines.national.store import PartitionStore

    month = one_run["month"]
    store = PartitionStore(one_run["root"] / "store")
    before = store.manifest(ICB, month.isoformat())["run_id"]
    # No such unit in the month: the month cannot hide it, and the check keeps asking.
    bogus = (month, "no_such_indicator", 1, ("IMD2019", "overall", "all"))
    monkeypatch.setattr(context, "hidden_for_national_release",
                        lambda *a, **k: ({bogus}, {"n_lp_solves": 0, "seconds": 0.0}))
    with pytest.raises(PartitionFailed, match="requires hidden"):
        one_run["run"]()
    assert store.manifest(ICB, month.isoformat())["run_id"] == before
