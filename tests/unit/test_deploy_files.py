"""The deployment files name things that exist: services, the Celery app, settings and storage."""

import importlib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_compose_runs_broker_postgres_dagster_and_celery_workers_of_the_project():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "webserver", "daemon", "worker"}
    worker = services["worker"]["command"]
    app = worker[worker.index("-A") + 1]
    assert hasattr(importlib.import_module(app), "execute_plan")  # the task the Celery executor sends
    assert worker[worker.index("-Q") + 1] == "dagster"
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_env_example_sets_only_settings_the_national_job_reads():
    from pipelines.national.engine import NationalSettings

    names = [line.split("=")[0] for line in (DEPLOY / "env.example").read_text().splitlines() if "=" in line and not line.startswith("#")]
    national = [n.removeprefix("CORE20_NATIONAL_").lower() for n in names if n.startswith("CORE20_NATIONAL_")]
    assert national and set(national) <= set(NationalSettings.model_fields)


def test_instance_keeps_runs_and_events_on_postgres():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert set(instance["storage"]["postgres"]["postgres_db"]) >= {"hostname", "username", "password", "db_name"}
    assert instance["telemetry"]["enabled"] is False
