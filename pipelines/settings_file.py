"""`core20.toml`: one settings file that says how this ICS runs core20plus5.

Every path and choice the pipeline takes is one key here, and every key can be given four
ways. The first one present wins:

    1. a command-line flag            (`core20 run --warehouse ...`, Dagster run config)
    2. an environment variable        (`CORE20_WAREHOUSE=...`)
    3. the settings file              (`[paths] warehouse = "..."` in core20.toml)
    4. the built-in default           (`data/warehouse/core20plus5.duckdb`)

The settings file is `--settings PATH`, else `$CORE20_SETTINGS`, else `core20.toml` in the
folder the command runs from (the checkout root for `make run` and `make dev`), else none.
Relative paths in the file are read from the file's own folder, so the file can move with
its data; relative paths in a flag or variable are read from the working directory.

Serving snapshots, reports and restricted exports belong to one warehouse. Unless set, they
sit beside it (`<folder>/<name>-serving/`, `-reports/`, `-restricted/`; the default
warehouse keeps the established `data/serving`, `data/reports`, `data/restricted`). A folder
set at a weaker level than the warehouse does not follow a warehouse chosen at a stronger
one: `core20 run --warehouse /tmp/test.duckdb` with `serving = "/srv/serving"` in the file
writes beside /tmp/test.duckdb, never into the production snapshot.

`core20 init` writes the file with a comment on every key (`template()`); a wrong key,
type or value is refused with the file, the key and what was expected (`SettingsError`).
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS_ENV = "CORE20_SETTINGS"
SETTINGS_NAME = "core20.toml"
DEFAULT_WAREHOUSE = REPO_ROOT / "data" / "warehouse" / "core20plus5.duckdb"
SOURCES = ("flag", "env", "file", "default")


class SettingsError(ValueError):
    """The settings file cannot be used; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Key:
    """One setting: where it lives in the file, its variable and flag, what it expects and means."""

    section: str
    name: str
    env: str | None
    flag: str | None
    kind: str  # "path", "text", "int", "share", "bool", "choice", "day"
    help: str
    example: object = None
    choices: tuple[str, ...] = ()

    @property
    def dotted(self) -> str:
        """Return `section.name`, the key as error messages name it."""
        return f"{self.section}.{self.name}"


PATH_KEYS = (
    Key("paths", "warehouse", "CORE20_WAREHOUSE", "--warehouse", "path",
        "The DuckDB warehouse file: staged extracts, gap tables, data-quality and lineage history. "
        "One writer at a time.", "data/warehouse/core20plus5.duckdb"),
    Key("paths", "extracts", "CORE20_EXTRACTS", "--extract", "path",
        "Where monthly extracts arrive: a folder of YYYY-MM/ folders (each with patients and events files), "
        "or one extract folder. The extract sensor watches it.", "data/extracts"),
    Key("paths", "serving", "CORE20_SERVING", "--serving", "path",
        "Serving snapshots Power BI reads (serving/current/). Default: beside the warehouse "
        "(data/serving for the default warehouse, else <warehouse folder>/<name>-serving).", "data/serving"),
    Key("paths", "reports", "CORE20_REPORTS", "--reports", "path",
        "Monthly HTML reports. Default: beside the warehouse (data/reports, else <name>-reports).", "data/reports"),
    Key("paths", "restricted", "CORE20_RESTRICTED", "--restricted", "path",
        "Restricted, owner-only folder for row-level exports (quarantined rows to send back to a supplier). "
        "Never served, published or reported. Default: beside the warehouse (data/restricted, else <name>-restricted).",
        "data/restricted"),
    Key("paths", "reference_dir", "CORE20_REFERENCE_DIR", "--reference-dir", "path",
        "The shared national reference data (IMD, postcode lookups, boundaries, codelists), checked by sha256 "
        "against reference_data/manifest.yaml.", "../shared/reference_data"),
    Key("paths", "reference_source", "CORE20_REFERENCE_SOURCE", "--source", "text",
        "Base URL of a mirror of the pinned reference files, for `core20 reference fetch`. Default: none (only files "
        "with a public exact-bytes address can be fetched).", "https://mirror.example.nhs.uk/core20/reference"),
    Key("paths", "column_mapping", "CORE20_COLUMN_MAPPING", "--column-mapping", "path",
        "A column_mapping.yaml naming the supplier's headers, date format and sex codes. Default: the "
        "column_mapping.yaml inside each extract folder, if any.", "column_mapping.yaml"),
    Key("paths", "definitions", "CORE20_DEFINITIONS", "--definitions", "path",
        "The ICS configuration: the folder of ics.yaml (the ICS's PLUS groups and focus cohorts), cohorts.yaml, "
        "registers.yaml and indicators.yaml. Default: the shipped reference_data/definitions.",
        "reference_data/definitions"),
    Key("paths", "powerbi_parquet_folder", "CORE20_POWERBI_PARQUET_FOLDER", None, "text",
        "The serving Parquet folder as Power BI Desktop and the gateway see it (the generated model's "
        "ParquetFolder parameter). Default: serving/current/parquet as this machine sees it.",
        r"\\analytics-server\core20\serving\current\parquet"),
)

