"""Progress a person can see on long runs: which step is running and how far through the month.

The Dagster UI shows step progress by itself. `core20 run` executes the same job in-process,
so it gets a Dagster logger that turns the run's step events into progress:

- on a terminal, a live bar (rich): steps done of the month's steps, the running step with
  a spinner and its elapsed time ticking, so a 30-second step is visibly alive; each finished
  step stays above the bar as a line;
- anywhere else (CI logs, a pipe, a file, `TERM=dumb`, `$CI` set), plain lines with no
  control characters, one when a step starts and one when it ends:

      [3/11] population/patient_deprivation ...
             done in 2.1 s

`CORE20_PROGRESS=plain` or `=live` chooses explicitly. Only step names and timings are
printed - never a log message's text - so no data value can reach the screen from here.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import dagster as dg

PROGRESS_LOGGER = "core20_progress"
PROGRESS_ENV = "CORE20_PROGRESS"
RUN_END = {"PIPELINE_SUCCESS", "PIPELINE_FAILURE", "PIPELINE_CANCELED"}


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
        # records without one (plain messages) are not progress. Only the event's type and
        # step key are read: a record's message text is never printed.
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            return
        if event.event_type_value in RUN_END:
            self.close()
            return
        if not event.step_key:
            return
        self.step_event(event.event_type_value, event.step_key)

    def step_event(self, kind: str, step: str) -> None:
        """Show a step starting, ending, failing or being skipped."""
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


class LiveProgressHandler(StepProgressHandler):
    """A live bar on a terminal (rich): steps done of all, the running step and its clock.

    rich redraws the bar from its own thread several times a second, so the elapsed time
    of a long step keeps moving although Dagster sends no event until the step ends.
    """

    def __init__(self, n_steps: int, stream=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        super().__init__(n_steps, stream)
        console = Console(file=self.stream, highlight=False)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
        )
        self.overall = self.progress.add_task("steps", total=n_steps or None)
        self.running: dict[str, int] = {}
        self.n_finished = 0

    def step_event(self, kind: str, step: str) -> None:
        # Started at the first step, not when Dagster builds the logger: it builds one per
        # context, and a display that never gets an event would fight the live one.
        if not self.progress.live.is_started:
            self.progress.start()
        if kind == "STEP_START":
            self.n_started += 1
            self.started_at[step] = time.perf_counter()
            self.running[step] = self.progress.add_task(f"  {step_label(step)}", total=None)
            return
        task = self.running.pop(step, None)
        if task is not None:
            self.progress.remove_task(task)
        elapsed = time.perf_counter() - self.started_at.get(step, time.perf_counter())
        word = {"STEP_SUCCESS": f"done in {elapsed:.1f} s", "STEP_FAILURE": f"FAILED after {elapsed:.1f} s",
                "STEP_SKIPPED": "skipped (an upstream gate blocked it)"}.get(kind)
        if word is None:
            return
        self.n_finished += 1
        self.progress.advance(self.overall)
        self.progress.console.print(f"  [{self.n_finished}/{self.n_steps}] {step_label(step)} {word}", markup=False)

    def _write(self, line: str) -> None:
        self.progress.console.print(line, markup=False)

    def close(self) -> None:
        """Stop the live display (the run ended), leaving the finished-step lines on screen."""
        if self.progress.live.is_started:
            self.progress.stop()
        super().close()


def is_live_terminal(stream) -> bool:
    """Return whether progress on `stream` may redraw in place (a real terminal, not CI or a pipe).

    Examples:
        >>> import io
        >>> is_live_terminal(io.StringIO())
        False
    """
    chosen = os.environ.get(PROGRESS_ENV, "").lower()
    if chosen in ("plain", "live"):
        return chosen == "live"
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM", "") != "dumb" and not os.environ.get("CI")


_OPEN: list[StepProgressHandler] = []


def make_handler(n_steps: int, stream=None) -> StepProgressHandler:
    """Return the live handler on a terminal, else the plain one."""
    stream = stream or sys.stdout
    handler = LiveProgressHandler(n_steps, stream) if is_live_terminal(stream) else StepProgressHandler(n_steps, stream)
    _OPEN.append(handler)
    return handler


def close_all() -> None:
    """Stop every live display still open (a run that ended without a run-end event)."""
    while _OPEN:
        _OPEN.pop().close()


@dg.logger(
    config_schema={"n_steps": dg.Field(int, default_value=0, description="steps in the run, for the [i/n] counter")},
    description="Step progress for `core20 run`: a live bar on a terminal, plain lines elsewhere (names and timings only).",
)
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger(PROGRESS_LOGGER, level=logging.DEBUG)
    logger.addHandler(make_handler(init_context.logger_config["n_steps"]))
    return logger


def progress_run_config(n_steps: int) -> dict:
    """Return run config that replaces the console log with the progress lines."""
    return {"loggers": {PROGRESS_LOGGER: {"config": {"n_steps": n_steps}}}}
