"""`core20`: the analyst-facing command. It runs the same Dagster jobs the UI runs.

    core20 init [--settings core20.toml] [--warehouse PATH] [--extract DIR] [--reference-dir DIR]
    core20 synth --out DIR [--patients N] [--seed S] [--month YYYY-MM]
    core20 synth --out DIR --icbs all|QT1,QOX --scale 0.05           (national: one extracts root per ICB)
    core20 national [--root data/national] [--month YYYY-MM] [--workers N]
    core20 run [--extract DIR] [--month YYYY-MM] [--warehouse PATH] [--definitions DIR]
    core20 run --from YYYY-MM --to YYYY-MM [--extract DIR]     (a backfill: each month in turn)
    core20 imd --vintage {2019,2025} INPUT.csv OUTPUT.csv
    core20 reference fetch [--source URL] [--reference-dir DIR] [--only ID]
    core20 quality [--warehouse PATH] [--month YYYY-MM]
    core20 quarantine --month YYYY-MM [--export] [--warehouse PATH]      (--export: restricted folder)
    core20 disclosure-audit [--warehouse PATH] [--serving DIR] [--reports DIR] [--month YYYY-MM] [--national ROOT]
    core20 explain --patient ID --month YYYY-MM [--warehouse PATH]      (console only)
    core20 case-finding --month YYYY-MM [--cohort ID]    (restricted folder; off unless core20.toml enables it)
    core20 diff-definitions OLD NEW --month YYYY-MM [--warehouse PATH]

Exit codes of `run`: 0 published; 2 a data-quality gate blocked publication (the published
tables are unchanged); 1 the input or configuration could not be used (message says why).
Nothing printed here carries a patient-level value.

Every command takes `--settings FILE` (default $CORE20_SETTINGS, else ./core20.toml): the
ICS's settings file, read under the flags and environment variables (pipelines/settings_file.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from datetime import date
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_BLOCKED = 0, 1, 2


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """Return the `core20` argument parser (every command and option carries its help)."""
    parser = argparse.ArgumentParser(prog="core20", description="Core20PLUS5 healthcare-inequalities pipeline for ICS analysts.")
    sub = parser.add_subparsers(dest="command", required=True)

    init = sub.add_parser(
        "init", help="write this ICS's settings file (core20.toml) with a comment on every key",
        description="Write a core20.toml holding every setting core20plus5 reads - warehouse, extracts, serving, "
                    "reports, reference directory, column mapping, ICS configuration, thresholds, disclosure profile "
                    "and schedule - each explained. Flags and environment variables still override it.",
    )
    init.add_argument("--warehouse", help="warehouse file to write into the settings (default: left at the built-in default)")
    init.add_argument("--extract", help="extracts root to write into the settings (default: left at the built-in default)")
    init.add_argument("--reference-dir", help="reference data folder to write into the settings (default: left at the built-in default)")
    init.add_argument("--force", action="store_true", help="replace an existing settings file")

    synth = sub.add_parser("synth", help="write a synthetic practice-register extract (for demos, tests and benchmarks)")
    synth.add_argument("--out", required=True, type=Path, help="extracts root; the extract goes in OUT/YYYY-MM/")
    synth.add_argument("--patients", type=int, default=20_000, help="number of patients (default 20000)")
    synth.add_argument("--seed", type=int, default=20260, help="random seed: same seed, same extract")
    synth.add_argument("--month", help="reporting month YYYY-MM (default: the last complete month)")
    synth.add_argument("--defect-rate", type=float, default=0.02, help="share of rows given realistic defects")
    synth.add_argument("--icb", default="QT1", help="ODS code of the ICB whose postcodes and practices are used")
    synth.add_argument("--icbs", help="national extract: 'all' or comma-separated ICB ODS codes; writes OUT/<ICB>/YYYY-MM/ for each, "
                                      "sized by --scale (replaces --patients and --icb)")
    synth.add_argument("--scale", type=float, help="with --icbs: share of each ICB's population to generate (e.g. 0.05)")
    synth.add_argument("--reference-dir", help="reference data folder (default $CORE20_REFERENCE_DIR, else core20.toml, else ../shared/reference_data)")
    synth.add_argument("--no-feeds", action="store_true", help="leave out the optional linked feeds (their indicators become not available)")

    national = sub.add_parser("national", help="run a national month: every ICB's month on Celery workers, rolled up to regions and England")
    national.add_argument("--root", default="data/national", type=Path,
                          help="national folder: extracts/<ICB>/YYYY-MM/ in, partitions/, warehouse/, serving/ out (default data/national)")
    national.add_argument("--month", help="reporting month YYYY-MM (default: the latest month with an ICB extract)")
    national.add_argument("--icbs", default="", help="comma-separated ICB ODS codes (default: every ICB with an extract for the month)")
    national.add_argument("--workers", type=int, default=2,
                          help="start a local Redis broker and this many Celery workers for the run (0: use the running "
                               "cluster named by CORE20_CELERY_BROKER)")
    national.add_argument("--reference-dir", help="reference data folder (default $CORE20_REFERENCE_DIR, else core20.toml, else ../shared/reference_data)")

    dictionary = sub.add_parser("dictionary", help="write the serving data dictionary generated from the table contracts")
    dictionary.add_argument("--out", type=Path, help="file to write (default: print it)")

    run = sub.add_parser("run", help="run the monthly pipeline for one month and publish its gap tables")
    run.add_argument("--extract", help="extracts root holding YYYY-MM folders, or one extract folder (default data/extracts)")
    run.add_argument("--month", help="reporting month YYYY-MM (default: the latest extract present)")
    run.add_argument("--from", dest="from_month", help="backfill: first month YYYY-MM of a range to run, oldest first")
    run.add_argument("--to", dest="to_month", help="backfill: last month YYYY-MM of the range (default: the latest extract present)")
    run.add_argument("--warehouse", help="DuckDB file (default $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/core20plus5.duckdb)")
    run.add_argument("--reference-dir", help="reference data folder (default $CORE20_REFERENCE_DIR, else core20.toml, else ../shared/reference_data)")
    run.add_argument("--wait", type=float, metavar="SECONDS",
                     help="when another run is writing the same warehouse, wait this long for it to finish "
                          "(default $CORE20_RUN_WAIT_SECONDS or 3600; 0 = refuse at once)")
    run.add_argument("--serving", help="serving folder for Power BI (default $CORE20_SERVING, else core20.toml, else beside the warehouse: data/serving)")
    run.add_argument("--reports", help="folder of the monthly HTML reports (default $CORE20_REPORTS, else core20.toml, else beside the warehouse: data/reports)")
    run.add_argument("--column-mapping", help="column-mapping YAML for a supplier's headers")
    run.add_argument("--primary-vintage", choices=["IMD2019", "IMD2025"], help="IMD vintage Core20 is flagged on")
    run.add_argument(
        "--disclosure-profile",
        choices=["nhs_suppress_1_7_round_5", "opensafely_redact_le7_round_5", "midpoint6"],
        help="disclosure-control profile for published counts (default nhs_suppress_1_7_round_5)",
    )
    run.add_argument("--min-match-rate", type=float,
                     help="block when fewer than this share of patients with a postcode get a decile (default 0.95)")
    run.add_argument("--min-practice-address-rate", type=float,
                     help="block when a practice has a usable postcode for fewer than this share of patients (default 0.5; 0 = off)")
    run.add_argument(
        "--max-quarantine-share", type=float,
        help="block the run when more than this share of an input table's rows are quarantined (default 0.01)",
    )

    imd = sub.add_parser(
        "imd", help="attach national IMD deciles to a CSV of postcodes (the pipeline's own code path)",
        description="Read INPUT.csv (any columns, one of them postcodes), write OUTPUT.csv with the same columns "
                    "plus postcode_normalised, lsoa_code, imd_vintage, imd_decile, imd_quintile, is_core20, "
                    "imd_match_method, certainty flags and Sub-ICB/ICB/LAD codes.",
    )
    imd.add_argument("input", type=Path, metavar="INPUT.csv", help="the CSV of postcodes to read (any other columns are kept)")
    imd.add_argument("output", type=Path, metavar="OUTPUT.csv",
                     help="the CSV to write (UTF-8; written to a private temporary file first, then moved into place)")
    imd.add_argument("--vintage", type=int, choices=[2019, 2025], required=True,
                     help="2019: IMD 2019 on 2011 LSOAs; 2025: IoD 2025 on 2021 LSOAs")
    imd.add_argument("--postcode-column", default="postcode", help="column holding postcodes (default postcode)")
    imd.add_argument("--reference-dir", help="reference data folder (default $CORE20_REFERENCE_DIR, else core20.toml, else ../shared/reference_data)")
    imd.add_argument("--encoding", default="utf-8",
                     help="text encoding of INPUT.csv: utf-8 (default; a byte-order mark is fine), utf-8-sig, cp1252 "
                          "(Excel's plain CSV on Windows) or latin-1; the output is always UTF-8")
    imd.add_argument("--delimiter", default=",",
                     help="column separator of INPUT.csv, e.g. ';' or a tab (default ','); the output uses the same")

    reference = sub.add_parser("reference", help="get or check the pinned reference data")
    reference_sub = reference.add_subparsers(dest="reference_command", required=True)
    fetch = reference_sub.add_parser(
        "fetch", help="download the pinned reference files and codelists, verifying each sha256",
        description="Download every file in reference_data/manifest.yaml into the reference directory, check its "
                    "sha256 before moving it into place, and print the licence attributions.",
    )
    fetch.add_argument("--source", help="base URL of a mirror of the pinned files (default $CORE20_REFERENCE_SOURCE, else core20.toml; "
                                        "without one only files with a public exact-bytes address can be fetched)")
    fetch.add_argument("--reference-dir", help="where to put them (default $CORE20_REFERENCE_DIR, else core20.toml, else ../shared/reference_data)")
    fetch.add_argument("--only", action="append", metavar="ID", help="fetch just this file or codelist id (repeatable)")
    fetch.add_argument("--force", action="store_true", help="download again even when a verified copy is present")
    fetch.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a server (default 120)")

    report = sub.add_parser("quality", help="print the data-quality history: every gate's result, month by month")
    report.add_argument("--warehouse", help="DuckDB file (default $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/core20plus5.duckdb)")
    report.add_argument("--month", help="show every measure of one month YYYY-MM (default: one line per month)")
    run.add_argument("--definitions", help="definitions folder (default $CORE20_DEFINITIONS, else core20.toml, else reference_data/definitions)")

    disclosure = sub.add_parser(
        "disclosure-audit", help="check every published surface against the disclosure profile (names surface and rule, never a value)",
        description="Read the published tables, every serving snapshot kept, the monthly reports, the run summaries and "
                    "what 'core20 quality' prints, and report every breach of the disclosure profile's rules: a count of "
                    "1-7, a count the profile cannot publish, a half-shown row, a statistic over hidden counts, a printed "
                    "None. Exit 0 when there is none, 2 otherwise.")
    disclosure.add_argument("--warehouse", help="DuckDB file (default $CORE20_WAREHOUSE, else core20.toml, else data/warehouse/core20plus5.duckdb)")
    disclosure.add_argument("--serving", help="serving folder (default $CORE20_SERVING, else core20.toml, else beside the warehouse: data/serving)")
    disclosure.add_argument("--reports", help="reports folder (default $CORE20_REPORTS, else core20.toml, else beside the warehouse: data/reports)")
    disclosure.add_argument("--month", help="only this month YYYY-MM (default: every published month)")
    disclosure.add_argument("--national", type=Path, metavar="ROOT",
                            help="audit the national release of `core20 national --root ROOT` instead: its warehouse "
                                 "(ROOT/warehouse/core20plus5_national.duckdb) and serving snapshots (ROOT/serving)")

    from pipelines import audit_commands, case_finding, quarantine_export

    audit_commands.add_parsers(sub)
    quarantine_export.add_parser(sub)
    case_finding.add_parser(sub)
    _finish_commands(sub)
    return parser


def _finish_commands(sub) -> None:
    """Give every command (and sub-command) a description for its --help and the `--settings FILE` option.

    A command's one-line help shows in `core20 --help`; its own `--help` shows only its
    description, so a command declared with help alone gets that line as its description.
    """
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name, command in sub.choices.items():
        if not command.description and helps.get(name):
            command.description = helps[name][:1].upper() + helps[name][1:] + "."
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            _finish_commands(nested[0])
            continue
        command.add_argument(
            "--settings", metavar="FILE",
            help="the ICS's settings file (default $CORE20_SETTINGS, else core20.toml in this folder; "
                 "flags and environment variables override it)",
        )


def main(argv: list[str] | None = None) -> int:
    """Run the `core20` command and return its exit code."""
    from pipelines import settings_file

    args = _parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if args.command == "init":
        return _init(args)
    # --settings is passed to the Dagster resources through the environment; it is put back
    # afterwards, so a caller that runs several commands in one process (the tests) gets
    # each command's own file.
    previous = os.environ.get(settings_file.SETTINGS_ENV)
    try:
        settings_file.use_settings(args.settings)
        settings_file.load()
        return _command(args)
    except settings_file.SettingsError as error:
        print(f"core20 {args.command}: {error}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if "pipelines.runner" in sys.modules:
            sys.modules["pipelines.runner"].close_instances()
        settings_file.use_settings(None)
        if previous is None:
            os.environ.pop(settings_file.SETTINGS_ENV, None)
        else:
            os.environ[settings_file.SETTINGS_ENV] = previous


def _command(args: argparse.Namespace) -> int:
    if args.command in ("run", "quality", "explain", "diff-definitions"):
        _sweep_orphaned_runs()
    if args.command in ("quality", "explain", "diff-definitions", "quarantine", "disclosure-audit"):
        _recover_publication(args)  # `run` does it inside its Dagster run, holding the warehouse
    try:
        if args.command == "synth":
            return _synth(args)
        if args.command == "national":
            return _national(args)
        if args.command == "imd":
            return _imd(args)
        if args.command == "reference":
            return _reference_fetch(args)
        if args.command == "dictionary":
            return _dictionary(args)
        if args.command == "quality":
            return _quality(args)
        if args.command == "quarantine":
            from pipelines import quarantine_export

            return quarantine_export.run(args)
        if args.command == "case-finding":
            from pipelines import case_finding

            return case_finding.run(args)
        if args.command == "disclosure-audit":
            return _disclosure_audit(args)
        if args.command in ("explain", "diff-definitions"):
            from pipelines import audit_commands

            return audit_commands.run(args)
        return _run(args)
    except KeyboardInterrupt:
        print("core20: interrupted", file=sys.stderr)
        return EXIT_ERROR


def _init(args: argparse.Namespace) -> int:
    from pipelines import settings_file

    named = os.environ.get(settings_file.SETTINGS_ENV, "")
    target = Path(args.settings or (named if named.lower() not in ("", "none") else settings_file.SETTINGS_NAME))
    target = target.expanduser().resolve()
    if target.exists() and not args.force:
        print(f"core20 init: {target} already exists; edit it, or replace it with "
              f"`{settings_file.program()} init --settings {shlex.quote(str(target))} --force`.", file=sys.stderr)
        return EXIT_ERROR
    target.parent.mkdir(parents=True, exist_ok=True)
    # Paths given here are written absolute: the file reads relative paths from its own folder.
    given = [str(Path(p).expanduser().resolve()) if p else None for p in (args.warehouse, args.extract, args.reference_dir)]
    target.write_text(settings_file.template(*given), encoding="utf-8")
    print(f"wrote {target}: every setting with what it does; uncomment and edit the ones this ICS changes.")
    if target != (Path.cwd() / settings_file.SETTINGS_NAME).resolve():
        print(f"commands started elsewhere find it with --settings {shlex.quote(str(target))} "
              f"or {settings_file.SETTINGS_ENV}={shlex.quote(str(target))}")
    return EXIT_OK


def _recover_publication(args: argparse.Namespace) -> None:
    """Finish or undo a publication a killed run left half done, if no run holds the warehouse now."""
    from pipelines import settings_file
    from pipelines.publish_journal import recover_if_idle
    from pipelines.resources import resolve_warehouse_path

    given = getattr(args, "warehouse", None)
    try:
        warehouse = resolve_warehouse_path(given)
        serving = settings_file.output_path("serving", getattr(args, "serving", None), given)
        reports = settings_file.output_path("reports", getattr(args, "reports", None), given)
    except Exception:  # noqa: BLE001 - the command itself reports settings or a warehouse it cannot use
        return
    recover_if_idle(warehouse, serving, reports, say=lambda message: print(f"core20: {message}", file=sys.stderr))


def _sweep_orphaned_runs() -> None:
    """Mark runs left STARTED by a killed process FAILURE before doing anything (pipelines/runlock.py)."""
    from pipelines import runner

    try:
        runner.sweep_orphaned_runs()
    except runner.InstanceError:
        pass  # `run` reports an unusable DAGSTER_HOME itself; the other commands do not need it


def _synth(args: argparse.Namespace) -> int:
    from pipelines import synthetic
    from pipelines.partitions import parse_month

    month = parse_month(args.month) if args.month else synthetic.default_reporting_month()
    if args.icbs is not None or args.scale is not None:
        return _synth_national(args, month)
    folder = args.out / month.strftime("%Y-%m")
    started = time.perf_counter()
    truth = synthetic.generate_extract(
        folder, reporting_month=month, n_patients=args.patients, seed=args.seed, icb_code=args.icb,
        defect_rate=args.defect_rate, reference_dir=args.reference_dir, include_feeds=not args.no_feeds,
    )
    manifest = json.loads((folder / "extract.json").read_text())
    print(
        f"wrote synthetic extract {folder} for {month:%Y-%m}: {args.patients:,} patients, "
        f"{manifest.get('n_events', manifest.get('row_counts', {}).get('events', '?'))} events "
        f"({time.perf_counter() - started:.1f} s); ground truth in {folder / 'ground_truth.json'}"
    )
    del truth
    return EXIT_OK


def _synth_national(args: argparse.Namespace, month: date) -> int:
    from pipelines.national.synth import generate_national

    if args.scale is None:
        print("core20 synth: --icbs needs --scale (the share of each ICB's population to generate, e.g. 0.05)", file=sys.stderr)
        return EXIT_ERROR
    started = time.perf_counter()
    try:
        plan = generate_national(args.out, reporting_month=month, scale=args.scale, icbs=args.icbs, seed=args.seed,
                                 defect_rate=args.defect_rate, reference_dir=args.reference_dir,
                                 include_feeds=not args.no_feeds, progress=lambda m: print(m, flush=True))
    except ValueError as error:
        print(f"core20 synth: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote a national synthetic extract for {month:%Y-%m} in {args.out}: {plan.height} ICBs, "
          f"{int(plan['n_patients'].sum()):,} patients ({time.perf_counter() - started:.1f} s)")
    return EXIT_OK


def _national(args: argparse.Namespace) -> int:
    root = args.root.expanduser().resolve()
    extracts = root / "extracts"
    months = sorted({p.name for icb in extracts.glob("*") for p in icb.glob("????-??") if p.is_dir()}) if extracts.is_dir() else []
    month = args.month or (months[-1] if months else None)
    if month is None:
        print(f"core20 national: no ICB extract under {extracts} (expected <ICB>/YYYY-MM/; `core20 synth --icbs all --scale 0.001 "
              f"--out {extracts}` writes a synthetic one)", file=sys.stderr)
        return EXIT_ERROR
    from pipelines.national.local import ClusterError, local_cluster, run_national_month
    from pipelines.runner import dagster_home, failure_message

    home = dagster_home() or (root / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    env = {"DAGSTER_HOME": str(home), "CORE20_NATIONAL_EXTRACTS_ROOT": str(extracts),
           "CORE20_NATIONAL_STORE_ROOT": str(root / "partitions"), "CORE20_NATIONAL_SCRATCH_ROOT": str(root / "scratch"),
           "CORE20_NATIONAL_WAREHOUSE": str(root / "warehouse" / "core20plus5_national.duckdb"),
           "CORE20_NATIONAL_SERVING_ROOT": str(root / "serving"), "CORE20_NATIONAL_ICBS": args.icbs}
    if args.reference_dir:
        env["CORE20_NATIONAL_REFERENCE_DIR"] = args.reference_dir
    started = time.perf_counter()
    print(f"running the national month {month[:7]} ({'the running cluster' if args.workers == 0 else f'{args.workers} local Celery worker(s)'}) ...", flush=True)
    try:
        if args.workers == 0:
            result, _events = run_national_month(month, env)
        else:
            with local_cluster(args.workers, env, root / "logs") as cluster:
                result, _events = run_national_month(month, cluster["env"])
    except ClusterError as error:
        print(f"core20 national: {error}", file=sys.stderr)
        return EXIT_ERROR
    if not result.success:
        print(f"core20 national: {month[:7]} did not complete: {failure_message(result)}", file=sys.stderr)
        return EXIT_ERROR
    print(f"  done in {time.perf_counter() - started:.0f} s\n"
          f"partitions: {env['CORE20_NATIONAL_STORE_ROOT']}\nnational warehouse: {env['CORE20_NATIONAL_WAREHOUSE']} "
          f"(national.gap_table: ICB, region and England rows)\nserving: {root / 'serving' / month[:7]}")
    return EXIT_OK


def _imd(args: argparse.Namespace) -> int:
    from pipelines.segmentation.imd_lookup import ImdLookupError, attach_imd_to_csv
    from reference_data.loader import ReferenceDataError

    started = time.perf_counter()
    try:
        summary = attach_imd_to_csv(
            args.input, args.output, args.vintage, reference_dir=args.reference_dir, postcode_column=args.postcode_column,
            encoding=args.encoding, delimiter="\t" if args.delimiter in ("\\t", "tab") else args.delimiter,
        )
    except (ImdLookupError, ReferenceDataError) as error:
        print(f"core20 imd: {error}", file=sys.stderr)
        return EXIT_ERROR
    vintage = "IMD2019" if args.vintage == 2019 else "IMD2025"
    print(f"wrote {args.output} ({time.perf_counter() - started:.1f} s): {summary.describe(vintage)}")
    return EXIT_OK


def _reference_fetch(args: argparse.Namespace) -> int:
    from pipelines import settings_file
    from reference_data.fetch import fetch_reference
    from reference_data.loader import DEFAULT_REFERENCE_DIR

    target = settings_file.path_value("reference_dir", args.reference_dir, DEFAULT_REFERENCE_DIR)
    source = settings_file.resolve("paths.reference_source", args.source)[0]
    print(f"reference directory: {target}")
    report = fetch_reference(target, source=source, only=args.only, force=args.force, timeout=args.timeout)
    print(f"{len(report.fetched)} fetched, {len(report.verified)} already present and verified, {len(report.failed)} failed")
    for reason in report.failed.values():
        print(f"core20 reference fetch: {reason}", file=sys.stderr)
    if report.attributions:
        print("Products using these files must carry these attributions:")
        for text in report.attributions:
            print(f"  - {text}")
    return EXIT_OK if report.ok else EXIT_ERROR


def _dictionary(args: argparse.Namespace) -> int:
    from pipelines.segmentation import star

    text = star.dictionary_markdown(star.dictionary_rows(star.declared_star_tables()))
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return EXIT_OK


def _months_to_run(args: argparse.Namespace, source) -> list[str]:
    from pipelines import settings_file
    from pipelines.partitions import month_key, parse_month

    if args.from_month or args.to_month:
        return _month_range(args, source)
    if args.month:
        return [month_key(parse_month(args.month))]
    root = source.root_path()
    single = root / "extract.json"
    if single.exists():
        return [json.loads(single.read_text())["reporting_month"][:7] + "-01"]
    if any(root.glob("patients.*")):
        raise ValueError(f"{root} is a single extract with no extract.json: say which month it is with --month YYYY-MM.")
    available = source.months_available()
    if not available:
        raise ValueError(
            f"no extracts found under {root}: expected YYYY-MM folders holding patients and events files "
            f"(make a synthetic one with `{settings_file.program()} synth --out {shlex.quote(str(root))}`), "
            "or pass --extract and --month."
        )
    return [available[-1] + "-01"]


def _month_range(args: argparse.Namespace, source) -> list[str]:
    from pipelines.partitions import MONTHLY, month_key, parse_month

    if args.month:
        raise ValueError("give either --month or --from/--to, not both")
    if not args.from_month:
        raise ValueError("--to needs --from: say the first month of the backfill, e.g. --from 2026-07")
    first = month_key(parse_month(args.from_month))
    if args.to_month:
        last = month_key(parse_month(args.to_month))
    else:
        available = source.months_available()
        single = source.root_path() / "extract.json"
        if not available and single.exists():
            # One cumulative extract: the backfill runs up to the extract's own month.
            available = [json.loads(single.read_text())["reporting_month"][:7]]
        if not available:
            raise ValueError(f"no extracts found under {source.root_path()}: give --to YYYY-MM or add extract folders.")
        last = available[-1] + "-01"
    if last < first:
        raise ValueError(f"--from {first[:7]} is after --to {last[:7]}")
    # Partition keys are ISO dates, so string order is month order. An end outside the
    # runnable months is kept so the caller refuses it with the usual message.
    keys = MONTHLY.get_partition_keys()
    months = [key for key in keys if first <= key <= last]
    return [end for end in dict.fromkeys((first, last)) if end not in keys] + months


def _run(args: argparse.Namespace) -> int:
    from pipelines import settings_file
    from pipelines.definitions import build_definitions
    from pipelines.resources import ExtractSource, PipelineSettings, resolve_warehouse_path

    if args.max_quarantine_share is not None and not 0 <= args.max_quarantine_share <= 1:
        print("core20 run: --max-quarantine-share must be a share between 0 and 1 (e.g. 0.01 for 1%)", file=sys.stderr)
        return EXIT_ERROR
    flags = {
        "primary_imd_vintage": args.primary_vintage, "disclosure_profile": args.disclosure_profile,
        "min_decile_match_rate": args.min_match_rate, "min_practice_address_rate": args.min_practice_address_rate,
        "max_quarantine_share": args.max_quarantine_share, "definitions_dir": getattr(args, "definitions", None),
    }
    source = ExtractSource(root=args.extract, column_mapping=args.column_mapping)
    try:
        months = _months_to_run(args, source)
    except ValueError as error:
        print(f"core20 run: {error}", file=sys.stderr)
        return EXIT_ERROR
    from pipelines.partitions import MONTHLY

    known = set(MONTHLY.get_partition_keys())
    for key in months:
        if key not in known:
            print(
                f"core20 run: {key[:7]} is not a reporting month that can run: months run from "
                f"{min(known)[:7]} to the last complete month, {max(known)[:7]}.", file=sys.stderr,
            )
            return EXIT_ERROR
    warehouse = resolve_warehouse_path(args.warehouse)
    # A backfill over one extract folder with no extract.json: the extract is taken to be the
    # last month's, and each earlier month is run as at its end.
    single = any(source.root_path().glob("patients.*"))
    extract_month = months[-1] if len(months) > 1 and single else None
    if single and not _say_as_at(
            ExtractSource(root=args.extract, column_mapping=args.column_mapping, extract_month=extract_month), months):
        return EXIT_ERROR
    # The warehouse goes to the resources as it was given, so the serving and report folders
    # know whether it was chosen above the settings file (settings_file.output_path).
    defs = build_definitions(
        warehouse=args.warehouse, extracts=args.extract, extract_month=extract_month, reference_dir=args.reference_dir,
        column_mapping=args.column_mapping, settings=PipelineSettings(**settings_file.choices(flags)),
        serving_root=args.serving, reports_dir=args.reports,
    )
    from pipelines import runner

    try:
        runner.dagster_home()
    except runner.InstanceError as error:
        print(f"core20 run: {error}", file=sys.stderr)
        return EXIT_ERROR
    from pipelines import runlock

    what = f"core20 run {months[0][:7]}" + (f" to {months[-1][:7]}" if len(months) > 1 else "")
    try:
        # One writer per warehouse: a second `core20 run` (or a daemon run) queues behind this one.
        with runlock.writer(warehouse, what, wait=args.wait, say=print):
            return _run_months(defs, months, warehouse, _case_finding_after(args))
    except (runlock.WarehouseBusy, ValueError) as error:
        print(f"core20 run: {error}", file=sys.stderr)
        return EXIT_ERROR


def _say_as_at(source, months: list[str]) -> bool:
    """Say which months run as at their end from one cumulative extract; False (after saying why) if one cannot."""
    from pipelines.segmentation.extract import ExtractError

    as_at, own = [], None
    for key in months:
        try:
            of = source.as_at_of(key)
        except ExtractError as error:
            print(f"core20 run: {error}", file=sys.stderr)
            return False
        if of is not None:
            as_at.append(key)
            own = of
    if as_at:
        print(f"{as_at[0][:7]}" + (f" to {as_at[-1][:7]}" if len(as_at) > 1 else "")
              + f": run as at each month's end from the cumulative {own[:7]} extract (registrations and events up to "
              "that day; events after it are left out, not quarantined)", flush=True)
    return True


def _case_finding_after(args: argparse.Namespace):
    """Return what writes a published month's case-finding lists when core20.toml switches them on, else None."""
    from pipelines import case_finding

    if not case_finding.enabled():
        return None

    def write(warehouse: Path, partition_key: str) -> None:
        try:
            folder, _, n_practices = case_finding.write_month(
                warehouse, date.fromisoformat(partition_key), serving=args.serving, reports=args.reports,
                reference_dir=args.reference_dir, warehouse_given=args.warehouse)
        except (ValueError, OSError) as error:
            # The month is published; only the restricted lists are missing, and the message says why.
            print(f"core20 run: case-finding lists for {partition_key[:7]} not written: {error}", file=sys.stderr)
            return
        print(f"case-finding lists (RESTRICTED, direct care): {n_practices} practice(s) in {folder}", flush=True)

    return write


