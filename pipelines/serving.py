"""The serving layer for BI: complete snapshots, swapped in atomically, never written in place.

DuckDB allows one writer per file, and a Power BI refresh must never see half a month. So
the pipeline never lets BI read the warehouse. After a month publishes it builds a whole
new snapshot beside the old one and then repoints one symbolic link:

    data/serving/
      current -> snapshots/20261105T060312123456Z      (symlink: for the DuckDB file)
      CURRENT                                          (text "snapshots/20261105T060312123456Z")
      snapshots/20261105T060312123456Z/
        core20plus5.duckdb         read-only serving database: schemas published, star, meta
        parquet/<table>/month=YYYY-MM/part-0.parquet    one folder per star table
        parquet/<dimension>/part-0.parquet
        data_dictionary.md
        powerbi/core20plus5.pbip   Power BI Project generated from the star (pipelines/powerbi)
        snapshot.json              what is in it: months, tables, rows and sha256 per file

A reader that opened the old snapshot keeps reading complete old files (nothing in a
snapshot is modified after the link points at it); a reader that follows `current` after
the swap sees the complete new one. Renaming a symlink (or a file) over another is atomic
on POSIX file systems (rename(2)). A reader of one file (the DuckDB database, opened once)
can use the `current` link. A reader of many files (the Parquet folder) should read the
`CURRENT` pointer once and then read inside that snapshot folder, as the README's Power
Query does: listing `current/parquet/...` and opening the files one by one could straddle
a swap. The `keep` newest snapshots are kept, so a refresh that started
before a swap can finish reading the snapshot it started on; older ones are deleted.

Every snapshot is rebuilt from the warehouse's published tables, so a re-run of a month
replaces exactly that month's rows; rows are sorted by key and Parquet is written with
fixed settings, so identical inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from pipelines.powerbi.project import write_project
from pipelines.segmentation import star

SERVING_DB = "core20plus5.duckdb"
CURRENT = "current"
POINTER = "CURRENT"
SNAPSHOTS = "snapshots"
MANIFEST = "snapshot.json"
DICTIONARY = "data_dictionary.md"
PARQUET = "parquet"
POWERBI = "powerbi"
# Parquet settings are fixed so the same rows always give the same bytes. Snappy, not zstd:
# it is the codec every Parquet reader handles (Spark and Fabric write it by default), while
# Power Query's Parquet connector documents no codec list; the tables are small aggregates.
PARQUET_OPTIONS = {"compression": "snappy", "row_group_size": 1_000_000,
                   "write_statistics": True, "use_dictionary": True}
STALE_BUILD_SECONDS = 3600
STORAGE_VERSION = "v1.0.0"


def sha256_file(path: Path) -> str:
    """Return the sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_published(con: duckdb.DuckDBPyConnection) -> list[str]:
    con.execute("create schema if not exists published")
    tables = star.source_tables(con)
    for table, columns in tables.items():
        order = ", ".join(star.q(c) for c in star.order_columns(table, columns))
        con.execute(f"create table published.{star.q(table)} as "
                    f"select * from {star.PUBLISHED}.{star.q(table)} order by {order}")
    return list(tables)


def _write_parquet(con: duckdb.DuckDBPyConnection, table: str, folder: Path) -> dict[str, dict]:
    """Write star.<table> as Parquet (one file per month for facts); return file -> rows and sha256."""
    columns = [r[0] for r in con.execute(f"describe {star.STAR}.{star.q(table)}").fetchall()]
    written = {}
    if "month_key" in columns and table.startswith("fact_"):
        months = [r[0] for r in con.execute(
            f"select distinct reporting_month from {star.STAR}.{star.q(table)} order by 1").fetchall()]
        parts = [(folder / table / f"month={m:%Y-%m}" / "part-0.parquet", "where reporting_month = $1", [m]) for m in months]
    else:
        parts = [(folder / table / "part-0.parquet", "", [])]
    for path, where, params in parts:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The star tables were created sorted; rowid order is that order.
        arrow = con.sql(f"select * from {star.STAR}.{star.q(table)} {where} order by rowid", params=params).to_arrow_table()
        pq.write_table(arrow, path, **PARQUET_OPTIONS)
        written[str(path.relative_to(folder))] = {"rows": arrow.num_rows, "sha256": sha256_file(path)}
    return written


