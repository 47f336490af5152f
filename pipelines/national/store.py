"""The partition store: a Parquet dataset laid out by ICB and month, on a local folder or object storage.

    ROOT/icb=QT1/month=2026-10/_committed.json     which run's files are current
    ROOT/icb=QT1/month=2026-10/<run_id>/<table>.parquet
    ROOT/national/month=2026-10/...                 the roll-up (same scheme, icb='national')

Paths go through universal_pathlib (fsspec), so ROOT may be `/srv/core20/partitions` or
`s3://bucket/core20` (with s3fs installed) without another code path. No two partitions
share a file: each writes under its own ICB and month, into a folder named by a fresh run
id. A re-run writes a new folder and then replaces the one small `_committed.json` - an
atomic rename on a local disk, a single PUT on object storage - so a reader sees either
the old partition or the new one, never a mixture; the superseded folder is deleted after.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from datetime import datetime, timezone

import polars as pl
from upath import UPath

COMMITTED = "_committed.json"
NATIONAL = "national"


class PartitionStore:
    """Read and write one ICB x month partition's tables atomically under a root path."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = UPath(root)

    def folder(self, icb: str, month: str) -> UPath:
        return self.root / f"icb={icb}" / f"month={month[:7]}"

    def write(self, icb: str, month: str, tables: dict[str, pl.DataFrame], info: dict | None = None) -> dict:
        """Write `tables` as the partition's current files, replacing exactly this ICB and month."""
        folder = self.folder(icb, month)
        run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        target = folder / run_id
        target.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            buffer = io.BytesIO()
            frame.write_parquet(buffer, compression="zstd", statistics=True)
            (target / f"{name}.parquet").write_bytes(buffer.getvalue())
        manifest = {"icb": icb, "month": month[:7], "run_id": run_id, "written_at": datetime.now(timezone.utc).isoformat(),
                    "tables": {name: frame.height for name, frame in tables.items()}, **(info or {})}
        self._commit(folder, manifest)
        for old in folder.iterdir():
            if old.name not in (run_id, COMMITTED) and not old.name.startswith("."):
                old.fs.rm(old.path, recursive=True)
        return manifest

    def _commit(self, folder: UPath, manifest: dict) -> None:
        data = json.dumps(manifest, indent=2, sort_keys=True).encode()
        final = folder / COMMITTED
        if final.protocol in ("", "file", "local"):
            pending = folder / f".{COMMITTED}.{manifest['run_id']}"
            pending.write_bytes(data)
            os.replace(pending.path, final.path)
        else:
            final.write_bytes(data)

    def manifest(self, icb: str, month: str) -> dict | None:
        path = self.folder(icb, month) / COMMITTED
        return json.loads(path.read_bytes()) if path.exists() else None

    def has_tables(self, icb: str, month: str, names) -> bool:
        """Whether the partition has a committed run holding every table in `names` (older runs may lack some)."""
        manifest = self.manifest(icb, month)
        return manifest is not None and all(name in manifest.get("tables", {}) for name in names)

    def icbs(self, month: str) -> list[str]:
        """Return the ICBs with a committed partition for the month (the national roll-up excluded)."""
        if not self.root.exists():
            return []
        found = []
        for child in self.root.iterdir():
            icb = child.name.removeprefix("icb=")
            if child.name.startswith("icb=") and icb != NATIONAL and self.manifest(icb, month) is not None:
                found.append(icb)
        return sorted(found)

    def read(self, icb: str, month: str, table: str) -> pl.DataFrame:
        """Return one table of a partition's committed run.

        Raises:
            FileNotFoundError: naming the partition when it has no committed run or lacks the table.
        """
        manifest = self.manifest(icb, month)
        if manifest is None:
            raise FileNotFoundError(f"partition icb={icb} month={month[:7]} has no {COMMITTED} under {self.root}")
        path = self.folder(icb, month) / manifest["run_id"] / f"{table}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"partition icb={icb} month={month[:7]} has no table {table!r} ({path})")
        return pl.read_parquet(io.BytesIO(path.read_bytes()))

    def read_all(self, month: str, table: str, icbs: list[str] | None = None) -> pl.DataFrame:
        """Return a table of every (or the given) ICB partition of the month, with a `partition_icb` column first."""
        frames = [self.read(icb, month, table).with_columns(pl.lit(icb).alias("partition_icb")) for icb in (icbs or self.icbs(month))]
        if not frames:
            raise FileNotFoundError(f"no ICB partition of {month[:7]} is committed under {self.root}")
        frame = pl.concat(frames, how="diagonal_relaxed")
        return frame.select("partition_icb", pl.exclude("partition_icb"))

    def with_run(self, icb: str, month: str, tables: dict[str, pl.DataFrame], info: dict | None = None) -> "PartitionStore":
        """Return this store as a reader would see it with `tables` committed as ICB `icb`'s month; nothing is written.

        For checking a partition's new run against the rest of the month before it is committed
        (`national.context`): every other partition is read from the store as it is.
        """
        return _PendingRun(self, icb, month, tables, info or {})


class _PendingRun(PartitionStore):
    """A read-only view of a store with one partition's uncommitted run in place of its committed one."""

    def __init__(self, store: PartitionStore, icb: str, month: str, tables: dict[str, pl.DataFrame], info: dict) -> None:
        super().__init__(store.root)
        self._icb, self._month, self._tables, self._info = icb, month[:7], tables, info

    def _pending(self, icb: str, month: str) -> bool:
        return icb == self._icb and month[:7] == self._month

    def write(self, icb: str, month: str, tables: dict[str, pl.DataFrame], info: dict | None = None) -> dict:
        raise TypeError("a store with a pending run is a read-only view: commit the run through the store itself")

    def manifest(self, icb: str, month: str) -> dict | None:
        if self._pending(icb, month):
            return {"icb": icb, "month": self._month, "run_id": "(pending)",
                    "tables": {name: frame.height for name, frame in self._tables.items()}, **self._info}
        return super().manifest(icb, month)

    def icbs(self, month: str) -> list[str]:
        found = super().icbs(month)
        return sorted({*found, self._icb}) if month[:7] == self._month else found

    def read(self, icb: str, month: str, table: str) -> pl.DataFrame:
        if not self._pending(icb, month):
            return super().read(icb, month, table)
        if table not in self._tables:
            raise FileNotFoundError(f"the pending run of partition icb={icb} month={self._month} has no table {table!r}")
        return self._tables[table]
