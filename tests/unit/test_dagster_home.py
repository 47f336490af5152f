"""$DAGSTER_HOME as an analyst writes it: relative, missing, or pointing at a file."""

import pytest

from pipelines import runner


def test_a_relative_dagster_home_is_resolved_against_the_working_directory_and_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", "history")
    home = runner.dagster_home()
    assert home == tmp_path / "history" and home.is_dir()
    assert runner.os.environ["DAGSTER_HOME"] == str(tmp_path / "history")
    assert f"using {tmp_path / 'history'}" in capsys.readouterr().out


def test_an_unset_dagster_home_means_no_persistent_history(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert runner.dagster_home() is None


def test_a_file_as_dagster_home_is_refused_with_what_was_expected(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "afile"))
    with pytest.raises(runner.InstanceError, match="is a file; expected a folder for the run history"):
        runner.dagster_home()


def test_sqlite_sync_settings_of_the_instance_files(tmp_path, monkeypatch):
    """A run's own event log skips fsync; the shared WAL-mode files sync at checkpoints only
    (NORMAL, safe from corruption in WAL mode) and are kept open by the command until it ends;
    a file still in rollback mode keeps SQLite's full sync."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    monkeypatch.delenv(runner.RUN_LOG_SYNC_ENV, raising=False)
    runner._unsynced_run_logs()
    runs = tmp_path / "history" / "runs"
    runs.mkdir(parents=True)

    def synchronous(path, wal: bool) -> int:
        engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
        if wal:
            with engine.connect() as con:
                con.execute(text("pragma journal_mode = wal"))
        with engine.connect() as con:
            value = con.execute(text("pragma synchronous")).scalar()
        engine.dispose()
        return value

    try:
        assert synchronous(runs / "0f1e2d3c-run.db", wal=False) == 0  # OFF
        assert synchronous(runs / "index.db", wal=True) == 1  # NORMAL
        assert str(runs / "index.db") in runner._KEPT_OPEN
        assert synchronous(tmp_path / "history" / "runs.db", wal=False) == 2  # FULL: not in WAL mode
        assert str(tmp_path / "history" / "runs.db") not in runner._KEPT_OPEN
    finally:
        runner.close_instances()
    assert not runner._KEPT_OPEN


def test_one_command_opens_its_dagster_instance_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    try:
        first = runner._instance()
        assert runner._instance() is first
    finally:
        runner.close_instances()
    assert not runner._OPEN_INSTANCES
