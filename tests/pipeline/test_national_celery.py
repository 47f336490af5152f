"""The national month for real on Dagster's Celery executor: a Redis broker and two worker processes.

The test starts `redis-server` (Debian's package, which `make test` installs when absent)
and two Celery workers (`pipelines.national.local`) of `pipelines.national.celery_app`, runs the national job for three
ICBs of two NHS England regions, and checks what the issue asks: each ICB month committed
as its own partition by the workers, the roll-up equal to the sum of the partitions'
private counts, the published roll-up safe under the same disclosure audit as an ICS
month, and a partition re-run that replaces exactly its own ICB and month.
"""

import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

ICBS = ["QOC", "QSL", "QT6"]  # QSL and QT6: South West (Y58); QOC: Midlands (Y60) - the three smallest ICBs
SCALE = 0.003
KEYS = ["reporting_month", "indicator_id", "indicator_version", "imd_vintage", "breakdown", "group"]


@pytest.fixture(scope="module")
def national(tmp_path_factory):
    from pipelines import synthetic
    from pipelines.national.local import local_cluster, run_national_month
    from pipelines.national.synth import generate_national

    root = tmp_path_factory.mktemp("national")
    month = synthetic.default_reporting_month()
    generate_national(root / "extracts", reporting_month=month, scale=SCALE, icbs=",".join(ICBS), include_feeds=False)
    (root / "dagster_home").mkdir()
    env = {
        "DAGSTER_HOME": str(root / "dagster_home"),
        "CORE20_NATIONAL_EXTRACTS_ROOT": str(root / "extracts"),
        "CORE20_NATIONAL_STORE_ROOT": str(root / "partitions"),
        "CORE20_NATIONAL_SCRATCH_ROOT": str(root / "scratch"),
        "CORE20_NATIONAL_WAREHOUSE": str(root / "core20plus5_national.duckdb"),
        "CORE20_NATIONAL_SERVING_ROOT": str(root / "serving"),
        "GX_ANALYTICS_ENABLED": "False",
    }
    with local_cluster(2, env, root / "logs") as cluster:
        result, events = run_national_month(month.isoformat(), cluster["env"])
        logs = "\n".join(path.read_text()[-2000:] for path in cluster["logs"])
        yield {"root": root, "month": month, "result": result, "events": events, "worker_pids": set(cluster["pids"]), "logs": logs}


def test_the_national_month_runs_on_two_celery_workers(national):
    result = national["result"]
    assert result.success, national["logs"]
    events = [e.dagster_event for e in national["events"] if e.dagster_event]
    started = sorted(e.step_key for e in events if e.event_type_value == "STEP_START")
    assert started == ["icb_month[QOC]", "icb_month[QSL]", "icb_month[QT6]", "national_icbs", "national_rollup"]
    # Each ICB step and the roll-up record the pid of the process that ran them: a worker's
    # own process under the solo pool. Every one ran in a worker, and both workers took steps.
    pids = {}
    for e in events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            materialization = e.event_specific_data.materialization
            pids[(materialization.asset_key.to_user_string(), str(materialization.partition))] = materialization.metadata["pid"].value
    assert len(pids) == 4  # three ICB months and the roll-up
    assert set(pids.values()) <= national["worker_pids"]
    assert len(set(pids.values())) == 2


def test_each_icb_month_is_its_own_partition(national):
    from pipelines.national.store import PartitionStore

    store = PartitionStore(national["root"] / "partitions")
    month = national["month"].isoformat()
    assert store.icbs(month) == ICBS
    files = {}
    for icb in ICBS:
        folder = Path(store.folder(icb, month).path)
        written = sorted(p.relative_to(national["root"] / "partitions") for p in folder.rglob("*.parquet"))
        assert written and all(str(p).startswith(f"icb={icb}/month={month[:7]}/") for p in written)
        files[icb] = set(written)
    assert not (files["QOC"] & files["QSL"]) and not (files["QSL"] & files["QT6"])
    # No partition left a DuckDB file behind: each ran in a scratch warehouse of its own, deleted after.
    assert not list((national["root"] / "partitions").rglob("*.duckdb"))


