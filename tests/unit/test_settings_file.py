"""core20.toml: precedence, validation messages, the template `core20 init` writes, hints."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from pipelines import settings_file
from pipelines.settings_file import SettingsError


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Return a writer of a settings file that becomes the one in force."""
    for key in settings_file.all_keys().values():
        if key.env:
            monkeypatch.delenv(key.env, raising=False)

    def write(text: str, name: str = "core20.toml") -> Path:
        path = tmp_path / "ics" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv(settings_file.SETTINGS_ENV, str(path))
        return path

    return write


def test_flag_beats_variable_beats_file_beats_default(settings, monkeypatch, tmp_path):
    monkeypatch.setenv(settings_file.SETTINGS_ENV, "none")
    assert settings_file.warehouse_path() == settings_file.DEFAULT_WAREHOUSE
    file = settings('[paths]\nwarehouse = "w/file.duckdb"\n')
    assert settings_file.warehouse_path() == file.parent / "w" / "file.duckdb"  # relative to the file's folder
    monkeypatch.setenv("CORE20_WAREHOUSE", str(tmp_path / "env.duckdb"))
    assert settings_file.warehouse_path() == tmp_path / "env.duckdb"
    assert settings_file.warehouse_path(str(tmp_path / "flag.duckdb")) == tmp_path / "flag.duckdb"


def test_every_location_and_choice_reads_the_file(settings, tmp_path):
    from pipelines.resources import ExtractSource, PipelineSettings, ServingOutputs, Warehouse
    from pipelines.schedules import OperationsSettings
    from reference_data.loader import resolve_reference_dir

    (tmp_path / "ref").mkdir()
    file = settings(
        '[paths]\nwarehouse = "w.duckdb"\nextracts = "in"\nserving = "out/serving"\nreports = "out/reports"\n'
        f'reference_dir = "{tmp_path / "ref"}"\ncolumn_mapping = "map.yaml"\ndefinitions = "defs"\n'
        'powerbi_parquet_folder = \'\\\\server\\share\'\n'
        '[choices]\ndisclosure_profile = "midpoint6"\nmin_decile_match_rate = 0.9\nprimary_imd_vintage = "IMD2019"\n'
        '[schedule]\nrun_day = 9\nsettle_seconds = 30\n'
    )
    here = file.parent
    assert Warehouse().file() == here / "w.duckdb"
    assert ExtractSource().root_path() == here / "in"
    assert ExtractSource().mapping_path() == here / "map.yaml"
    assert resolve_reference_dir() == tmp_path / "ref"
    outputs = ServingOutputs()
    assert (outputs.serving_path(), outputs.reports_path()) == (here / "out" / "serving", here / "out" / "reports")
    assert outputs.restricted_path() == here / "w-restricted"
    assert outputs.powerbi_folder() == "\\\\server\\share"
    assert (OperationsSettings().day(), OperationsSettings().settle()) == (9, 30)
    chosen = PipelineSettings(**settings_file.choices())
    assert (chosen.disclosure_profile, chosen.min_decile_match_rate, chosen.primary_imd_vintage) == ("midpoint6", 0.9, "IMD2019")
    assert chosen.definitions_path() == here / "defs"
    # A flag still wins over the file.
    assert PipelineSettings(**settings_file.choices({"disclosure_profile": "opensafely_redact_le7_round_5"})).disclosure_profile \
        == "opensafely_redact_le7_round_5"


def test_the_dagster_definitions_read_the_same_file(settings):
    from pipelines.definitions import build_definitions

    settings('[choices]\ndisclosure_profile = "midpoint6"\nmax_quarantine_share = 0.05\n[schedule]\nrun_day = 11\n')
    defs = build_definitions()
    resources = defs.resources
    assert resources["settings"].disclosure_profile == "midpoint6"
    assert resources["settings"].max_quarantine_share == 0.05
    assert resources["operations"].day() == 11