def _run_months(defs, months: list[str], warehouse: Path, after=None) -> int:
    from pipelines import runner

    code = runner.ensure_reference(defs, warehouse)
    if code != EXIT_OK:
        return code
    if len(months) > 1:
        return runner.run_months(defs, months, warehouse, after=after)
    return runner.run_month(defs, months[0], warehouse, after=after)


def _month_option(args: argparse.Namespace, command: str):
    """Return (month or None, None) from `--month`, or (None, exit code) after saying what is wrong."""
    from pipelines.partitions import parse_month

    try:
        return (parse_month(args.month) if args.month else None), None
    except ValueError as error:
        print(f"core20 {command}: {error}", file=sys.stderr)
        return None, EXIT_ERROR


def _quality(args: argparse.Namespace) -> int:
    from pipelines.resources import resolve_warehouse_path

    month, failed = _month_option(args, "quality")
    if failed is not None:
        return failed
    from pipelines import runlock

    warehouse = resolve_warehouse_path(args.warehouse)
    busy, copy = runlock.writer_busy(warehouse), runlock.quality_copy_path(warehouse)
    if busy and copy.exists():
        # Never touch the warehouse a run is writing: a reader would make that run wait. The
        # copy is the history as this command prints it (counts disclosure-controlled).
        import polars as pl

        from pipelines import quality

        print(f"a run is writing {warehouse} ({busy}); this is the data-quality history as of the end of the "
              f"previous run, from {copy} (counts disclosure-controlled)")
        print(quality.report(pl.read_parquet(copy), month))
        return EXIT_OK
    print(quality_text(warehouse, month))
    return EXIT_OK