def test_rollup_equals_the_sum_of_the_partitions_private_counts(national):
    # Independent of the roll-up code: DuckDB sums the partitions' private count files directly.
    from pipelines.national.store import NATIONAL, PartitionStore

    store = PartitionStore(national["root"] / "partitions")
    month = national["month"].isoformat()
    national_counts = store.read(NATIONAL, month, "private__gap_counts")
    paths = [str(Path(store.folder(icb, month).path) / store.manifest(icb, month)["run_id"] / "gap_counts.parquet") for icb in ICBS]
    summed = duckdb.sql(f"""
        select {', '.join(f'"{k}"' for k in KEYS)}, sum(numerator)::bigint as numerator, sum(denominator)::bigint as denominator
        from read_parquet({paths}) where breakdown not like '%cohort:%' group by all
    """).pl()
    england = national_counts.filter(pl.col("geography_level") == "england").drop("geography_level", "geography_code", "geography_name")
    # Cohort breakdowns are left to the check below: an ICB without members of a cohort has no rows for it.
    direct = england.filter(~pl.col("breakdown").str.contains("cohort:", literal=True))
    joined = summed.join(direct, on=KEYS, how="full", suffix="_rollup", coalesce=True)
    assert joined.height == summed.height > 100
    assert joined.filter((pl.col("numerator") != pl.col("numerator_rollup")) | (pl.col("denominator") != pl.col("denominator_rollup"))).height == 0
    # South West is QSL + QT6 only, and every cohort breakdown still adds up to the overall count.
    south_west = national_counts.filter(pl.col("geography_code") == "Y58")
    sw = duckdb.sql(f"select sum(denominator)::bigint from read_parquet({paths[1:]}) where breakdown = 'overall'").fetchall()[0][0]
    assert south_west.filter(pl.col("breakdown") == "overall")["denominator"].sum() == sw
    cohorts = england.filter(pl.col("breakdown").str.starts_with("cohort:")).group_by("indicator_id", "breakdown").agg(pl.col("denominator").sum())
    overall = dict(england.filter(pl.col("breakdown") == "overall").select("indicator_id", "denominator").rows())
    assert cohorts.height > 0
    assert all(total == overall[indicator] for indicator, _b, total in cohorts.rows())


def _published_rollup(national) -> tuple:
    """The national gap table, its private counts, the fine/coarse label pairs and the attacker's map of them."""
    from pipelines.national.store import NATIONAL, PartitionStore

    store = PartitionStore(national["root"] / "partitions")
    month = national["month"].isoformat()
    hierarchy = pl.concat([store.read(icb, month, "gap_hierarchy") for icb in ICBS], how="diagonal_relaxed").unique()
    fine = {"ethnicity_16": dict(hierarchy.select("__ethnicity_16", "__ethnicity_broad").drop_nulls().unique().rows()),
            "sub_icb": dict(hierarchy.select("__sub_icb", "__icb").drop_nulls().unique().rows())}
    return store.read(NATIONAL, month, "gap_table"), store.read(NATIONAL, month, "private__gap_counts"), hierarchy, fine


def test_published_rollup_passes_the_ics_disclosure_audit(national):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from attack import recovered_cells
    from pipelines.gates import run_suite
    from pipelines.segmentation.disclosure import PROFILES, unpublishable_counts

    published, truth, hierarchy, fine = _published_rollup(national)
    profile = PROFILES[published["disclosure_profile"][0]]
    for code in published["geography_code"].unique().sort().to_list():
        table = published.filter(pl.col("geography_code") == code).drop("geography_level", "geography_code", "geography_name")
        assert run_suite(table, "audit.gap_table", {"unpublishable_counts": unpublishable_counts(profile)}).success
        shown = pl.concat([table["numerator"], table["denominator"]]).drop_nulls()
        assert not shown.is_in(list(range(1, profile.small_count_threshold + 1))).any()
        assert table["is_suppressed"].sum() > 0
        area_truth = truth.filter(pl.col("geography_code") == code).drop("geography_level", "geography_code", "geography_name")
        assert recovered_cells(table, area_truth, fine) == [], code


def test_the_ics_disclosure_audit_finds_no_breach_in_the_national_warehouse_or_snapshot(national):
    from pipelines.disclosure_audit import audit_published

    found, read = audit_published(national["root"] / "core20plus5_national.duckdb", national["root"] / "serving", None,
                                  schema="national")
    assert found == []
    assert read["tables"] == 5 and read["snapshots"] == 1


def test_national_warehouse_has_icb_and_national_rows_side_by_side(national):
    month = national["month"]
    with duckdb.connect(str(national["root"] / "core20plus5_national.duckdb"), read_only=True) as con:
        levels = dict(con.execute(
            "select geography_level, count(distinct geography_code) from national.gap_table where reporting_month = ? group by 1",
            [month]).fetchall())
    assert levels == {"icb": 3, "region": 2, "england": 1}


def test_the_national_serving_snapshot_serves_every_area_side_by_side_to_power_bi(national):
    from pipelines import serving
    from powerbi_model import model_vs_parquet, parse_every_file, relationships_vs_data

    month = national["month"]
    snapshot = serving.read_pointer(national["root"] / "serving")
    served = pl.read_parquet(snapshot / "parquet" / "fact_gap_table" / f"month={month:%Y-%m}" / "part-0.parquet")
    assert set(served["geography_level"]) == {"icb", "region", "england"}
    assert (served["geography_key"] == served["geography_level"] + ":" + served["geography_code"]).all()
    with duckdb.connect(str(snapshot / serving.SERVING_DB), read_only=True) as con:
        areas = con.execute("select level, code, region_code from star.dim_geography order by 1, 2").fetchall()
    assert areas == [("england", "ENG", None), ("icb", "QOC", "Y60"), ("icb", "QSL", "Y58"), ("icb", "QT6", "Y58"),
                     ("region", "Y58", "Y58"), ("region", "Y60", "Y60")]
    model = parse_every_file(snapshot)
    assert model_vs_parquet(snapshot, model) == []
    assert relationships_vs_data(snapshot, model) == []


