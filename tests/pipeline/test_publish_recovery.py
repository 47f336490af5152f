"""Killed at any step or inside publish: the next command leaves the warehouse, Power BI's
snapshot and the report showing the same months, with nothing left behind (issue 15, point 1).

A run killed after each step of the monthly job (`CORE20_FAILPOINT=after:<step>`, a success
hook on the job) leaves October alone, or September fully published when the kill comes
after the publish step.

October is published (warehouse, serving snapshot, report). A `core20 run` of September is
then killed with SIGKILL at each step of its publication (`CORE20_FAILPOINT`, see
pipelines/publish_journal.py): after the journal is written (before the commit), after the
commit, after the snapshot folder is renamed, after `current` is repointed, after the report
is moved. The next command finishes the publication (the commit happened) or undoes it (it
did not); the check below reads only the files and the warehouse.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_helpers import core20_in_process
from pipelines.warehouse import connect

REPO = Path(__file__).resolve().parents[2]


def _steps() -> list[str]:
    from pipelines.definitions import build_definitions

    return sorted(node.name for node in build_definitions().resolve_job_def("monthly").graph.nodes)


STEPS = _steps()
# (failpoint, whether September's commit happened before the kill)
FAILPOINTS = [("journal-written", False), ("committed", True), ("snapshot-renamed", True),
              ("current-swapped", True), ("report-moved", True)]


@pytest.fixture
def published_october(tmp_path, base_warehouse) -> Path:
    """Return a private copy of the warehouse with October published, with its serving and report folders."""
    folder = tmp_path / "w"
    shutil.copytree(base_warehouse.parent, folder, symlinks=True)
    return folder / base_warehouse.name


def _run_killed_at(failpoint: str, extracts: Path, warehouse: Path) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"CORE20_FAILPOINT": failpoint}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--extract", str(extracts), "--month", "2026-09",
                           "--warehouse", str(warehouse)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return done.returncode


def _state(warehouse: Path) -> dict:
    """What a reader sees: months in the warehouse, in the snapshot both pointers name, reports; leftovers."""
    serving, reports = warehouse.parent / f"{warehouse.stem}-serving", warehouse.parent / f"{warehouse.stem}-reports"
    with connect(warehouse, read_only=True) as con:
        published = sorted(r[0].isoformat() for r in con.execute(
            "select distinct reporting_month from published.gap_table").fetchall())
    current = (serving / "current").resolve()
    leftovers = sorted(
        str(p.relative_to(warehouse.parent)) for p in warehouse.parent.rglob("*")
        if p.name.endswith((".building", ".tmp", ".publishing.json")) or p.name.startswith(".candidate-")
        or (p.parent.name == ".candidates" and p.is_file()))
    return {
        "warehouse": published,
        "snapshot": json.loads((current / "snapshot.json").read_text())["months"],
        "pointer_agrees": (serving / "CURRENT").read_text().strip() == f"snapshots/{current.name}",
        "reports": sorted(p.stem[-7:] + "-01" for p in reports.glob("*.html")),
        "leftovers": leftovers,
    }


@pytest.mark.parametrize("failpoint,committed", FAILPOINTS, ids=[f for f, _ in FAILPOINTS])
def test_a_run_killed_inside_publish_is_finished_or_undone_by_the_next_command(
        failpoint, committed, september, published_october):
    before = _state(published_october)
    assert before["warehouse"] == ["2026-10-01"] and before["leftovers"] == []
    assert _run_killed_at(failpoint, september, published_october) == -signal.SIGKILL

    code, output = core20_in_process("quality", "--warehouse", str(published_october))
    assert code == 0, output
    after = _state(published_october)
    months = ["2026-09-01", "2026-10-01"] if committed else ["2026-10-01"]
    assert after == {"warehouse": months, "snapshot": months, "pointer_agrees": True, "reports": months, "leftovers": []}
    assert ("finished the publication of 2026-09" if committed else "undid the publication of 2026-09") in output


@pytest.mark.parametrize("step", STEPS)
def test_a_run_killed_after_any_step_leaves_everything_consistent(step, september, published_october):
    assert _run_killed_at(f"after:{step}", september, published_october) == -signal.SIGKILL
    code, output = core20_in_process("quality", "--warehouse", str(published_october))
    assert code == 0, output
    months = ["2026-09-01", "2026-10-01"] if step == "publish_month" else ["2026-10-01"]
    assert _state(published_october) == {"warehouse": months, "snapshot": months, "pointer_agrees": True,
                                          "reports": months, "leftovers": []}


def test_the_next_run_recovers_before_it_starts(september, published_october):
    assert _run_killed_at("current-swapped", september, published_october) == -signal.SIGKILL
    code, output = core20_in_process("run", "--extract", str(september), "--month", "2026-09",
                                     "--warehouse", str(published_october))
    assert code == 0, output
    assert "finished the publication of 2026-09" in output
    after = _state(published_october)
    assert after["warehouse"] == after["snapshot"] == after["reports"] == ["2026-09-01", "2026-10-01"]
    assert after["pointer_agrees"] and after["leftovers"] == []


def test_what_a_killed_build_left_is_removed_by_the_next_command(published_october):
    serving, reports = published_october.parent / "w-serving", published_october.parent / "w-reports"
    building = serving / "snapshots" / ".20260101T000000000000Z.building"
    (building / "parquet").mkdir(parents=True)
    (building / "parquet" / "part-0.parquet").write_bytes(b"half a file")
    (serving / "snapshots" / ".candidate-2026-09").write_text(building.name)
    (serving / ".current.4242.tmp").symlink_to("snapshots/nowhere")
    (reports / ".candidates").mkdir(exist_ok=True)
    (reports / ".candidates" / "core20plus5_report_2026-09.html").write_text("<html>half</html>")
    before = _state(published_october)
    assert len(before["leftovers"]) == 4  # the building folder, its pointer, the temporary link, the report
    code, output = core20_in_process("quality", "--warehouse", str(published_october))
    assert code == 0, output
    assert "removed 4 unfinished build(s) or temporary file(s)" in output
    after = _state(published_october)
    assert after["leftovers"] == [] and not list((reports / ".candidates").iterdir())
    assert {k: v for k, v in after.items() if k != "leftovers"} == {k: v for k, v in before.items() if k != "leftovers"}