def test_outputs_follow_a_warehouse_chosen_above_them(settings, tmp_path, monkeypatch):
    settings('[paths]\nwarehouse = "prod/core20.duckdb"\nserving = "prod/serving"\nreports = "prod/reports"\n')
    here = tmp_path / "ics"
    # Warehouse and folders from the same file: the file's folders.
    assert settings_file.output_path("serving") == here / "prod" / "serving"
    # A warehouse given by flag or variable never writes into the file's (production) folders.
    test = tmp_path / "test.duckdb"
    assert settings_file.output_path("serving", None, str(test)) == tmp_path / "test-serving"
    assert settings_file.output_path("reports", None, str(test)) == tmp_path / "test-reports"
    monkeypatch.setenv("CORE20_WAREHOUSE", str(test))
    assert settings_file.output_path("serving") == tmp_path / "test-serving"
    # Unless the folder is chosen as strongly as the warehouse.
    assert settings_file.output_path("serving", str(tmp_path / "mine"), str(test)) == tmp_path / "mine"


def test_the_default_warehouse_keeps_its_established_folders(settings, monkeypatch):
    monkeypatch.setenv(settings_file.SETTINGS_ENV, "none")
    data = settings_file.REPO_ROOT / "data"
    assert settings_file.output_path("serving") == data / "serving"
    assert settings_file.output_path("reports") == data / "reports"
    beside = settings_file.output_path("serving", None, str(settings_file.DEFAULT_WAREHOUSE.parent / "test.duckdb"))
    assert beside == data / "warehouse" / "test-serving"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[paths]\nwarehose = "x.duckdb"\n', "unknown key 'paths.warehose' (did you mean 'warehouse'?)"),
        ('[path]\nwarehouse = "x.duckdb"\n', "unknown section [path] (did you mean 'paths'?)"),
        ('[choices]\nmin_decile_match_rate = 95\n', "key 'choices.min_decile_match_rate': expected a share between 0 and 1"),
        ('[choices]\ndisclosure_profile = "round5"\n', "key 'choices.disclosure_profile': expected one of 'nhs_suppress_1_7_round_5'"),
        ('[choices]\npractice_fallback = "yes"\n', "key 'choices.practice_fallback': expected true or false"),
        ('[schedule]\nrun_day = 31\n', "key 'schedule.run_day': expected a day from 1 to 28"),
        ('[paths]\nwarehouse = 3\n', "key 'paths.warehouse': expected a quoted path"),
        ("[paths]\nwarehouse = data/w.duckdb\n", "not valid TOML"),
        ('paths = "x"\n', "'paths' must be a section"),
    ],
)
def test_a_wrong_file_is_refused_naming_file_key_and_expectation(settings, text, expected):
    path = settings(text)
    with pytest.raises(SettingsError) as caught:
        settings_file.load()
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_every_problem_is_listed_at_once(settings):
    settings('[paths]\nwarehose = "x"\n[choices]\nsii_seed = "a"\n')
    with pytest.raises(SettingsError) as caught:
        settings_file.load()
    assert len(str(caught.value).splitlines()) == 2


def test_a_named_file_that_is_missing_says_how_to_create_it(monkeypatch, tmp_path):
    monkeypatch.setenv(settings_file.SETTINGS_ENV, str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="does not exist: create it with .* init --settings"):
        settings_file.load()


def test_the_template_explains_and_accepts_every_key(settings):
    text = settings_file.template()
    lines = text.splitlines()
    for dotted, key in settings_file.all_keys().items():
        (at,) = [i for i, line in enumerate(lines) if line.lstrip("# ").startswith(f"{key.name} = ")]
        assert lines[at - 1].startswith("# ") and len(lines[at - 1]) > 3, f"{dotted} has no comment"
        if key.env:
            assert key.env in "\n".join(lines[max(0, at - 8):at]), f"{dotted}: its variable is not named"
    # Uncommenting every optional key keeps the file valid.
    settings("\n".join(line[2:] if line.startswith("# ") and " = " in line else line for line in lines))
    values = settings_file.load()
    assert set(values) == set(settings_file.all_keys())


def test_every_pipeline_setting_is_a_key():
    from pipelines.resources import PipelineSettings

    keys = {key.name for key in settings_file.choice_keys()}
    assert keys == set(PipelineSettings.model_fields) - {"definitions_dir"}
    assert all(not key.help.startswith(key.name) for key in settings_file.choice_keys())  # documented, not just named


