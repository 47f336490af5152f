"""The schedule, the extract sensor and the Dagster instance settings that make them safe."""

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import build_definitions
from pipelines.resources import ExtractSource
from pipelines.schedules import (
    FINGERPRINT_TAG,
    OperationsSettings,
    monthly_schedule,
    new_extract_sensor,
)

REPO = Path(__file__).resolve().parents[2]


def write_extract(root: Path, month: str, age_seconds: float = 3600) -> Path:
    folder = root / month
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("patients.csv", "events.csv"):
        (folder / name).write_text("patient_id\n")
        stamp = time.time() - age_seconds
        os.utime(folder / name, (stamp, stamp))
    return folder


def schedule_at(day: dt.datetime, root: Path, instance: dg.DagsterInstance, run_day: int = 5):
    # Entered as a context manager so the instance it opens is closed again.
    with dg.build_schedule_context(
        scheduled_execution_time=day, instance=instance,
        resources={"operations": OperationsSettings(run_day=run_day), "extracts": ExtractSource(root=str(root))},
    ) as context:
        return monthly_schedule(context)


def sense(root: Path, instance: dg.DagsterInstance, settle_seconds: int = 60):
    with dg.build_sensor_context(
        instance=instance,
        resources={"operations": OperationsSettings(settle_seconds=settle_seconds), "extracts": ExtractSource(root=str(root))},
    ) as context:
        return new_extract_sensor(context)


def test_schedule_runs_the_previous_month_on_the_configured_day_only(tmp_path):
    write_extract(tmp_path, "2026-09")
    with dg.instance_for_test() as instance:
        skipped = schedule_at(dt.datetime(2026, 10, 4, 6), tmp_path, instance)
        assert isinstance(skipped, dg.SkipReason) and "day 5" in skipped.skip_message
        request = schedule_at(dt.datetime(2026, 10, 5, 6), tmp_path, instance)
        assert isinstance(request, dg.RunRequest) and request.partition_key == "2026-09-01"
        assert request.tags[FINGERPRINT_TAG]
        other_day = schedule_at(dt.datetime(2026, 10, 12, 6), tmp_path, instance, run_day=12)
        assert isinstance(other_day, dg.RunRequest) and other_day.partition_key == "2026-09-01"


def test_schedule_waits_for_a_missing_extract(tmp_path):
    with dg.instance_for_test() as instance:
        result = schedule_at(dt.datetime(2026, 11, 5, 6), tmp_path, instance)
    assert isinstance(result, dg.SkipReason) and "no extract for 2026-10" in result.skip_message


def test_run_day_outside_1_to_28_is_refused():
    with pytest.raises(ValueError, match="from 1 to 28"):
        OperationsSettings(run_day=31).day()


def test_sensor_requests_new_folders_and_re_sent_extracts_but_not_unsettled_or_incomplete_ones(tmp_path):
    write_extract(tmp_path, "2026-08")
    write_extract(tmp_path, "2026-09", age_seconds=5)  # still being copied
    (tmp_path / "2026-07").mkdir()
    (tmp_path / "2026-07" / "patients.csv").write_text("patient_id\n")  # events missing
    with dg.instance_for_test() as instance:
        requests = sense(tmp_path, instance)
        assert [r.partition_key for r in requests] == ["2026-08-01"]
        first_key = requests[0].run_key

        again = sense(tmp_path, instance)
        assert [r.run_key for r in again] == [first_key]  # same files, same key: Dagster will not rerun

        time.sleep(0.01)
        write_extract(tmp_path, "2026-08")  # re-sent: new modification times
        (tmp_path / "2026-08" / "events.csv").write_text("patient_id\nresent\n")
        stamp = time.time() - 3600
        os.utime(tmp_path / "2026-08" / "events.csv", (stamp, stamp))
        resent = sense(tmp_path, instance)
        assert resent[0].partition_key == "2026-08-01" and resent[0].run_key != first_key


def test_schedule_skips_a_month_the_sensor_already_ran_from_the_same_files(tmp_path):
    write_extract(tmp_path, "2026-09")
    with dg.instance_for_test() as instance:
        request = sense(tmp_path, instance)[0]
        instance.add_run(dg.DagsterRun(
            job_name="monthly", run_id="r1", status=dg.DagsterRunStatus.SUCCESS,
            tags={"dagster/partition": request.partition_key, FINGERPRINT_TAG: request.tags[FINGERPRINT_TAG]},
        ))
        result = schedule_at(dt.datetime(2026, 10, 5, 6), tmp_path, instance)
    assert isinstance(result, dg.SkipReason) and "already run" in result.skip_message


def test_definitions_carry_the_schedule_sensor_and_a_backfillable_monthly_job():
    defs = build_definitions()
    job = defs.resolve_job_def("monthly")
    assert job.partitions_def is not None and job.partitions_def.get_partition_keys()[0] == "2020-04-01"
    assert defs.resolve_schedule_def("monthly_previous_month").job_name == "monthly"
    assert defs.resolve_sensor_def("new_extract").job_name == "monthly"


def test_dagster_yaml_queues_runs_one_at_a_time_and_keeps_history_in_dagster_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "instance" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.get_run_queue_config().max_concurrent_runs == 1
        instance.add_run(dg.DagsterRun(job_name="monthly", run_id="persisted", status=dg.DagsterRunStatus.SUCCESS))
    with dg.DagsterInstance.from_config(str(home)) as reopened:
        assert reopened.get_run_by_id("persisted") is not None
    assert any((home / "history").glob("*.db"))


def test_instances_opened_above_leave_definitions_loadable():
    test_definitions_carry_the_schedule_sensor_and_a_backfillable_monthly_job()
