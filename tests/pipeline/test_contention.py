"""One writer per warehouse, and a queue instead of a failure.

Two `core20 run` on one warehouse publish one after the other; `--wait 0` refuses clearly; an
analyst's read-only DuckDB session held on the warehouse delays a run instead of failing it;
`core20 quality` during a run reads the copy beside the warehouse and never touches the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline_helpers import published_state
from pipelines.runlock import quality_copy_path, writer, writer_busy

REPO = Path(__file__).resolve().parents[2]


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "DAGSTER_HOME": "", **(env or {})})


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=900)
    return process.returncode, output


def wait_for_writer(warehouse: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while writer_busy(warehouse) is None:
        assert process.poll() is None, finish(process)
        assert time.monotonic() < deadline, "the first run never took the writer lock"
        time.sleep(0.05)


def run_september(extracts: Path, warehouse: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return start("run", "--extract", str(extracts), "--month", "2026-09", "--warehouse", str(warehouse), *extra, env=env)


def test_two_concurrent_runs_on_one_warehouse_both_publish_one_after_the_other(september, warehouse):
    before = published_state(warehouse)
    first = run_september(september, warehouse)
    wait_for_writer(warehouse, first)
    second = run_september(september, warehouse)
    (code1, out1), (code2, out2) = finish(first), finish(second)
    assert code1 == 0, out1
    assert code2 == 0, out2
    assert "waiting for the warehouse" in out2 and "core20 run 2026-09 (process" in out2
    assert "the other run has finished; starting" in out2
    assert "published 2026-09" in out1 and "published 2026-09" in out2
    assert published_state(warehouse) != before
    assert writer_busy(warehouse) is None


def test_a_second_run_told_not_to_wait_refuses_clearly_and_changes_nothing(september, warehouse):
    before = published_state(warehouse)
    holder = start("quality", "--warehouse", str(warehouse))  # any other process: this test holds the lock itself
    finish(holder)
    with writer(warehouse, "a backfill started by a colleague"):
        code, output = finish(run_september(september, warehouse, "--wait", "0"))
        waited, waited_output = finish(run_september(september, warehouse, env={"CORE20_RUN_WAIT_SECONDS": "1"}))
    assert code == 1
    assert f"core20 run: the warehouse {warehouse} is being written by a backfill started by a colleague (process {os.getpid()}" in output
    assert "refused at once because the wait is 0 (--wait SECONDS or CORE20_RUN_WAIT_SECONDS" in output
    assert waited == 1 and "still being written by a backfill started by a colleague" in waited_output
    assert "after 1 s of waiting; nothing was run" in waited_output
    assert "Traceback" not in output + waited_output
    assert published_state(warehouse) == before


READER = """
import duckdb, select, sys, time
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("select count(*) from published.gap_table").fetchall()
print("holding", flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))  # until told to close, or the time is up
con.close()
"""


def hold_read_only(warehouse: Path, seconds: float) -> subprocess.Popen:
    reader = subprocess.Popen([sys.executable, "-c", READER, str(warehouse), str(seconds)], stdout=subprocess.PIPE,
                              stdin=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "holding"
    return reader


def test_an_analyst_holding_the_warehouse_read_only_delays_a_run_but_never_fails_it(september, warehouse):
    reader = hold_read_only(warehouse, 600)
    run = run_september(september, warehouse)
    lines = []
    for line in run.stdout:  # the analyst closes the session once the run says it is waiting
        lines.append(line)
        if "to close the warehouse" in line:
            reader.stdin.write("done\n")
            reader.stdin.flush()
    run.wait(timeout=900)
    reader.wait(timeout=60)
    code, output = run.returncode, "".join(lines)
    assert code == 0, output
    assert f"waiting for process {reader.pid} to close the warehouse {warehouse}" in output
    assert "Analysts should open serving/current/core20plus5.duckdb instead" in output
    assert "published 2026-09" in output


def test_a_reader_that_never_lets_go_gets_a_clear_refusal_naming_it(september, warehouse):
    before = published_state(warehouse)
    reader = hold_read_only(warehouse, 600)  # killed below
    try:
        code, output = finish(run_september(september, warehouse, env={"CORE20_WAREHOUSE_LOCK_SECONDS": "2"}))
    finally:
        reader.kill()
        reader.wait()
    assert code == 1
    assert f"is held open by process {reader.pid}" in output and "stayed held for 2 s" in output
    assert "open the serving snapshot (serving/current/core20plus5.duckdb), never the warehouse" in output
    assert "Traceback" not in output and "IO Error" not in output
    assert published_state(warehouse) == before


def test_core20_quality_during_a_run_reads_the_copy_and_the_run_publishes(september, warehouse, clean_extracts):
    # The copy is written at the end of every run; the fixture's warehouse was copied after one.
    from pipelines.runlock import write_quality_copy

    assert write_quality_copy(warehouse) == quality_copy_path(warehouse)
    run = run_september(september, warehouse)
    wait_for_writer(warehouse, run)
    code, output = finish(start("quality", "--warehouse", str(warehouse)))
    run_code, run_output = finish(run)
    assert code == 0, output
    assert f"a run is writing {warehouse} (core20 run 2026-09" in output
    assert "2026-10" in output  # October's gates, from the copy
    assert run_code == 0, run_output
    assert "waiting" not in run_output
    code, output = finish(start("quality", "--warehouse", str(warehouse)))
    assert code == 0 and "2026-09" in output and "data-quality history in" in output