SCHEDULE_KEYS = (
    Key("schedule", "run_day", "CORE20_RUN_DAY", None, "day",
        "Day of the month (1-28) the schedule runs the previous month.", 5),
    Key("schedule", "settle_seconds", "CORE20_EXTRACT_SETTLE_SECONDS", None, "int",
        "An arriving extract folder runs only once none of its files has changed for this many seconds "
        "(so a copy in progress is never read half-written).", 120),
)

# The ICS choices and thresholds that change figures: exactly the fields of
# pipelines.resources.PipelineSettings (except the definitions folder, a path above). The
# template's comments are taken from that class's docstring, so a new setting is
# documented in one place.
CHOICES_SECTION = "choices"
ENUMS = {
    "primary_imd_vintage": ("IMD2019", "IMD2025"),
    "disclosure_profile": ("nhs_suppress_1_7_round_5", "opensafely_redact_le7_round_5", "midpoint6"),
    "spc_window_policy": ("non_overlapping", "monthly_with_caveat"),
}
CHOICE_FLAGS = {
    "primary_imd_vintage": "--primary-vintage", "disclosure_profile": "--disclosure-profile",
    "min_decile_match_rate": "--min-match-rate", "min_practice_address_rate": "--min-practice-address-rate",
    "max_quarantine_share": "--max-quarantine-share",
}


def _pipeline_fields() -> dict:
    from pipelines.resources import PipelineSettings

    return {name: field for name, field in PipelineSettings.model_fields.items() if name != "definitions_dir"}


def _attribute_docs() -> dict[str, str]:
    """Return each PipelineSettings attribute's description from its docstring."""
    from pipelines.resources import PipelineSettings

    docs: dict[str, str] = {}
    current = None
    for line in (PipelineSettings.__doc__ or "").splitlines():
        match = re.match(r"^\s{8}(\w+): (.*)$", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and re.match(r"^\s{12}\S", line):
            docs[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return docs


def choice_keys() -> tuple[Key, ...]:
    """Return the [choices] keys, one per PipelineSettings field."""
    docs = _attribute_docs()
    keys = []
    for name, field in _pipeline_fields().items():
        annotation = field.annotation
        kind = ("choice" if name in ENUMS else "bool" if annotation is bool else "int" if annotation is int
                else "share" if annotation is float else "text")
        keys.append(Key(CHOICES_SECTION, name, None, CHOICE_FLAGS.get(name), kind,
                        docs.get(name, name.replace("_", " ")), field.default, ENUMS.get(name, ())))
    return tuple(keys)


def all_keys() -> dict[str, Key]:
    """Return every key the file accepts, by `section.name`."""
    return {key.dotted: key for key in (*PATH_KEYS, *choice_keys(), *SCHEDULE_KEYS)}


# -- finding and reading the file -------------------------------------------------------


def settings_path() -> Path | None:
    """Return the settings file in force: $CORE20_SETTINGS, else ./core20.toml, else None.

    `CORE20_SETTINGS=none` ignores any core20.toml (the tests use it, so a developer's own
    file cannot change their results).

    `--settings PATH` on the command line sets $CORE20_SETTINGS for the run, so the Dagster
    resources of an in-process run read the same file.
    """
    chosen = os.environ.get(SETTINGS_ENV)
    if chosen and chosen.lower() == "none":
        return None
    if chosen:
        path = Path(chosen).expanduser().resolve()
        if not path.is_file():
            raise SettingsError(f"settings file {path} (from {SETTINGS_ENV} or --settings) does not exist: "
                                f"create it with `{program()} init --settings {shlex.quote(str(path))}`, or unset {SETTINGS_ENV}.")
        return path
    local = Path.cwd() / SETTINGS_NAME
    return local.resolve() if local.is_file() else None


_FLAGGED: list[Path] = []


def use_settings(path: str | Path | None) -> None:
    """Make `path` the settings file for this process (the `--settings` flag); hints then name it."""
    _FLAGGED.clear()
    if path:
        chosen = Path(path).expanduser().resolve()
        os.environ[SETTINGS_ENV] = str(chosen)
        _FLAGGED.append(chosen)


def load() -> dict[str, object]:
    """Return the validated settings of the file in force (`section.name` -> value), {} without one."""
    path = settings_path()
    if path is None:
        return {}
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> dict[str, object]:
    del mtime_ns, size  # cache key only: an edited file is read again
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{file}: not valid TOML ({error}). Strings need quotes: warehouse = \"data/w.duckdb\".") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{file}: not UTF-8 text; save it as UTF-8.") from None
    return parse(raw, file)


def parse(raw: dict, file: Path) -> dict[str, object]:
    """Validate a parsed TOML document; return `section.name` -> value (paths made absolute).

    Raises:
        SettingsError: an unknown section or key, or a value of the wrong kind (all problems
            are listed, each with the file, the key and what was expected).
    """
    keys = all_keys()
    sections = sorted({key.section for key in keys.values()})
    problems: list[str] = []
    values: dict[str, object] = {}
    for section, body in raw.items():
        if section not in sections:
            problems.append(f"{file}: unknown section [{section}]{_did_you_mean(section, sections)}; "
                            f"expected one of {', '.join(f'[{s}]' for s in sections)}")
            continue
        if not isinstance(body, dict):
            problems.append(f"{file}: '{section}' must be a section ([{section}] followed by keys); found a {_kind(body)}")
            continue
        names = [k.name for k in keys.values() if k.section == section]
        for name, value in body.items():
            key = keys.get(f"{section}.{name}")
            if key is None:
                problems.append(f"{file}: unknown key '{section}.{name}'{_did_you_mean(name, names)}; "
                                f"[{section}] takes {', '.join(names)}")
                continue
            try:
                values[key.dotted] = _check(key, value, file.parent)
            except ValueError as error:
                problems.append(f"{file}: key '{key.dotted}': {error}")
    if problems:
        raise SettingsError("\n".join(problems))
    return values


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _kind(value) -> str:
    return {str: "text", bool: "true/false", int: "whole number", float: "number", dict: "section",
            list: "list"}.get(type(value), type(value).__name__)


def _check(key: Key, value, base: Path):
    """Return the value checked against the key's kind (paths resolved against `base`)."""
    found = f"found {value!r} ({_kind(value)})"
    if key.kind in ("path", "text"):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"expected a quoted {'path' if key.kind == 'path' else 'text'} such as "
                             f"\"{key.example}\"; {found}")
        return str((base / Path(value).expanduser()).resolve()) if key.kind == "path" else value
    if key.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false (no quotes); {found}")
        return value
    if key.kind == "choice":
        if value not in key.choices:
            raise ValueError(f"expected one of {', '.join(repr(c) for c in key.choices)}; {found}")
        return value
    if key.kind in ("int", "day"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"expected a whole number such as {key.example}; {found}")
        if key.kind == "day" and not 1 <= value <= 28:
            raise ValueError(f"expected a day from 1 to 28 that every month has; {found}")
        return value
    if key.kind == "share":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"expected a share between 0 and 1 such as {key.example} (0.01 = 1%); {found}")
        return float(value)
    raise AssertionError(key.kind)  # pragma: no cover