def test_a_hint_names_the_warehouse_only_when_a_bare_command_would_miss_it(settings, monkeypatch, tmp_path):
    monkeypatch.setenv(settings_file.SETTINGS_ENV, "none")
    default = settings_file.DEFAULT_WAREHOUSE
    assert settings_file.hint("quality", default, month="2026-10").endswith("quality --month 2026-10")
    other = tmp_path / "a folder" / "w.duckdb"
    words = shlex.split(settings_file.hint("quality", other, month="2026-10"))
    assert words[1:] == ["quality", "--month", "2026-10", "--warehouse", str(other)]


def _commands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from _commands(command, (*prefix, name))
            return
    yield prefix, parser


def test_every_command_and_option_has_help():
    from pipelines.cli import build_parser

    commands = list(_commands(build_parser()))
    assert {" ".join(name) for name, _ in commands} >= {"run", "quality", "imd", "explain", "diff-definitions", "init",
                                                         "synth", "dictionary", "reference fetch"}
    for name, command in commands:
        assert command.description, f"core20 {' '.join(name)} --help has no description"
        for action in command._actions:
            assert action.help and len(action.help) > 10, f"core20 {' '.join(name)}: {action.option_strings or action.dest} has no help"
        assert any("--settings" in action.option_strings for action in command._actions), name


def _cli(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    from pipelines import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(list(args))
    return code, out.getvalue()


def test_init_writes_a_file_every_command_accepts_and_will_not_overwrite_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(settings_file.SETTINGS_ENV, raising=False)
    code, output = _cli("init", "--warehouse", "w/core20.duckdb")
    target = tmp_path / "core20.toml"
    assert code == 0 and str(target) in output
    assert f'warehouse = "{tmp_path / "w" / "core20.duckdb"}"' in target.read_text()
    assert settings_file.warehouse_path() == tmp_path / "w" / "core20.duckdb"  # found in the folder it starts from
    code, output = _cli("init")
    assert code == 1 and "already exists" in output and "--force" in output
    assert _cli("init", "--force")[0] == 0


def test_a_wrong_settings_file_stops_every_command_with_its_message(tmp_path, monkeypatch):
    bad = tmp_path / "core20.toml"
    bad.write_text('[choices]\ndisclosure_profile = "none"\n')
    for command in (["quality"], ["run", "--month", "2026-10"], ["explain", "--patient", "p", "--month", "2026-10"]):
        code, output = _cli(*command, "--settings", str(bad))
        assert code == 1, command
        assert f"core20 {command[0]}: {bad}: key 'choices.disclosure_profile': expected one of" in output
        assert "Traceback" not in output


def test_hints_in_error_messages_parse_as_commands_and_name_the_warehouse(tmp_path, monkeypatch):
    from pipelines.cli import build_parser

    monkeypatch.setenv(settings_file.SETTINGS_ENV, "none")
    missing = tmp_path / "nowhere.duckdb"
    outputs = [_cli("explain", "--patient", "p", "--month", "2026-10", "--warehouse", str(missing))[1],
               _cli("quarantine", "--month", "2026-10", "--warehouse", str(missing))[1],
               _cli("run", "--extract", str(tmp_path), "--warehouse", str(missing))[1]]
    hints = [hint for text in outputs for hint in __import__("re").findall(r"`(core20 [^`]*)`", text)]
    assert len(hints) == 3, outputs
    for hint in hints:
        words = shlex.split(hint)
        build_parser().parse_args(words[1:])  # a command core20 accepts as printed
    assert all(str(missing) in hint for hint in hints[:2])
    assert shlex.split(hints[2])[1:] == ["synth", "--out", str(tmp_path)]


def test_a_command_given_settings_leaves_the_environment_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv(settings_file.SETTINGS_ENV, "none")
    file = tmp_path / "core20.toml"
    file.write_text('[paths]\nwarehouse = "w.duckdb"\n')
    code, output = _cli("quality", "--settings", str(file))
    assert code == 0 and str(tmp_path / "w.duckdb") in output
    assert settings_file.warehouse_path() == settings_file.DEFAULT_WAREHOUSE
