"""Progress a person can see on long runs: which step is running and how far through the month.

The Dagster UI shows step progress by itself. `core20 run` executes the same job in-process,
so it gets a Dagster logger that turns the run's step events into one line per step:

    [3/11] population/patient_deprivation ...
           done in 2.1 s

Only step names and timings are printed: step events carry no data values.
"""

from __future__ import annotations

import logging
import sys
import time

import dagster as dg

PROGRESS_LOGGER = "core20_progress"


def step_label(step_key: str) -> str:
    """Return the asset-style name of a step key (Dagster joins key parts with '__').

    Examples:
        >>> step_label("population__patient_deprivation")
        'population/patient_deprivation'
        >>> step_label("staging_extract")
        'staging_extract'
    """
    return step_key.replace("__", "/")


class StepProgressHandler(logging.Handler):
    """Print a numbered line when a step starts and its duration when it ends."""

    def __init__(self, n_steps: int, stream=None):
        super().__init__(level=logging.DEBUG)
        self.n_steps = n_steps
        self.stream = stream or sys.stdout
        self.n_started = 0
        self.started_at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        # Dagster attaches the structured event to each record it logs (`dagster_meta`);
        # records without one (plain messages) are not progress.
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None or not event.step_key:
            return
        kind, step = event.event_type_value, event.step_key
        if kind == "STEP_START":
            self.n_started += 1
            self.started_at[step] = time.perf_counter()
            self._write(f"  [{self.n_started}/{self.n_steps}] {step_label(step)} ...")
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            elapsed = time.perf_counter() - self.started_at.get(step, time.perf_counter())
            word = "done" if kind == "STEP_SUCCESS" else "FAILED"
            self._write(f"  {'':>{len(str(self.n_steps)) * 2 + 3}}{word} in {elapsed:.1f} s")
        elif kind == "STEP_SKIPPED":
            self._write(f"  {'':>{len(str(self.n_steps)) * 2 + 3}}{step_label(step)} skipped (an upstream gate blocked it)")

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


@dg.logger(
    config_schema={"n_steps": dg.Field(int, default_value=0, description="steps in the run, for the [i/n] counter")},
    description="One line per step start and end, for `core20 run` (names and timings only).",
)
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger(PROGRESS_LOGGER, level=logging.DEBUG)
    logger.addHandler(StepProgressHandler(init_context.logger_config["n_steps"]))
    return logger


def progress_run_config(n_steps: int) -> dict:
    """Return run config that replaces the console log with the progress lines."""
    return {"loggers": {PROGRESS_LOGGER: {"config": {"n_steps": n_steps}}}}