# -- resolving one value ----------------------------------------------------------------


def resolve(dotted: str, given=None) -> tuple[object, str]:
    """Return (value, source) for a key: the flag, else the variable, else the file, else None.

    Examples:
        >>> resolve("schedule.run_day", 3)
        (3, 'flag')
    """
    key = all_keys()[dotted]
    if given not in (None, ""):
        return given, "flag"
    if key.env and os.environ.get(key.env):
        return os.environ[key.env], "env"
    values = load()
    if dotted in values:
        return values[dotted], "file"
    return None, "default"


def path_value(name: str, given=None, default: Path | None = None) -> Path | None:
    """Return a [paths] key resolved to an absolute path (flag, variable, file, `default`)."""
    value, _ = resolve(f"paths.{name}", given)
    chosen = value if value is not None else default
    return Path(chosen).expanduser().resolve() if chosen is not None else None


def warehouse_path(given=None) -> Path:
    """Return the warehouse file: flag, $CORE20_WAREHOUSE, `paths.warehouse`, data/warehouse/."""
    return path_value("warehouse", given, DEFAULT_WAREHOUSE)


BESIDE = {"serving": "serving", "reports": "reports", "restricted": "restricted"}


def beside_warehouse(name: str, warehouse: Path) -> Path:
    """Return the default `name` folder for a warehouse: its own, never another warehouse's.

    Examples:
        >>> beside_warehouse("serving", Path("/tmp/test.duckdb"))
        PosixPath('/tmp/test-serving')
        >>> beside_warehouse("reports", DEFAULT_WAREHOUSE) == REPO_ROOT / "data" / "reports"
        True
    """
    if warehouse.resolve() == DEFAULT_WAREHOUSE:
        return REPO_ROOT / "data" / BESIDE[name]
    return warehouse.parent / f"{warehouse.stem}-{BESIDE[name]}"