def _disclosure_audit(args: argparse.Namespace) -> int:
    import time

    from pipelines.disclosure_audit import audit_published
    from pipelines.resources import ServingOutputs, resolve_warehouse_path

    month, failed = _month_option(args, "disclosure-audit")
    if failed is not None:
        return failed
    if args.national is not None:
        root = args.national.expanduser().resolve()
        warehouse, serving, reports, schema = root / "warehouse" / "core20plus5_national.duckdb", root / "serving", None, "national"
    else:
        warehouse = resolve_warehouse_path(args.warehouse)
        outputs = ServingOutputs(serving_root=args.serving, reports_dir=args.reports, warehouse=args.warehouse)
        serving, reports, schema = outputs.serving_path(), outputs.reports_path(), "published"
    if not warehouse.exists():
        print(f"core20 disclosure-audit: no warehouse at {warehouse}", file=sys.stderr)
        return EXIT_ERROR
    started = time.perf_counter()
    found, read = audit_published(warehouse, serving, reports, month, schema=schema)
    print(f"disclosure audit of {warehouse}, {serving}" + (f" and {reports}" if reports else "") + ": "
          f"{read['tables']} published table(s), {read['snapshots']} serving snapshot(s), {read['reports']} report(s), "
          f"{read['texts']} printed text(s) in {time.perf_counter() - started:.1f} s")
    for violation in found:
        print(f"  BREACH {violation}")
    print("no breach: every surface keeps to the disclosure profile" if not found else f"{len(found)} breach(es)")
    return EXIT_OK if not found else EXIT_BLOCKED


def quality_text(warehouse, month=None) -> str:
    """Return what `core20 quality` prints: the history with the disclosure profile on every count."""
    from pipelines import quality

    return (f"data-quality history in {warehouse} (table audit.data_quality; counts disclosure-controlled)\n"
            + quality.report(quality.controlled_history(warehouse), month))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
