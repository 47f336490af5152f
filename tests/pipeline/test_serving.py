"""Backfills from the CLI and the serving layer BI reads while the pipeline publishes."""

import datetime as dt
import json
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines import serving
from pipeline_helpers import core20, generate_months

MONTHS = ("2026-06", "2026-07", "2026-08", "2026-09")


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    """Four generated months; the first three backfilled with one `core20 run --from --to`."""
    root = tmp_path_factory.mktemp("serving")
    generate_months(root / "extracts", MONTHS, n_patients=2500, seed=100)
    paths = {"extracts": root / "extracts", "warehouse": root / "warehouse.duckdb", "serving": root / "serving",
             "reports": root / "reports"}
    code, output = run(paths, "--from", MONTHS[0], "--to", MONTHS[2])
    return paths, code, output


def run(paths: dict, *extra: str) -> tuple[int, str]:
    return core20("run", "--extract", str(paths["extracts"]), "--warehouse", str(paths["warehouse"]),
                  "--serving", str(paths["serving"]), "--reports", str(paths["reports"]), *extra)


def test_backfill_of_three_months_from_the_cli_publishes_each_and_shows_progress(backfilled):
    paths, code, output = backfilled
    assert code == 0, output
    for n, month in enumerate(MONTHS[:3], start=1):
        assert f"[month {n}/3] {month}" in output and f"published {month}" in output
    assert "[1/" in output and "audit/disclosure ..." in output and "publish_month ..." in output and "done in" in output
    with duckdb.connect(str(paths["warehouse"]), read_only=True) as con:
        months = [r[0] for r in con.execute("select distinct reporting_month from published.gap_table order by 1").fetchall()]
    assert [m.strftime("%Y-%m") for m in months] == list(MONTHS[:3])
    manifest = json.loads((serving.read_pointer(paths["serving"]) / serving.MANIFEST).read_text())
    assert [m[:7] for m in manifest["months"]] == list(MONTHS[:3])


def test_from_after_to_is_refused(backfilled):
    paths, _, _ = backfilled
    code, output = run(paths, "--from", "2026-09", "--to", "2026-07")
    assert code == 1 and "is after --to" in output


def snapshot_view(folder: Path) -> dict:
    """Read one snapshot as a Parquet reader would and check it against its own manifest."""
    manifest = json.loads((folder / serving.MANIFEST).read_text())
    expected = {name: entry for name, entry in manifest["parquet_files"].items() if name.startswith("fact_gap_table/")}
    found = sorted(str(p.relative_to(folder / serving.PARQUET)) for p in (folder / serving.PARQUET / "fact_gap_table").rglob("*.parquet"))
    assert found == sorted(expected), "the folder holds exactly the files its manifest lists"
    rows = {}
    for name in found:
        table = pq.read_table(folder / serving.PARQUET / name)
        assert table.num_rows == expected[name]["rows"]
        months = set(table.column("reporting_month").to_pylist())
        assert len(months) == 1
        rows[months.pop()] = table.num_rows
    return {"months": tuple(sorted(rows)), "rows": rows}


def test_a_reader_holding_the_serving_files_never_fails_or_sees_partial_data_while_a_month_publishes(backfilled):
    paths, code, _ = backfilled
    assert code == 0
    root = paths["serving"]
    before = snapshot_view(serving.read_pointer(root))
    held = duckdb.connect(str(root / serving.CURRENT / serving.SERVING_DB), read_only=True)
    held_counts = held.execute("select month_key, count(*) from star.fact_gap_table group by 1 order by 1").fetchall()

    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                # The held connection keeps answering from the snapshot it opened.
                assert held.execute("select month_key, count(*) from star.fact_gap_table group by 1 order by 1").fetchall() == held_counts
                # A fresh DuckDB reader through `current`: a complete snapshot, old or new.
                with duckdb.connect(str(root / serving.CURRENT / serving.SERVING_DB), read_only=True) as con:
                    months = tuple(r[0] for r in con.execute("select distinct reporting_month from star.fact_gap_table order by 1").fetchall())
                    recorded = tuple(con.execute("select months from meta.snapshot").fetchall()[0][0])
                    assert months == recorded
                # A Parquet reader: the pointer once, then only that snapshot's files.
                view = snapshot_view(serving.read_pointer(root))
                seen.append((months, view["months"]))
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                errors.append(repr(error))
            time.sleep(0.005)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        code, output = run(paths, "--month", MONTHS[3])
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
        held.close()
    assert code == 0, output
    assert errors == []
    old, new = before["months"], before["months"] + (dt.date.fromisoformat(f"{MONTHS[3]}-01"),)
    assert {view for _, view in seen} == {old, new}, "the reader saw the old complete version, then the new one"
    assert {tuple(m for m in months) for months, _ in seen} == {old, new}
    assert len(seen) > 20


def test_rerunning_a_month_gives_byte_identical_parquet_and_replaces_only_that_month(backfilled):
    paths, code, _ = backfilled
    assert code == 0
    root = paths["serving"]
    first = json.loads((serving.read_pointer(root) / serving.MANIFEST).read_text())
    code, output = run(paths, "--month", MONTHS[1])
    assert code == 0, output
    second = json.loads((serving.read_pointer(root) / serving.MANIFEST).read_text())
    assert second["snapshot"] != first["snapshot"], "a new snapshot was swapped in"
    assert second["parquet_files"] == first["parquet_files"], "every file has the same rows and sha256"
    assert any(name.startswith(f"fact_gap_table/month={MONTHS[1]}") for name in second["parquet_files"])


def test_the_serving_database_is_read_only_and_carries_the_star_and_its_dictionary(backfilled):
    paths, _, _ = backfilled
    database = paths["serving"] / serving.CURRENT / serving.SERVING_DB
    # No write permission for anyone (root, which runs CI here, ignores file modes, so the mode is what is checked).
    assert database.stat().st_mode & 0o222 == 0
    with duckdb.connect(str(database), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_schema || '.' || table_name from information_schema.tables").fetchall()}
        assert {"star.dim_month", "star.dim_indicator", "star.dim_group", "star.dim_geography", "star.fact_gap_table",
                "published.gap_table", "meta.data_dictionary"} <= tables
        orphans = con.execute("""
            select count(*) from star.fact_gap_table f
            left join star.dim_indicator i using (indicator_key) left join star.dim_group g using (group_key)
            left join star.dim_month m using (month_key) left join star.dim_geography geo using (geography_key)
            where i.indicator_key is null or g.group_key is null or m.month_key is null
               or (f.geography_key is not null and geo.geography_key is null)
        """).fetchall()[0][0]
        assert orphans == 0, "every fact row joins every dimension"
        no_place = con.execute("select distinct \"group\" from star.fact_gap_table where geography_key is null").fetchall()
        assert no_place in ([], [("unknown",)]), "only an unknown home area or practice has no geography"
        ics = con.execute("select distinct geography_key from star.fact_gap_table where breakdown = 'overall'").fetchall()
        assert ics == [("icb:QT1",)], "ICS-wide rows carry the extract's ICB (the generator's default, Nottingham and Nottinghamshire)"
        practices = con.execute("select count(*) from star.fact_gap_table where breakdown = 'practice' "
                                "and geography_key like 'practice:%'").fetchall()[0][0]
        assert practices > 0
