"""`core20 imd`: national IMD decile for every row of an analyst's CSV of postcodes.

The rows go through exactly the functions the monthly pipeline uses: `normalise_postcode`
and `postcode_status` (as staging does), then `attach_deprivation` against the reference
built by `load_deprivation_reference`, with the spatial table from
`spatial.build_spatial_lsoa21` for IoD 2025 (built in memory, a few seconds). So a figure
checked here is the figure the pipeline would give.

Every input column is passed through unchanged (read as text, so '01234' stays '01234');
the output adds `OUTPUT_COLUMNS`. Messages count rows and never quote a postcode.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.segmentation.codes import normalise_postcode, postcode_status

__all__ = ["ENCODINGS", "OUTPUT_COLUMNS", "ImdLookupError", "LookupSummary", "attach_imd_to_csv", "attach_imd", "sweep_partial_outputs"]

OUTPUT_COLUMNS = (
    "postcode_normalised",
    "lsoa_code",
    "imd_vintage",
    "imd_decile",
    "imd_quintile",
    "is_core20",
    "imd_match_method",
    "imd_is_certain",
    "core20_is_certain",
    "sicbl_code",
    "icb_code",
    "lad_code",
)
VINTAGES = {2019: "IMD2019", 2025: "IMD2025"}


class ImdLookupError(ValueError):
    """The input CSV cannot be used; the message names the file, the column and what was expected."""


@dataclass(frozen=True)
class LookupSummary:
    """Counts of what happened to the rows (no row values)."""

    n_rows: int
    n_matched: int
    methods: dict[str, int]

    def describe(self, vintage: str) -> str:
        """Return a one-paragraph account for the console."""
        share = self.n_matched / self.n_rows if self.n_rows else 0.0
        methods = ", ".join(f"{m} {n:,}" for m, n in sorted(self.methods.items(), key=lambda kv: -kv[1]))
        return f"{self.n_rows:,} rows: {self.n_matched:,} ({share:.1%}) got a national {vintage} decile; by method: {methods}"


# Encodings an analyst's CSV is likely to be in: UTF-8 (also with a byte-order mark, as
# Excel's "CSV UTF-8" writes it) and Windows-1252 / Latin-1 (Excel's plain "CSV" on an
# English Windows machine).
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1")
_LIKELY_DELIMITERS = (";", "\t", "|", ",")


def _decode(path: Path, encoding: str, postcode_column: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        hint = " (a spreadsheet saved as plain CSV on Windows is usually cp1252: pass --encoding cp1252)" if encoding.startswith("utf") else ""
        shown = encoding.upper() if encoding.startswith("utf") else encoding
        raise ImdLookupError(
            f"{path}: it is not {shown} text{hint}; expected a CSV with a '{postcode_column}' column "
            f"(--encoding takes one of {', '.join(ENCODINGS)})."
        ) from None


def _read_input(path: Path, postcode_column: str, *, encoding: str = "utf-8", delimiter: str = ",") -> pl.DataFrame:
    if encoding not in ENCODINGS:
        raise ImdLookupError(f"--encoding {encoding!r} is not supported; expected one of {', '.join(ENCODINGS)}.")
    if len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ImdLookupError(f"--delimiter must be one character other than a quote or line break; got {delimiter!r}.")
    if not path.is_file():
        raise ImdLookupError(f"{path}: no such file; expected a CSV with a '{postcode_column}' column.")
    if path.stat().st_size == 0:
        raise ImdLookupError(f"{path}: the file is empty; expected a header row with a '{postcode_column}' column.")
    # Decoded here rather than by polars, which reads only UTF-8: an analyst's export in
    # cp1252 is then a flag away instead of a re-save in another program.
    text = _decode(path, encoding, postcode_column).removeprefix("\ufeff")
    try:
        frame = pl.read_csv(text.encode("utf-8"), infer_schema=False, separator=delimiter)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError):
        raise ImdLookupError(
            f"{path}: it could not be parsed as CSV with the delimiter {delimiter!r}; expected a header row with a "
            f"'{postcode_column}' column."
        ) from None
    if postcode_column not in frame.columns:
        near = [c for c in frame.columns if c.strip().lower() == postcode_column.lower()]
        hint = f" (found {near[0]!r}: pass --postcode-column {near[0]!r})" if near else ""
        if not hint and len(frame.columns) == 1:
            found = [d for d in _LIKELY_DELIMITERS if d != delimiter and d in frame.columns[0]]
            if found:
                hint = f" (the header contains {found[0]!r}: pass --delimiter {found[0]!r})"
        raise ImdLookupError(
            f"{path}: no '{postcode_column}' column{hint}; the header has {len(frame.columns)} column(s): "
            f"{', '.join(frame.columns[:12])}{' ...' if len(frame.columns) > 12 else ''}."
        )
    clash = [c for c in OUTPUT_COLUMNS if c in frame.columns]
    if clash:
        raise ImdLookupError(
            f"{path}: already has column(s) {', '.join(clash)}, which the output adds; rename them and run again."
        )
    return frame


def attach_imd(frame: pl.DataFrame, vintage: int, reference, *, postcode_column: str = "postcode") -> pl.DataFrame:
    """Return `frame` with `OUTPUT_COLUMNS` appended, one row per input row, in order.

    Arguments:
        frame: any columns, one of which holds postcodes as supplied.
        vintage: 2019 (IMD 2019, LSOA 2011) or 2025 (IoD 2025, LSOA 2021).
        reference: a `deprivation.DeprivationReference` (with the spatial table for 2025).
        postcode_column: the column holding postcodes.

    Examples:
        >>> import polars as pl
        >>> from pipelines.segmentation.deprivation import DeprivationReference
        >>> ref = DeprivationReference(
        ...     postcodes=pl.DataFrame({"postcode": ["LS1 4AP"], "lsoa11_code": ["E01033015"], "country_code": ["E92000001"], "lad_code": ["E08000035"]}),
        ...     imd2019=pl.DataFrame({"lsoa11_code": ["E01033015"], "imd2019_decile": [2]}, schema_overrides={"imd2019_decile": pl.Int8}),
        ...     imd2025=pl.DataFrame({"lsoa21_code": ["E01033015"], "imd2025_decile": [3]}, schema_overrides={"imd2025_decile": pl.Int8}),
        ...     lsoa11_lsoa21=pl.DataFrame({"lsoa11_code": ["E01033015"], "change_code": ["U"], "lsoa21_code": ["E01033015"]}),
        ...     lsoa21_geography=pl.DataFrame({"lsoa21_code": ["E01033015"], "sicbl_code": ["15F"], "icb_code": ["QWO"], "lad_code": ["E08000035"]}),
        ...     lsoa11_geography=pl.DataFrame({"lsoa11_code": ["E01033015"], "sicbl_code": ["15F"], "icb_code": ["QWO"], "lad_code": ["E08000035"]}))
        >>> rows = pl.DataFrame({"id": ["1", "2"], "postcode": [" ls14ap", "nonsense"]})
        >>> attach_imd(rows, 2019, ref).select("id", "postcode_normalised", "imd_decile", "is_core20", "imd_match_method").rows()
        [('1', 'LS1 4AP', 2, True, 'postcode_lookup'), ('2', None, None, None, 'invalid_postcode')]
    """
    from pipelines.segmentation.deprivation import attach_deprivation

    if vintage not in VINTAGES:
        raise ImdLookupError(f"vintage must be 2019 or 2025; got {vintage!r}")
    prefix = VINTAGES[vintage].lower()
    lsoa = "lsoa11_code" if vintage == 2019 else "lsoa21_code"
    raw = pl.col(postcode_column)
    patients = frame.select(
        pl.lit(None, dtype=pl.Date).alias("reporting_month"),
        pl.int_range(pl.len()).cast(pl.String).alias("patient_id"),
        pl.lit(None, dtype=pl.String).alias("practice_code"),
        normalise_postcode(raw).alias("postcode"),
        postcode_status(raw).alias("postcode_status"),
    )
    attached = attach_deprivation(patients.lazy(), reference).collect()
    certain = (
        [pl.col("imd2025_is_certain").alias("imd_is_certain"), pl.col("imd2025_core20_is_certain").alias("core20_is_certain")]
        if vintage == 2025
        # A 2019 decile is exact except after spatial placement (a postcode newer than the
        # lookup), whose certainty is not assessed for 2011 LSOAs: unknown, not true.
        else [
            pl.when(pl.col(f"{prefix}_decile").is_not_null() & (pl.col(f"{prefix}_method") != "spatial"))
            .then(pl.lit(True))
            .alias(c)
            for c in ("imd_is_certain", "core20_is_certain")
        ]
    )
    added = attached.select(
        patients["postcode"].alias("postcode_normalised"),
        pl.col(lsoa).alias("lsoa_code"),
        pl.lit(VINTAGES[vintage]).alias("imd_vintage"),
        pl.col(f"{prefix}_decile").alias("imd_decile"),
        pl.col(f"{prefix}_quintile").alias("imd_quintile"),
        pl.col(f"{prefix}_is_core20").alias("is_core20"),
        pl.col(f"{prefix}_method").alias("imd_match_method"),
        *certain,
        "sicbl_code",
        "icb_code",
        "lad_code",
    )
    return pl.concat([frame, added], how="horizontal")


# Partial outputs are named so that a later run can recognise them (and the process that
# wrote them): `.<output name>.core20-partial.<pid>.<random>`.
PARTIAL_MARK = ".core20-partial."


def _partial_owner(path: Path) -> int | None:
    # The writer's process id, from the file name; None when the name is not ours.
    try:
        return int(path.name.split(PARTIAL_MARK, 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return None


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_partial_outputs(folder: Path) -> int:
    """Remove partial outputs left in `folder` by `core20 imd` processes that no longer run.

    A process killed while writing (SIGKILL, a power cut) cannot clean up after itself, and
    its partial file holds patient rows. The next run in the same folder removes it. Files
    of a process that is still running are left alone. Returns how many were removed.
    """
    removed = 0
    if not folder.is_dir():
        return removed
    for path in folder.glob(f".*{PARTIAL_MARK}*"):
        owner = _partial_owner(path)
        if owner is None or (owner != os.getpid() and _is_alive(owner)):
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived while a partial output existed."""