def test_a_partition_rerun_replaces_exactly_its_own_icb_and_month(national):
    from pipelines.national.partition import run_icb_month
    from pipelines.national.store import PartitionStore

    root = national["root"]
    store = PartitionStore(root / "partitions")
    month = national["month"].isoformat()
    before = {icb: store.manifest(icb, month)["run_id"] for icb in ICBS}
    others = {p: p.stat().st_mtime_ns for icb in ("QOC", "QT6") for p in Path(store.folder(icb, month).path).rglob("*")}
    manifest = run_icb_month("QSL", month, extracts_root=str(root / "extracts"), store_root=str(root / "partitions"),
                             scratch_root=str(root / "scratch"))
    assert manifest["run_id"] != before["QSL"]
    assert {icb: store.manifest(icb, month)["run_id"] for icb in ("QOC", "QT6")} == {k: before[k] for k in ("QOC", "QT6")}
    assert {p: p.stat().st_mtime_ns for icb in ("QOC", "QT6") for p in Path(store.folder(icb, month).path).rglob("*")} == others
    runs = [p.name for p in Path(store.folder("QSL", month).path).iterdir() if p.is_dir()]
    assert runs == [manifest["run_id"]]
    # After the month's roll-up the re-run is checked against the national release
    # (`national.context`); the extract is unchanged, so the check hides nothing and the month
    # runs once: the ICS rows still match the national release's (the test below).
    assert manifest["national_release_check"]["runs"] == 1
    assert manifest["national_release_check"]["n_units_hidden"] == 0


def test_a_reader_holding_every_area_side_by_side_learns_nothing_the_ics_releases_did_not_tell(national):
    # The national release shows each ICB, region and England; a region's count in every cell is
    # the sum of its ICBs'. The attacker (tests/attack.py, written apart from the pipeline's
    # suppression) holds them all at once, per indicator.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from attack import own_releases_alone, recovered_across_areas
    from pipelines.national.rollup import areas
    from pipelines.national.store import PartitionStore
    from pipelines.segmentation.disclosure import PROFILES
    from pipelines.segmentation.gaps import gap_table_from_counts

    published, truth, hierarchy, fine = _published_rollup(national)
    sums = {code: members for (_level, code, _name), members in areas(ICBS)}
    assert set(sums) == {"ENG", "Y58", "Y60"} and set(published["geography_code"]) == {*ICBS, *sums}
    # Three indicators (each costs the attacker about 15 s here): one per kind of population.
    attacked = pl.col("indicator_id").is_in(["bp_case_finding", "copd_flu_vaccination", "smi_health_check"])
    published, truth = published.filter(attacked), truth.filter(attacked)
    assert published["indicator_id"].n_unique() == 3
    # The national ICB rows repeat the ICSs' own: the reader learns nothing beyond what those
    # releases alone tell (a few totals above them, e.g. two hidden ICB counts of 1 or more).
    store = PartitionStore(national["root"] / "partitions")
    own = pl.concat([store.read(icb, national["month"].isoformat(), "published__gap_table")
                     .with_columns(pl.lit(icb).alias("geography_code")) for icb in ICBS]).filter(attacked)
    recovered = recovered_across_areas(published, truth, sums, fine)
    assert sorted(recovered) == sorted(recovered_across_areas(own_releases_alone(published, own), truth, sums, fine))
    assert all(x[3] in sums for x in recovered)

    # Control: the same counts, each area suppressed on its own (the roll-up before areas were
    # protected together): the same reader does recover counts, so the attack can see a leak.
    catalogue = pl.concat([store.read(icb, national["month"].isoformat(), "indicator_catalogue") for icb in ICBS]).unique()
    profile = PROFILES[published["disclosure_profile"][0]]
    alone = []
    for code in sorted(set(truth["geography_code"])):
        counts = truth.filter(pl.col("geography_code") == code).drop("geography_level", "geography_code", "geography_name")
        table = gap_table_from_counts(counts, hierarchy, catalogue, profile=profile, primary_vintage=published["imd_vintage"].filter(
            published["breakdown"] == "overall")[0])
        alone.append(table.with_columns(pl.lit(code).alias("geography_code")))
    assert recovered_across_areas(pl.concat(alone, how="diagonal_relaxed"), truth, sums, fine) != []
