"""Progress on long runs: a live bar on a terminal, plain lines in logs, never a data value."""

from __future__ import annotations

import io
import logging
import time

import pytest

from pipelines import progress


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Event:
    def __init__(self, kind: str, step: str | None = None):
        self.event_type_value, self.step_key = kind, step


def _record(message: str, event=None) -> logging.LogRecord:
    record = logging.LogRecord("dagster", logging.INFO, __file__, 1, message, None, None)
    record.dagster_meta = {"dagster_event": event} if event is not None else {}
    return record


def _a_run(handler) -> None:
    handler.emit(_record("secret message: patient P-0001 at NG7 2UH"))  # a plain log line
    handler.emit(_record("step started for patient P-0001", Event("STEP_START", "population__patient_deprivation")))
    time.sleep(0.3)
    handler.emit(_record("materialised rows of P-0001", Event("STEP_SUCCESS", "population__patient_deprivation")))
    handler.emit(_record("P-0001", Event("STEP_START", "staging_extract")))
    handler.emit(_record("P-0001", Event("STEP_FAILURE", "staging_extract")))
    handler.emit(_record("run done", Event("PIPELINE_FAILURE")))


@pytest.fixture
def a_terminal(monkeypatch):
    for name in (progress.PROGRESS_ENV, "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def test_logs_and_pipes_get_plain_lines_without_control_characters(a_terminal):
    stream = io.StringIO()
    handler = progress.make_handler(2, stream)
    assert type(handler) is progress.StepProgressHandler
    _a_run(handler)
    text = stream.getvalue()
    assert text.splitlines() == [
        "  [1/2] population/patient_deprivation ...",
        text.splitlines()[1],
        "  [2/2] staging_extract ...",
        text.splitlines()[3],
    ]
    assert text.splitlines()[1].strip().startswith("done in") and text.splitlines()[3].strip().startswith("FAILED in")
    assert "\x1b" not in text and "P-0001" not in text and "NG7" not in text


def test_a_terminal_gets_a_live_bar_that_ends_with_the_run(a_terminal):
    stream = Terminal()
    handler = progress.make_handler(2, stream)
    assert isinstance(handler, progress.LiveProgressHandler)
    _a_run(handler)
    assert not handler.progress.live.is_started  # the run-end event stopped the live display
    text = stream.getvalue()
    assert "\x1b[" in text  # redrawn in place
    assert "[1/2] population/patient_deprivation done in" in text and "[2/2] staging_extract FAILED after" in text
    assert "P-0001" not in text and "NG7" not in text


@pytest.mark.parametrize(("env", "value"), [("CI", "true"), ("TERM", "dumb"), (progress.PROGRESS_ENV, "plain")])
def test_ci_dumb_terminals_and_the_plain_choice_get_lines(a_terminal, monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    assert not progress.is_live_terminal(Terminal())


def test_live_can_be_chosen_and_every_live_display_is_closed(a_terminal, monkeypatch):
    monkeypatch.setenv(progress.PROGRESS_ENV, "live")
    handler = progress.make_handler(3, Terminal())
    handler.emit(_record("", Event("STEP_START", "a")))
    progress.close_all()  # a run that ended without its run-end event
    assert not handler.progress.live.is_started
