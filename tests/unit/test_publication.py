"""Write-audit-publish: the registry, the one-transaction copy, and the gate requirement."""

import datetime as dt

import dagster as dg
import duckdb
import polars as pl
import pytest

from pipelines.definitions import defs
from pipelines.publication import PUBLISHED_TABLES, audit_key, published_key, ungated
from pipelines.warehouse import copy_partitions, read_table, table_fingerprint, write_frame

OCT, NOV = dt.date(2026, 10, 1), dt.date(2026, 11, 1)


ASSETS = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
BY_KEY = {key: a for a in ASSETS for key in a.keys}


def test_every_registered_candidate_is_an_asset_with_a_blocking_gate():
    checks = {}
    for a in ASSETS:
        for check in a.check_specs:
            checks.setdefault(check.asset_key, []).append(check)
    for table in PUBLISHED_TABLES:
        assert published_key(table) in BY_KEY, table
        assert BY_KEY[published_key(table)].metadata_by_key[published_key(table)].get("partition_expr") == "reporting_month"
        if table.audit_asset:
            assert audit_key(table) in BY_KEY, f"register an asset {audit_key(table).to_user_string()}"
            assert any(c.blocking for c in checks.get(audit_key(table), [])), f"{table.name} needs a blocking gate"


def test_all_published_tables_come_from_one_step_that_cannot_be_split():
    steps = {BY_KEY[published_key(t)] for t in PUBLISHED_TABLES}
    assert len(steps) == 1
    (publish,) = steps
    assert publish.node_def.name == "publish_month" and not publish.can_subset
    # The published tables, the serving snapshot and the report are put in place by this one step.
    assert {k for k in publish.keys} == {published_key(t) for t in PUBLISHED_TABLES} | {
        dg.AssetKey(["serving", "snapshot"]), dg.AssetKey(["reports", "monthly_report"])}
    # It waits for every candidate and for the disclosure audit of the whole month's outputs.
    assert {audit_key(t) for t in PUBLISHED_TABLES if t.audit_asset} <= set(publish.dependency_keys)
    assert dg.AssetKey(["audit", "disclosure"]) in set(publish.dependency_keys)


def warehouse_with(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    frame = lambda month, value: pl.DataFrame({"reporting_month": [month], "v": [value]})  # noqa: E731
    for schema, table, month, value in (("published", "a", OCT, 1), ("published", "b", OCT, 10),
                                        ("audit", "a", NOV, 2), ("audit", "b", NOV, 20)):
        write_frame(con, schema, table, frame(month, value), partition_column="reporting_month", partition_value=month)
    return con


def test_publishing_a_month_replaces_only_that_month_in_every_table(tmp_path):
    con = warehouse_with(tmp_path)
    copied = copy_partitions(con, [(("audit", t), ("published", t), "reporting_month") for t in "ab"], NOV)
    assert copied == {"published.a": 1, "published.b": 1}
    assert read_table(con, "published", "a").sort("reporting_month").rows() == [(OCT, 1), (NOV, 2)]
    assert read_table(con, "published", "b").sort("reporting_month").rows() == [(OCT, 10), (NOV, 20)]


def test_a_failure_part_way_through_publishing_leaves_every_published_table_unchanged(tmp_path):
    con = warehouse_with(tmp_path)
    before = {t: table_fingerprint(con, "published", t) for t in "ab"}
    with pytest.raises(duckdb.CatalogException):
        copy_partitions(con, [(("audit", "a"), ("published", "a"), "reporting_month"),
                              (("audit", "missing"), ("published", "b"), "reporting_month")], NOV)
    assert {t: table_fingerprint(con, "published", t) for t in "ab"} == before


def test_excluded_columns_stay_out_of_the_published_table(tmp_path):
    con = warehouse_with(tmp_path)
    write_frame(con, "audit", "c", pl.DataFrame({"reporting_month": [NOV], "v": [1], "run_id": ["r1"]}))
    copy_partitions(con, [(("audit", "c"), ("published", "c"), "reporting_month")], NOV,
                    exclude={"published.c": ("run_id",)})
    assert read_table(con, "published", "c").columns == ["reporting_month", "v"]


def test_a_candidate_with_a_new_column_evolves_the_published_layout(tmp_path):
    con = warehouse_with(tmp_path)
    write_frame(con, "audit", "a", pl.DataFrame({"reporting_month": [NOV], "v": [3], "w": ["new"]}),
                partition_column="reporting_month", partition_value=NOV)
    copy_partitions(con, [(("audit", "a"), ("published", "a"), "reporting_month")], NOV)
    assert read_table(con, "published", "a").sort("reporting_month").rows() == [(OCT, 1, None), (NOV, 3, "new")]


def test_fingerprint_ignores_storage_order_but_not_a_changed_value(tmp_path):
    con = duckdb.connect(str(tmp_path / "f.duckdb"))
    write_frame(con, "s", "x", pl.DataFrame({"k": [1, 2, 3], "l": [["a"], None, ["b", "c"]]}))
    write_frame(con, "s", "y", pl.DataFrame({"k": [3, 1, 2], "l": [["b", "c"], ["a"], None]}))
    write_frame(con, "s", "z", pl.DataFrame({"k": [3, 1, 2], "l": [["b", "c"], ["a"], ["a"]]}))
    assert table_fingerprint(con, "s", "x") == table_fingerprint(con, "s", "y") != table_fingerprint(con, "s", "z")


def evaluation(key, passed, blocking=True, check="gate"):
    return dg.AssetCheckEvaluation(asset_key=key, check_name=check, passed=passed, blocking=blocking,
                                   severity=dg.AssetCheckSeverity.ERROR)


def test_publication_needs_every_candidate_gated_and_no_blocking_failure():
    gated = [evaluation(audit_key(t), True) for t in PUBLISHED_TABLES if t.audit_asset]
    assert ungated(gated) == []
    assert ungated(gated[1:]) == [f"{gated[0].asset_key.to_user_string()} has no passing blocking gate in this run "
                                  "(materialise it, with its checks, in the same run as the publish step)"]
    staging_failed = evaluation(dg.AssetKey(["staging", "patients"]), False, check="input_contract")
    assert ungated(gated + [staging_failed]) == ["gate staging/patients:input_contract failed"]
    warning = evaluation(dg.AssetKey(["cohorts", "register_membership"]), False, blocking=False)
    assert ungated(gated + [warning]) == []
    non_blocking_pass = [evaluation(audit_key(t), True, blocking=False) for t in PUBLISHED_TABLES if t.audit_asset]
    assert len(ungated(non_blocking_pass)) == len(non_blocking_pass)
