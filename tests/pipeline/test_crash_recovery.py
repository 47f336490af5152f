"""A run killed with SIGKILL never wedges automation: the next sensor or schedule tick marks it
FAILURE and asks for the month again under a run key Dagster has not used, and that run publishes.
"""

from __future__ import annotations

import os
import time

import dagster as dg
import pytest

from crash_harness import make_home, request_tags, sense, trial
from pipeline_helpers import published_state
from pipelines.definitions import build_definitions
from pipelines.runlock import ORPHAN_TAG, RETRYABLE_TAG, writer_busy
from pipelines.runner import QUIET_LOGS


@pytest.fixture
def settled(september):
    stamp = time.time() - 3600
    for path in (september / "2026-09").iterdir():
        os.utime(path, (stamp, stamp))
    return september


@pytest.mark.parametrize("delay", [0.0, 2.0])
def test_a_killed_sensor_run_is_swept_and_the_month_runs_again(tmp_path, settled, warehouse, delay):
    home = make_home(tmp_path / "dagster_home")
    seen = trial(home, warehouse, settled, delay)
    # Before this change the killed run stayed STARTED for ever: the queue counted it as active.
    assert seen["before"] == dg.DagsterRunStatus.STARTED
    assert seen["after"] == dg.DagsterRunStatus.FAILURE and seen["orphan_tag"] == "true"
    assert not os.path.exists(home / "core20_runs" / f"{seen['killed']}.lock")
    [retry] = seen["requests"]
    assert retry.partition_key == "2026-09-01"
    assert writer_busy(warehouse) is None  # the killed run's hold on the warehouse ended with it
    assert retry.run_key == seen["killed_key"] + ":retry1"
    assert retry.run_key not in seen["used_keys"]  # so the daemon launches it
    scheduled = seen["scheduled"]  # the day after the run day: the schedule steps in for a crashed month
    assert isinstance(scheduled, dg.RunRequest) and scheduled.run_key.endswith(":retry1")

    # The retry runs (as the daemon would launch it) and publishes September.
    before = published_state(warehouse)
    defs = build_definitions(warehouse=str(warehouse), extracts=str(settled))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = defs.resolve_job_def("monthly").execute_in_process(
            instance=instance, partition_key=retry.partition_key, tags=request_tags(retry), raise_on_error=False,
            run_config=QUIET_LOGS)
        assert result.success
        again = sense(instance, settled)
    assert published_state(warehouse) != before
    assert [r.run_key for r in again] == [retry.run_key]  # the same key: Dagster will not run it a third time


def test_a_month_that_crashes_every_time_stops_being_retried(tmp_path, settled, monkeypatch):
    monkeypatch.setenv("CORE20_MAX_CRASH_RETRIES", "2")
    home = make_home(tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        request = sense(instance, settled)[0]
        keys = [request.run_key]
        for attempt in range(3):
            instance.add_run(dg.DagsterRun(job_name="monthly", run_id=f"crashed{attempt}", status=dg.DagsterRunStatus.FAILURE,
                                           tags={**request_tags(request), ORPHAN_TAG: "true", RETRYABLE_TAG: "true"}))
            result = sense(instance, settled)
            if isinstance(result, dg.SkipReason):
                break
            request = result[0]
            keys.append(request.run_key)
    assert [k.rsplit(":", 1)[-1] for k in keys[1:]] == ["retry1", "retry2"]
    assert isinstance(result, dg.SkipReason) and "not retried again" in result.skip_message
    assert "core20 run --month 2026-09" in result.skip_message


def test_a_month_blocked_by_a_gate_is_not_retried(tmp_path, settled):
    home = make_home(tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        request = sense(instance, settled)[0]
        # A gate-blocked run fails on its data, not by a crash: no orphan tag.
        instance.add_run(dg.DagsterRun(job_name="monthly", run_id="blocked", status=dg.DagsterRunStatus.FAILURE,
                                       tags=request_tags(request)))
        again = sense(instance, settled)
    assert [r.run_key for r in again] == [request.run_key]  # Dagster has run this key: nothing new launches


HOLDER = """
import sys, time
from pathlib import Path
from pipelines.runlock import writer
with writer(Path(sys.argv[1]), "a colleague's backfill"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_daemon_run_that_timed_out_waiting_for_the_warehouse_is_retried(tmp_path, settled, warehouse, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("CORE20_RUN_WAIT_SECONDS", "0")
    home = make_home(tmp_path / "dagster_home")
    defs = build_definitions(warehouse=str(warehouse), extracts=str(settled))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(warehouse)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            request = sense(instance, settled)[0]
            result = defs.resolve_job_def("monthly").execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=request_tags(request),
                raise_on_error=False, run_config=QUIET_LOGS)
            assert not result.success
            assert instance.get_run_by_id(result.run_id).tags.get(RETRYABLE_TAG) == "true"
            retry = sense(instance, settled)[0]
    finally:
        holder.kill()
        holder.wait()
    assert retry.run_key == request.run_key + ":retry1"