def output_path(name: str, given=None, warehouse_given=None) -> Path:
    """Return the serving, reports or restricted folder of the warehouse in force.

    A folder set at a weaker level than the warehouse is not used: a warehouse given by flag
    with the serving folder from the file would otherwise write a test run into the
    production snapshot. Such a folder falls back to the one beside the chosen warehouse.
    """
    _, warehouse_source = resolve("paths.warehouse", warehouse_given)
    value, source = resolve(f"paths.{name}", given)
    if value is not None and SOURCES.index(source) <= SOURCES.index(warehouse_source):
        return Path(value).expanduser().resolve()
    return beside_warehouse(name, warehouse_path(warehouse_given))


def choices(overrides: dict | None = None) -> dict[str, object]:
    """Return the PipelineSettings keyword arguments: the file's [choices] under the flags given."""
    values = {dotted.split(".", 1)[1]: value for dotted, value in load().items()
              if dotted.startswith(CHOICES_SECTION + ".")}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    definitions = path_value("definitions", (overrides or {}).get("definitions_dir"))
    if definitions is not None:
        values["definitions_dir"] = str(definitions)
    return values


# -- the template `core20 init` writes ---------------------------------------------------


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    return f"'{text}'" if "\\" in text or '"' in text else f'"{text}"'


def _comment(text: str, width: int = 92) -> list[str]:
    import textwrap

    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def template(warehouse: str | None = None, extracts: str | None = None, reference_dir: str | None = None) -> str:
    """Return the text of a new core20.toml, every key present (optional ones commented out) and explained."""
    lines = [
        "# core20.toml - how this ICS runs core20plus5: paths, ICS configuration, thresholds and the",
        "# disclosure profile, in one place. Written by `core20 init`; edit freely.",
        "#",
        "# Precedence, strongest first: a command-line flag (e.g. --warehouse), an environment variable",
        "# (e.g. CORE20_WAREHOUSE), this file, the built-in default. Relative paths here are read from",
        "# this file's folder. `core20 run`, `core20 quality`, ... and the Dagster UI (`make dev`) read this",
        "# file when it is named core20.toml in the folder they start from, or named by --settings or",
        "# CORE20_SETTINGS. After editing it, reload the code location in the Dagster UI.",
        "",
    ]
    given = {"warehouse": warehouse, "extracts": extracts, "reference_dir": reference_dir}
    sections = [("paths", PATH_KEYS, "Where things are."),
                (CHOICES_SECTION, choice_keys(),
                 "ICS choices and thresholds that change figures; each is recorded with the outputs it produced "
                 "(lineage.run_manifest)."),
                ("schedule", SCHEDULE_KEYS, "When the Dagster schedule and extract sensor start runs.")]
    for section, keys, about in sections:
        lines += [f"[{section}]", *_comment(about), ""]
        for key in keys:
            lines += _comment(key.help[:1].upper() + key.help[1:])
            where = ", ".join(x for x in (key.flag and f"flag {key.flag}", key.env and f"env {key.env}") if x)
            if key.choices:
                lines += _comment(f"One of: {', '.join(key.choices)}.")
            if where:
                lines += _comment(f"Overridden by {where}.")
            value = given.get(key.name) if section == "paths" else None
            if value is not None:
                lines.append(f"{key.name} = {_toml_value(value)}")
            elif section == "paths":
                lines.append(f"# {key.name} = {_toml_value(key.example)}")
            else:
                lines.append(f"{key.name} = {_toml_value(key.example)}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- hints the CLI prints ----------------------------------------------------------------


def program() -> str:
    """Return how to call `core20` as the user did (`.venv/bin/core20` under make), for hints."""
    invoked = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if invoked is not None and invoked.name == "core20" and str(invoked) != "core20":
        return shlex.quote(str(invoked))
    return "core20"


def hint(command: str, warehouse: Path | None = None, **options) -> str:
    """Return a `core20` command that works as printed from here.

    `--warehouse` is added when the warehouse differs from the one the bare command would
    find (flag-free: variable, file, default), `--settings` when the file came from that
    flag (the shell does not have it); other options are added when not None.

    Examples:
        >>> hint("quality", Path("/tmp/x.duckdb"), month="2026-10").split(" ", 1)[1]
        'quality --month 2026-10 --warehouse /tmp/x.duckdb'
    """
    parts = [program(), command]
    if _FLAGGED and os.environ.get(SETTINGS_ENV) == str(_FLAGGED[0]):
        parts += ["--settings", shlex.quote(str(_FLAGGED[0]))]
    for name, value in options.items():
        if value is True:
            parts.append(f"--{name.replace('_', '-')}")
        elif value is not None and value is not False:
            parts += [f"--{name.replace('_', '-')}", shlex.quote(str(value))]
    if warehouse is not None and Path(warehouse).resolve() != warehouse_path(None):
        parts += ["--warehouse", shlex.quote(str(warehouse))]
    return " ".join(parts)
