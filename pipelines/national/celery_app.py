"""The Celery app the national job's workers run: `celery -A pipelines.national.celery_app worker -Q dagster`.

Broker and result backend come from CORE20_CELERY_BROKER / CORE20_CELERY_BACKEND (default
a Redis on localhost), the same variables the job's executor reads, so workers and the run
agree. One task at a time per worker process and no prefetching: an ICB month is minutes of
work and several GB at full size, so a worker must not reserve a second one while busy.
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

from pipelines.national.engine import broker_url, backend_url

app = make_app({"broker": broker_url(), "backend": backend_url()})
app.conf.update(worker_prefetch_multiplier=1, task_acks_late=True, worker_concurrency=1)

execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
