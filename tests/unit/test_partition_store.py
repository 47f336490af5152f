"""The partition store: one folder per ICB and month, replaced whole by a re-run, on any fsspec path."""

import polars as pl
import pytest

from pipelines.national.store import PartitionStore


@pytest.mark.parametrize("root", ["local", "memory://core20-store-test"])
def test_rewrite_replaces_exactly_its_own_icb_and_month(tmp_path, root):
    store = PartitionStore(tmp_path / "store" if root == "local" else root)
    first = store.write("QT1", "2026-10-01", {"gap_counts": pl.DataFrame({"n": [1, 2]})})
    other = store.write("QOX", "2026-10-01", {"gap_counts": pl.DataFrame({"n": [9]})})
    september = store.write("QT1", "2026-09-01", {"gap_counts": pl.DataFrame({"n": [5]})})
    second = store.write("QT1", "2026-10-01", {"gap_counts": pl.DataFrame({"n": [3]})})

    assert second["run_id"] != first["run_id"]
    assert store.read("QT1", "2026-10", "gap_counts")["n"].to_list() == [3]
    assert store.read("QOX", "2026-10", "gap_counts")["n"].to_list() == [9]
    assert store.manifest("QOX", "2026-10")["run_id"] == other["run_id"]
    assert store.manifest("QT1", "2026-09")["run_id"] == september["run_id"]
    runs = [p.name for p in store.folder("QT1", "2026-10").iterdir() if not p.name.startswith((".", "_"))]
    assert runs == [second["run_id"]]
    both = store.read_all("2026-10-01", "gap_counts")
    assert both.sort("partition_icb").rows() == [("QOX", 9), ("QT1", 3)]
    if root != "local":
        store.root.fs.rm(store.root.path, recursive=True)


def test_reading_a_missing_partition_names_it(tmp_path):
    store = PartitionStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="icb=QT1 month=2026-10"):
        store.read("QT1", "2026-10", "gap_counts")
