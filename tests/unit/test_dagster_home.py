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
