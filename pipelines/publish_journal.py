"""Publication as one recoverable unit: the warehouse, the serving snapshot and the report.

Publishing a month changes three things, each atomic on its own: the warehouse's publish
transaction, the serving folder's `current` link (one rename, `serving.swap_current`) and the
month's report file (one rename). A process killed between them used to leave the warehouse
on the new month and Power BI or the report on the old one, with nothing recording it. Now:

1. Before the transaction, a journal `<warehouse>.publishing.json` is written (atomically,
   flushed to disk) naming the month, a token, the audited candidate snapshot and report,
   and where they go.
2. The publish transaction records the token in `audit.publications`, so the commit and
   the record happen together or not at all.
3. The candidates are put in place (`serving.place_candidates`, each step safe to repeat).
4. The journal is deleted.

`recover` runs before anything else at the start of every Dagster run that writes the
warehouse (holding its writer lock) and of the `core20` commands that read it (taking the
lock only if no run holds it: a live run's journal is its own). A journal left by a killed
process is finished: if the token committed, the candidates are put in place (roll
forward); if not, they are discarded and the published month stays the old one (roll
back). Either way the three agree again, and it says so. Temporary links of a killed swap
and abandoned `.building` folders and candidates are removed then too.

`CORE20_FAILPOINT=<step>` kills the process with SIGKILL at that step (`journal-written`,
`committed`, `snapshot-renamed`, `current-swapped`, `report-moved`): how the kill tests
stop a publish in the middle. It does nothing otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Callable

SUFFIX = ".publishing.json"
FAILPOINT_ENV = "CORE20_FAILPOINT"


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL when CORE20_FAILPOINT names this step (kill tests only)."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def journal_path(warehouse: Path) -> Path:
    """Return the publication journal's path for `warehouse` (beside it)."""
    return Path(str(warehouse) + SUFFIX)


@dataclass(frozen=True)
class Journal:
    """What a publication in progress will do, written before it starts."""

    token: str
    month: str  # ISO date of the month's first day
    serving_root: str
    reports_dir: str
    snapshot_id: str
    candidate_report: str
    report: str
    keep: int

    def save(self, path: Path) -> None:
        """Write the journal atomically and durably (a rename after fsync, then the folder's fsync)."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    @classmethod
    def load(cls, path: Path) -> Journal:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def publish_month(warehouse, serving_root: Path, reports_dir: Path, month: date, *, keep: int) -> tuple[dict, dict]:
    """Publish the month's gated candidates and put its audited outputs in place, as one recoverable unit.

    Arguments:
        warehouse: the `Warehouse` resource (or its file).
        serving_root, reports_dir: the warehouse's serving and report folders.
        month: the month's first day.
        keep: snapshots to keep in the serving folder.

    Returns:
        (rows published per table, what `serving.place_candidates` put in place).
    """
    from pipelines.publication import publish
    from pipelines.serving import candidate_plan, place_candidates
    from pipelines.warehouse import as_warehouse

    path = journal_path(as_warehouse(warehouse).file())
    plan = candidate_plan(serving_root, reports_dir, month)
    journal = Journal(token=uuid.uuid4().hex, month=month.isoformat(), serving_root=str(serving_root),
                      reports_dir=str(reports_dir), snapshot_id=plan["snapshot_id"],
                      candidate_report=plan["candidate_report"], report=plan["report"], keep=keep)
    journal.save(path)
    failpoint("journal-written")
    copied = publish(warehouse, month, token=journal.token)
    failpoint("committed")
    placed = place_candidates(serving_root, journal.snapshot_id, Path(journal.candidate_report), Path(journal.report),
                              month, keep=keep, failpoint=failpoint)
    path.unlink(missing_ok=True)
    return copied, placed


def recover(warehouse: Path, say: Callable[[str], None] | None = None, *, serving_root: Path | None = None,
            reports_dir: Path | None = None) -> str | None:
    """Finish or undo a publication a killed process left half done; return what was done (None: nothing).

    The caller holds the warehouse's writer lock (no run is publishing or building), or the
    journal could be a live run's. The journal names the serving and report folders; given
    them too, what killed builds left there (building folders, candidates, temporary links)
    is removed even when no publication was under way.
    """
    from pipelines.publication import publication_committed
    from pipelines.serving import discard_candidates, place_candidates, sweep_leftovers
    from pipelines.warehouse import connect

    warehouse = Path(warehouse)
    path = journal_path(warehouse)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    done = None
    if path.exists():
        journal = Journal.load(path)
        month = date.fromisoformat(journal.month)
        serving_root, reports_dir = Path(journal.serving_root), Path(journal.reports_dir)
        with connect(warehouse, read_only=True) as con:
            committed = publication_committed(con, journal.token)
        if committed:
            place_candidates(serving_root, journal.snapshot_id, Path(journal.candidate_report), Path(journal.report),
                             month, keep=journal.keep)
            done = (f"finished the publication of {month:%Y-%m} a stopped run left half done: the warehouse had "
                    "published it; the serving snapshot and the report now show it too")
        else:
            discard_candidates(serving_root, reports_dir, month)
            done = (f"undid the publication of {month:%Y-%m} a stopped run began: the warehouse had not published "
                    "it, so the published month, the serving snapshot and the report stay as they were")
    if serving_root is not None and reports_dir is not None:
        removed = sweep_leftovers(serving_root, reports_dir)
        if removed and done is None:
            done = f"removed {len(removed)} unfinished build(s) or temporary file(s) stopped runs left in {serving_root}"
    path.unlink(missing_ok=True)
    if done is not None and say is not None:
        say(done)
    return done


def recover_if_idle(warehouse: Path, serving_root: Path, reports_dir: Path,
                    say: Callable[[str], None] | None = None) -> str | None:
    """`recover`, for a command that only reads: only when no run holds the warehouse (else that run's own)."""
    from pipelines import runlock
    from pipelines.serving import leftovers

    warehouse = Path(warehouse)
    if not warehouse.exists() or not (journal_path(warehouse).exists() or leftovers(serving_root, reports_dir)):
        return None
    try:
        with runlock.writer(warehouse, "recovery of a stopped publication", wait=0):
            return recover(warehouse, say, serving_root=serving_root, reports_dir=reports_dir)
    except runlock.WarehouseBusy:
        return None