def build_snapshot(warehouse, target: Path, candidate_month=None, *, powerbi_parquet_folder: str | None = None,
                   schema: str = "published") -> dict:
    """Build a complete snapshot of the warehouse's published tables in folder `target`.

    Arguments:
        warehouse: the `Warehouse` or its file (attached read-only through its door, never written).
        target: an empty or absent folder.
        candidate_month: build what the snapshot will be once this month's gated candidates
            are published (publication.published_views), for the disclosure audit before publishing.
        powerbi_parquet_folder: the Parquet folder as Power BI will see it, the default of the
            generated model's `ParquetFolder` parameter (default: this snapshot's own folder).
        schema: the warehouse schema whose tables are served (`national` for the national release).

    Returns:
        The snapshot manifest (also written to `target/snapshot.json`).
    """
    target.mkdir(parents=True, exist_ok=True)
    database = target / SERVING_DB
    con = duckdb.connect()
    try:
        # Written in the v1.0.0 storage format so that BI clients with an older DuckDB
        # (the Windows ODBC driver Power BI uses) can open it; DuckDB 2.0 writes its own
        # newer format by default, which DuckDB 1.x cannot read.
        con.execute(f"attach '{database}' as serving (storage_version '{STORAGE_VERSION}')")
        from pipelines.publication import published_views
        from pipelines.warehouse import as_warehouse

        as_warehouse(warehouse).attach(con, star.SOURCE)

        published_views(con, star.SOURCE, candidate_month, schema=schema)
        con.execute("use serving")
        published = _copy_published(con)
        star_tables = star.build_star(con)
        columns = {t: [(r[0], r[1]) for r in con.execute(f"describe {star.STAR}.{star.q(t)}").fetchall()]
                   for t in star_tables}
        rows = star.dictionary_rows(columns)
        con.execute("create schema if not exists meta")
        con.register("_dictionary", rows.to_arrow())
        con.execute("create table meta.data_dictionary as select * from _dictionary")
        con.unregister("_dictionary")
        files = {}
        for table in star_tables:
            files.update(_write_parquet(con, table, target / PARQUET))
        months = [r[0].isoformat() for r in con.execute("select reporting_month from star.dim_month order by 1").fetchall()]
        # The snapshot describes itself inside the database too, for readers that only see the file.
        con.execute("create table meta.snapshot as select ? as snapshot, ?::date[] as months, ? as star_tables",
                    [target.name.strip(".").removesuffix(".building"), months, star_tables])
        con.execute(f"detach {star.SOURCE}")
        con.execute("checkpoint serving")
        con.execute("use memory")
        con.execute("detach serving")
    finally:
        con.close()
    (target / DICTIONARY).write_text(star.dictionary_markdown(rows), encoding="utf-8")
    # The Power BI model is written from the finished serving database, and parsed before the
    # snapshot can be published: a model that does not parse never reaches the serving folder.
    powerbi = write_project(database, target / POWERBI, powerbi_parquet_folder or str((target / PARQUET).resolve()))
    manifest = {
        "snapshot": target.name.strip(".").removesuffix(".building"),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "months": months,
        "published_tables": published,
        "star_tables": star_tables,
        "parquet_files": files,
        "powerbi_files": powerbi,
        "duckdb_version": duckdb.__version__,
        "duckdb_storage_version": STORAGE_VERSION,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    # The snapshot names itself: the serving root's `CURRENT` is a link to `current/CURRENT`,
    # so repointing `current` alone switches both (one rename, see swap_current).
    (target / POINTER).write_text(f"{SNAPSHOTS}/{manifest['snapshot']}\n", encoding="utf-8")
    os.chmod(database, 0o444)  # a serving file is read-only for everyone, the pipeline included
    return manifest


def _new_snapshot_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def publish_snapshot(warehouse: Path, root: Path, *, keep: int = 3, powerbi_parquet_folder: str | None = None,
                     schema: str = "published", check=None) -> dict:
    """Build a new snapshot under `root/snapshots/` and point `root/current` at it atomically.

    Arguments:
        warehouse: the pipeline's DuckDB file.
        root: the serving folder.
        keep: how many snapshots to keep (at least 2: the new one and the one readers may still be on).
        powerbi_parquet_folder: the Parquet folder as Power BI's machines see it (e.g. a share's
            `\\\\server\\core20\\serving\\current\\parquet`); default `root/current/parquet` on this machine.
        schema: the warehouse schema whose tables are served (`build_snapshot`).
        check: called with the built folder before it can be pointed at; an exception it raises
            discards the snapshot and leaves `current` where it was (the national release's
            disclosure audit).

    Returns:
        The new snapshot's manifest.
    """
    if keep < 2:
        raise ValueError(f"keep must be at least 2 (the new snapshot and the previous one readers may hold); got {keep}")
    snapshots = root / SNAPSHOTS
    snapshots.mkdir(parents=True, exist_ok=True)
    snapshot_id = _new_snapshot_id()
    building = snapshots / f".{snapshot_id}.building"
    try:
        parquet_folder = powerbi_parquet_folder or str(root.resolve() / CURRENT / PARQUET)
        manifest = build_snapshot(warehouse, building, powerbi_parquet_folder=parquet_folder, schema=schema)
        if check is not None:
            check(building)
        final = snapshots / snapshot_id
        building.rename(final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    swap_current(root, final)
    prune(root, keep=keep)
    return manifest | {"snapshot": snapshot_id}


def swap_current(root: Path, snapshot: Path) -> None:
    """Point `root/current` at `snapshot` with ONE atomic rename of a new symlink over the old.

    `root/CURRENT` (the text pointer Power Query reads) is itself a link to `current/CURRENT`,
    a file inside every snapshot naming it, so it follows `current` in the same rename: a
    crash can never leave the two naming different snapshots. A serving folder from before
    this layout has `CURRENT` as a plain file; it becomes the link here, once, after the
    swap (until then it still names a complete snapshot). A snapshot built before the layout
    has no `CURRENT` inside: it is given one before it can be pointed at.
    """
    if not (snapshot / POINTER).exists():
        (snapshot / POINTER).write_text(f"{SNAPSHOTS}/{snapshot.name}\n", encoding="utf-8")
    _replace_link(root / CURRENT, Path(SNAPSHOTS) / snapshot.name)
    pointer = root / POINTER
    if not (pointer.is_symlink() and os.readlink(pointer) == f"{CURRENT}/{POINTER}"):
        _replace_link(pointer, Path(CURRENT) / POINTER)


def _replace_link(link: Path, target: Path) -> None:
    """Make `link` a symlink to `target` by renaming a new link over it (atomic on POSIX)."""
    temporary = link.parent / f".{link.name}.{os.getpid()}.tmp"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(target, temporary)
    os.replace(temporary, link)


def leftovers(root: Path, reports_dir: Path) -> list[Path]:
    """Return what killed runs can leave: temporary links, building folders, candidate pointers and reports.

    Only meaningful while no run is building (the caller holds the warehouse's writer lock).
    """
    found = [p for name in (CURRENT, POINTER) for p in root.glob(f".{name}.*.tmp")]
    if (root / SNAPSHOTS).is_dir():
        found += sorted((root / SNAPSHOTS).glob(".*.building")) + sorted((root / SNAPSHOTS).glob(".candidate-*"))
    if (reports_dir / CANDIDATES).is_dir():
        found += sorted((reports_dir / CANDIDATES).iterdir())
    return found


def sweep_leftovers(root: Path, reports_dir: Path) -> list[str]:
    """Remove `leftovers` (the caller holds the warehouse's writer lock); return their names."""
    removed = []
    for path in leftovers(root, reports_dir):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def read_pointer(root: Path) -> Path:
    """Return the snapshot folder the `CURRENT` pointer names (read once per refresh)."""
    return root / (root / POINTER).read_text(encoding="utf-8").strip()


def current_snapshot(root: Path) -> Path | None:
    """Return the snapshot folder `current` points at, if any."""
    link = root / CURRENT
    return link.resolve() if link.is_symlink() else None


def prune(root: Path, *, keep: int) -> list[str]:
    """Delete all but the `keep` newest snapshots (never the current one) and abandoned builds."""
    snapshots = root / SNAPSHOTS
    current = current_snapshot(root)
    finished = sorted(p for p in snapshots.iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for old in finished[:-keep]:
        if current is not None and old.resolve() == current:
            continue
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old.name)
    for stale in snapshots.glob(".*.building"):
        if time.time() - stale.stat().st_mtime > STALE_BUILD_SECONDS:
            shutil.rmtree(stale, ignore_errors=True)
    return removed


# ---------------------------------------------------------------------------
# Candidates: a month's snapshot and report are built before the month is published, audited
# with the candidate tables (pipelines/disclosure_audit.py), and only put in place after the
# warehouse's publish transaction. `pipelines/publish_journal.py` makes the three one
# recoverable unit: `place_candidates` can be repeated from wherever a killed run stopped.
# ---------------------------------------------------------------------------

CANDIDATES = ".candidates"


def candidate_paths(serving_root: Path, reports_dir: Path, month) -> dict[str, Path]:
    """Return where a month's candidate outputs live (private building locations readers never see)."""
    from pipelines.report.page import report_path

    return {
        "pointer": serving_root / SNAPSHOTS / f".candidate-{month:%Y-%m}",
        "report": report_path(reports_dir / CANDIDATES, month),
    }


def build_candidates(warehouse, serving_root: Path, reports_dir: Path, reference_dir: Path, month,
                     powerbi_parquet_folder: str | None = None) -> dict:
    """Build the month's candidate serving snapshot and report from its gated candidates.

    Returns:
        {'snapshot': folder, 'report': file, 'manifest': snapshot manifest}.
    """
    from pipelines.report.page import write_report

    discard_candidates(serving_root, reports_dir, month)
    paths = candidate_paths(serving_root, reports_dir, month)
    snapshots = serving_root / SNAPSHOTS
    snapshots.mkdir(parents=True, exist_ok=True)
    building = snapshots / f".{_new_snapshot_id()}.building"
    try:
        manifest = build_snapshot(warehouse, building, candidate_month=month, powerbi_parquet_folder=(
            powerbi_parquet_folder or str(serving_root.resolve() / CURRENT / PARQUET)))
        paths["pointer"].write_text(building.name, encoding="utf-8")
        report, _ = write_report(warehouse, month, reference_dir, paths["report"].parent, candidate=True,
                                 target=paths["report"])
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return {"snapshot": building, "report": report, "manifest": manifest}


def candidate_snapshot(serving_root: Path, reports_dir: Path, month) -> Path | None:
    """Return the month's candidate snapshot folder, if one was built."""
    pointer = candidate_paths(serving_root, reports_dir, month)["pointer"]
    if not pointer.exists():
        return None
    folder = serving_root / SNAPSHOTS / pointer.read_text(encoding="utf-8").strip()
    return folder if folder.exists() else None


def candidate_plan(serving_root: Path, reports_dir: Path, month) -> dict[str, str]:
    """Return the names `place_candidates` needs, read before anything moves (for the publication journal)."""
    from pipelines.report.page import report_path

    paths = candidate_paths(serving_root, reports_dir, month)
    building = candidate_snapshot(serving_root, reports_dir, month)
    if building is None or not paths["report"].exists():
        raise FileNotFoundError(f"no audited candidate outputs for {month:%Y-%m} (run the disclosure audit first)")
    return {"snapshot_id": building.name.strip(".").removesuffix(".building"),
            "candidate_report": str(paths["report"]), "report": str(report_path(reports_dir, month))}


def place_candidates(serving_root: Path, snapshot_id: str, candidate_report: Path, report: Path, month, *,
                     keep: int = 3, failpoint=lambda name: None) -> dict:
    """Move a month's audited candidate snapshot and report into place; safe to repeat after a crash.

    Each step checks whether it was already done, so recovery can run the whole sequence
    again from wherever a killed run stopped: the building folder renamed to the snapshot,
    `current` repointed (one rename), older versions of the month retired, old snapshots
    pruned, the candidate pointer removed, the report moved over the month's report.
    """
    snapshots = serving_root / SNAPSHOTS
    building, final = snapshots / f".{snapshot_id}.building", snapshots / snapshot_id
    if building.exists() and not final.exists():
        building.rename(final)
        failpoint("snapshot-renamed")
    if not final.exists():
        raise FileNotFoundError(f"the audited snapshot {final} is gone; run the month again")
    if current_snapshot(serving_root) != final.resolve() or not (serving_root / POINTER).is_symlink():
        swap_current(serving_root, final)
        failpoint("current-swapped")
    retire_versions(serving_root, month, final)
    prune(serving_root, keep=keep)
    candidate_paths(serving_root, report.parent, month)["pointer"].unlink(missing_ok=True)
    if candidate_report.exists():
        os.replace(candidate_report, report)
        failpoint("report-moved")
    manifest = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
    return {"snapshot": final, "report": report, "manifest": manifest | {"snapshot": snapshot_id}}


def discard_candidates(serving_root: Path, reports_dir: Path, month) -> None:
    """Remove a month's candidate outputs (a blocked month leaves nothing half-built behind)."""
    paths = candidate_paths(serving_root, reports_dir, month)
    building = candidate_snapshot(serving_root, reports_dir, month)
    if building is not None:
        shutil.rmtree(building, ignore_errors=True)
    for path in (paths["pointer"], paths["report"]):
        if path.exists():
            path.unlink()


def retire_versions(serving_root: Path, month, current: Path) -> list[str]:
    """Delete the older snapshots that hold a month just published again (a re-sent extract).

    Two versions of one month side by side let a reader difference them (one patient added
    shows through the rounding), and each version was protected on its own. So the serving
    folder never holds two versions of a month: once a re-sent month is swapped in, the
    snapshots with its earlier version go. The cost: a Power BI refresh that was still reading
    such a snapshot fails on its next file and must be run again (files already open stay
    readable on POSIX). Older snapshots of other months are kept as before (`keep`).
    """
    removed = []
    label = month.isoformat()
    for folder in sorted(p for p in (serving_root / SNAPSHOTS).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.resolve() == current.resolve():
            continue
        manifest = folder / MANIFEST
        months = json.loads(manifest.read_text(encoding="utf-8")).get("months", []) if manifest.exists() else []
        if label in months:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
