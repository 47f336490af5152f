"""Session-wide test settings."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def outputs_outside_the_checkout(tmp_path_factory):
    """Send serving snapshots and reports of runs that do not choose a place to a temporary folder.

    Runs on a warehouse given by flag write beside it; runs on the default warehouse would
    fill the checkout's data/ folder without this. Subprocesses inherit it.
    """
    root = tmp_path_factory.mktemp("outputs")
    saved = {name: os.environ.get(name) for name in ("CORE20_SERVING", "CORE20_REPORTS", "CORE20_SETTINGS", "CORE20_CACHE_DIR")}
    os.environ["CORE20_SERVING"] = str(root / "serving")
    os.environ["CORE20_REPORTS"] = str(root / "reports")
    # A developer's own core20.toml in the checkout must not change what the tests see.
    os.environ["CORE20_SETTINGS"] = "none"
    # The GX suite-validation cache starts empty, so each session validates every suite with GX
    # (and cross-checks the project's engine against GX on its first run of each suite).
    os.environ["CORE20_CACHE_DIR"] = str(root / "cache")
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