@contextmanager
def _partial_output(output_path: Path):
    """Yield a private temporary path beside `output_path`, removed on any exit Python can catch.

    The file is created owner-only (mode 0600, by mkstemp) in the output's own folder, so the
    final rename is atomic. SIGTERM and SIGHUP, which would otherwise end the process without
    running clean-up code, are turned into an exception while the file exists; SIGINT already
    is one. Only SIGKILL (or a crash of the machine) leaves it behind, for the next run's sweep.
    """
    import signal
    import threading

    handle, name = tempfile.mkstemp(prefix=f".{output_path.name}{PARTIAL_MARK}{os.getpid()}.", dir=output_path.parent)
    os.close(handle)
    temporary = Path(name)
    previous = {}

    def _raise(signum, frame):
        raise _Terminated(signum)

    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, _raise)
    try:
        yield temporary
    finally:
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def attach_imd_to_csv(
    input_path: str | Path,
    output_path: str | Path,
    vintage: int,
    *,
    reference_dir: str | Path | None = None,
    postcode_column: str = "postcode",
    encoding: str = "utf-8",
    delimiter: str = ",",
) -> LookupSummary:
    """Read `input_path`, attach IMD of `vintage`, write `output_path` atomically; return counts.

    The input is checked (header, encoding, delimiter) before the reference data is loaded,
    so a wrong file is refused at once. The output is written to a private temporary file
    beside it and renamed into place, so a failure never leaves a half-written file (and an
    existing output is kept until then); see `_partial_output` for what happens on a kill.
    The output is UTF-8 with the input's delimiter.

    Raises:
        ImdLookupError: the input cannot be used (the message names the file and column),
            or the run was terminated (the partial output is removed first).
    """
    from pipelines.segmentation.deprivation import load_deprivation_reference
    from pipelines.segmentation.spatial import build_spatial_lsoa21

    input_path, output_path = Path(input_path), Path(output_path)
    frame = _read_input(input_path, postcode_column, encoding=encoding, delimiter=delimiter)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    sweep_partial_outputs(output_path.parent)
    spatial = build_spatial_lsoa21(reference_dir) if vintage == 2025 else None
    reference = load_deprivation_reference(reference_dir, spatial=spatial)
    out = attach_imd(frame, vintage, reference, postcode_column=postcode_column)
    try:
        with _partial_output(output_path) as temporary:
            out.write_csv(temporary, separator=delimiter)
            os.replace(temporary, output_path)
    except _Terminated as signal_number:
        raise ImdLookupError(
            f"{output_path}: not written, the command was stopped by signal {signal_number}; any earlier output is unchanged."
        ) from None
    methods = dict(out.group_by("imd_match_method").len().iter_rows())
    return LookupSummary(n_rows=out.height, n_matched=int(out["imd_decile"].is_not_null().sum()), methods=methods)
