"""Session-wide test settings."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def outputs_outside_the_checkout(tmp_path_factory):
    """Send serving snapshots and reports of runs that do not choose a place to a temporary folder.

    Pipeline runs write them after every published month; without this, tests that only
    pass --warehouse would fill the checkout's data/ folder. Subprocesses inherit it.
    """
    root = tmp_path_factory.mktemp("outputs")
    saved = {name: os.environ.get(name) for name in ("CORE20_SERVING", "CORE20_REPORTS")}
    os.environ["CORE20_SERVING"] = str(root / "serving")
    os.environ["CORE20_REPORTS"] = str(root / "reports")
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
