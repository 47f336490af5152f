"""Load the external reference files named in `manifest.yaml`, checked against their sha256.

The files are never copied into the repository: they are read from a reference directory
(default `../shared/reference_data` beside the checkout, overridden by the
`CORE20_REFERENCE_DIR` environment variable or an explicit argument). Every read goes through
`verified_path`, so a missing or changed file stops the run with a message naming the file,
what was expected and what was found.

Reading (I/O) is split from parsing: each `read_*` function opens the verified file and
hands a raw frame to a `parse_*` function that renames columns to the pipeline's names and
casts types, failing with the file and column when the layout is not the expected one.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl
import yaml

MANIFEST_PATH = Path(__file__).with_name("manifest.yaml")
REFERENCE_DIR_ENV = "CORE20_REFERENCE_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE_DIR = _REPO_ROOT.parent / "shared" / "reference_data"


class ReferenceDataError(RuntimeError):
    """A reference file is missing, differs from its pin, or is not in the expected layout."""


@dataclass(frozen=True)
class ReferenceFile:
    """One pinned external file: its id, relative path and expected sha256."""

    file_id: str
    path: str
    sha256: str
    description: str = ""
    vintage: str = ""
    version: str = ""
    attribution: str = ""
    publisher_page: str = ""
    download: str = ""
    source: str = ""
    # A codelist that is part of a published file: column -> the values its rows must hold
    # (e.g. {"smoking_category": ("never",)} or {"code": (...)}). Empty: the whole file.
    select: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest: reference files, codelists and attribution statements."""

    files: dict[str, ReferenceFile]
    codelists: dict[str, ReferenceFile]
    attributions: dict[str, str]

    def entry(self, file_id: str) -> ReferenceFile:
        """Return the entry for a file or codelist id, or raise naming the id."""
        if file_id in self.files:
            return self.files[file_id]
        if file_id in self.codelists:
            return self.codelists[file_id]
        raise ReferenceDataError(
            f"'{file_id}' is not in the reference manifest {MANIFEST_PATH}; "
            f"known files: {', '.join(sorted(self.files))}"
        )


@lru_cache(maxsize=1)
def load_manifest() -> Manifest:
    """Return the project's reference manifest."""
    raw = yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))

    def entries(section: str) -> dict[str, ReferenceFile]:
        return {
            key: ReferenceFile(
                file_id=key,
                path=value["path"],
                sha256=value["sha256"],
                description=value.get("description", ""),
                vintage=str(value.get("vintage", "")),
                version=str(value.get("version", "")),
                attribution=value.get("attribution", ""),
                publisher_page=value.get("publisher_page", ""),
                download=value.get("download", ""),
                source=str(value.get("source") or value.get("publisher") or ""),
                select=tuple(
                    (str(column), tuple(str(v) for v in (values if isinstance(values, list) else [values])))
                    for column, values in sorted((value.get("select") or {}).items())
                ),
            )
            for key, value in raw[section].items()
        }

    return Manifest(entries("files"), entries("codelists"), dict(raw["attributions"]))


def resolve_reference_dir(reference_dir: str | Path | None = None) -> Path:
    """Return the reference directory: the argument, else $CORE20_REFERENCE_DIR, else core20.toml, else the default."""
    from pipelines.settings_file import path_value

    chosen = path_value("reference_dir", reference_dir, DEFAULT_REFERENCE_DIR)
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        raise ReferenceDataError(
            f"reference directory {path} does not exist. Point {REFERENCE_DIR_ENV} (or paths.reference_dir in core20.toml) at the folder "
            "holding the shared reference data (IMD, postcode lookups, boundaries, codelists)."
        )
    return path


@lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    # Keyed on size and mtime so a file replaced in place is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_path(file_id: str, reference_dir: str | Path | None = None) -> Path:
    """Return the path of a pinned reference file after checking it exists and matches its sha256.

    Arguments:
        file_id: a key of `files` or `codelists` in manifest.yaml.
        reference_dir: the reference directory (see `resolve_reference_dir`).

    Returns:
        The absolute path of the verified file.
    """
    entry = load_manifest().entry(file_id)
    path = resolve_reference_dir(reference_dir) / entry.path
    return verify_pin(path, entry.sha256, file_id, "reference_data/manifest.yaml")


def verify_pin(path: Path, sha256: str, file_id: str, pinned_in: str) -> Path:
    """Return `path` after checking it exists and its sha256 is `sha256`, else raise naming it.

    Arguments:
        path: the file.
        sha256: the pinned checksum.
        file_id: the id the pin is recorded under (named in the message).
        pinned_in: where the pin is recorded (named in the message, so the fix is clear).
    """
    if not path.is_file():
        raise ReferenceDataError(
            f"reference file {path} ('{file_id}') is missing: {pinned_in} expects it with sha256 {sha256}."
        )
    stat = path.stat()
    actual = _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)
    if actual != sha256:
        raise ReferenceDataError(
            f"reference file {path} ('{file_id}') differs from its pin: expected sha256 "
            f"{sha256}, found {actual}. If the file was deliberately updated, record the "
            f"new checksum (and its provenance) in {pinned_in}."
        )
    return path


def read_pinned_csv(path: Path, sha256: str, file_id: str, required: list[str]) -> pl.DataFrame:
    """Return a CSV pinned outside the manifest (e.g. by a definitions folder), checked first.

    Arguments:
        path: the CSV file.
        sha256: its pin.
        file_id: the id it is pinned under.
        required: columns it must have.
    """
    verify_pin(path, sha256, file_id, f"the codelists pins of {path.parent}")
    try:
        frame = pl.read_csv(path, infer_schema_length=0, encoding="utf8-lossy")
    except pl.exceptions.PolarsError as error:
        raise ReferenceDataError(f"could not parse codelist {path} ('{file_id}'): {error}") from error
    _require_columns(frame, required, file_id)
    return frame


def _require_columns(frame: pl.DataFrame | pl.LazyFrame, needed: list[str], file_id: str) -> None:
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    missing = [c for c in needed if c not in names]
    if missing:
        raise ReferenceDataError(
            f"reference file '{file_id}' lacks column(s) {missing}; expected at least {needed}, "
            f"found {names}."
        )


def _read_csv(file_id: str, reference_dir: str | Path | None, **options) -> pl.DataFrame:
    path = verified_path(file_id, reference_dir)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    try:
        return pl.read_csv(data, infer_schema_length=0, encoding="utf8-lossy", **options)
    except pl.exceptions.PolarsError as error:
        raise ReferenceDataError(f"could not parse reference file {path} ('{file_id}'): {error}") from error


# --- parsers: raw frame -> pipeline names and types ---------------------------------------

def parse_imd2019(raw: pl.DataFrame) -> pl.DataFrame:
    """Return lsoa11_code, imd2019_rank, imd2019_decile from MHCLG IoD2019 File 2."""
    raw = raw.rename({c: c.lstrip("\ufeff") for c in raw.columns})
    rank = "Index of Multiple Deprivation (IMD) Rank (where 1 is most deprived)"
    decile = "Index of Multiple Deprivation (IMD) Decile (where 1 is most deprived 10% of LSOAs)"
    _require_columns(raw, ["LSOA code (2011)", rank, decile], "imd2019_lsoa11")
    return raw.select(
        pl.col("LSOA code (2011)").alias("lsoa11_code"),
        pl.col(rank).cast(pl.Int32).alias("imd2019_rank"),
        pl.col(decile).cast(pl.Int8).alias("imd2019_decile"),
    )


def parse_imd2019_population(raw: pl.DataFrame) -> pl.DataFrame:
    """Return lsoa11_code and mid-2015 population (IoD2019 File 6; numbers carry thousands commas)."""
    raw = raw.rename({c: c.lstrip("\ufeff") for c in raw.columns})
    total = "Total population: mid 2015 (excluding prisoners)"
    _require_columns(raw, ["LSOA code (2011)", total], "imd2019_population")
    return raw.select(
        pl.col("LSOA code (2011)").alias("lsoa11_code"),
        pl.col(total).str.replace_all(",", "").cast(pl.Int32).alias("population"),
    )


def parse_imd2025(raw: pl.DataFrame) -> pl.DataFrame:
    """Return lsoa21_code, imd2025_score, imd2025_rank, imd2025_decile from IoD2025 File 7 values."""
    _require_columns(raw, ["lsoa21_code", "IMD_score", "IMD_rank", "IMD_decile"], "imd2025_lsoa21")
    return raw.select(
        pl.col("lsoa21_code"),
        pl.col("IMD_score").cast(pl.Float64).alias("imd2025_score"),
        pl.col("IMD_rank").cast(pl.Int32).alias("imd2025_rank"),
        pl.col("IMD_decile").cast(pl.Int8).alias("imd2025_decile"),
    )


def parse_lsoa11_lsoa21(raw: pl.DataFrame) -> pl.DataFrame:
    """Return lsoa11_code, change_code (U/S/M/X), lsoa21_code, lad22_code."""
    _require_columns(raw, ["lsoa11_code", "change_code", "lsoa21_code", "ltla22_code"], "lsoa11_lsoa21")
    return raw.select(
        "lsoa11_code", "change_code", "lsoa21_code", pl.col("ltla22_code").alias("lad22_code")
    )


def parse_lsoa21_icb24(raw: pl.DataFrame) -> pl.DataFrame:
    """Return lsoa21_code with Sub-ICB and ICB codes (ODS and ONS) and names."""
    needed = ["lsoa21_code", "sicbl24_code", "sicbl24_code_nhs", "sicbl24_name", "icb24_code", "icb24_code_nhs", "icb24_name"]
    _require_columns(raw, needed, "lsoa21_icb24")
    return raw.select(needed)


def parse_lsoa21_ward24(raw: pl.DataFrame) -> pl.DataFrame:
    """Return lsoa21_code, lsoa21_name, lad24_code, lad24_name."""
    _require_columns(raw, ["lsoa21_code", "lsoa21_name", "ltla24_code", "ltla24_name"], "lsoa21_ward24")
    return raw.select(
        "lsoa21_code",
        "lsoa21_name",
        pl.col("ltla24_code").alias("lad24_code"),
        pl.col("ltla24_name").alias("lad24_name"),
    )


def parse_lsoa11_icb22(raw: pl.DataFrame) -> pl.DataFrame:
    """Return lsoa11_code with Sub-ICB/ICB (2022, ODS) and LAD 2022."""
    needed = ["lsoa11_code", "sicbl22_code_nhs", "icb22_code_nhs", "icb22_name", "ltla22_code"]
    _require_columns(raw, needed, "lsoa11_icb22")
    return raw.select(needed).rename({"ltla22_code": "lad22_code"})


# epraccur has no header row; the ODS column order is fixed (PROVENANCE.md section 5).
EPRACCUR_COLUMNS = {
    0: "practice_code",
    1: "practice_name",
    2: "region_code",
    3: "icb_code",
    9: "postcode",
    10: "open_date",
    11: "close_date",
    12: "status_code",
    14: "sicbl_code",
    25: "prescribing_setting",
}


def parse_gp_practices(raw: pl.DataFrame) -> pl.DataFrame:
    """Return GP practices (prescribing setting 4) from ODS epraccur with pipeline column names."""
    if raw.width < 26:
        raise ReferenceDataError(
            f"reference file 'gp_practices' has {raw.width} columns; the ODS epraccur layout has 27."
        )
    cols = raw.columns
    frame = raw.select([pl.col(cols[i]).alias(name) for i, name in EPRACCUR_COLUMNS.items()])
    return frame.filter(pl.col("prescribing_setting") == "4").with_columns(
        pl.col("open_date").str.to_date("%Y%m%d", strict=False),
        pl.col("close_date").str.to_date("%Y%m%d", strict=False),
        (pl.col("status_code") == "A").alias("is_active"),
    ).drop("prescribing_setting")


def parse_gp_list_sizes(raw: pl.DataFrame) -> pl.DataFrame:
    """Return practice_code and registered list size (January 2021)."""
    _require_columns(raw, ["CODE", "NUMBER_OF_PATIENTS", "SEX", "AGE"], "gp_list_sizes")
    return raw.filter((pl.col("SEX") == "ALL") & (pl.col("AGE") == "ALL")).select(
        pl.col("CODE").alias("practice_code"),
        pl.col("NUMBER_OF_PATIENTS").cast(pl.Int32).alias("list_size"),
    )


# --- readers -------------------------------------------------------------------------------

def read_imd2019(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return the IMD 2019 deciles per LSOA 2011 (32,844 rows)."""
    return parse_imd2019(_read_csv("imd2019_lsoa11", reference_dir))


def read_imd2019_population(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return the mid-2015 population per LSOA 2011."""
    return parse_imd2019_population(_read_csv("imd2019_population", reference_dir))


def read_imd2025(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return the IoD 2025 IMD score, rank and decile per LSOA 2021 (33,755 rows)."""
    return parse_imd2025(_read_csv("imd2025_lsoa21", reference_dir))


def read_lsoa11_lsoa21(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return the ONS LSOA 2011 -> 2021 lookup with change codes."""
    return parse_lsoa11_lsoa21(_read_csv("lsoa11_lsoa21", reference_dir))


def read_lsoa21_icb24(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return LSOA 2021 -> Sub-ICB -> ICB (April 2024)."""
    return parse_lsoa21_icb24(_read_csv("lsoa21_icb24", reference_dir))


def read_lsoa21_ward24(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return LSOA 2021 names and LAD 2024."""
    return parse_lsoa21_ward24(_read_csv("lsoa21_ward24", reference_dir))


def read_lsoa11_icb22(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return LSOA 2011 -> Sub-ICB -> ICB (July 2022)."""
    return parse_lsoa11_icb22(_read_csv("lsoa11_icb22", reference_dir))


def read_gp_practices(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return GP practices from ODS epraccur (September 2025)."""
    return parse_gp_practices(_read_csv("gp_practices", reference_dir, has_header=False))


def read_gp_list_sizes(reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return January 2021 registered list sizes per practice."""
    return parse_gp_list_sizes(_read_csv("gp_list_sizes", reference_dir))


def scan_postcode_lsoa11(reference_dir: str | Path | None = None) -> pl.LazyFrame:
    """Return the ONS May 2022 postcode lookup (2.7M rows, live and terminated) as a LazyFrame.

    Columns: postcode ('SW1A 1AA' form), lsoa11_code, lad_code, country_code (GSS E92/W92/S92/
    N92/L93/M83 or null), date_introduced (YYYYMM text), date_terminated (YYYYMM text; null = live).
    """
    path = verified_path("postcode_lsoa11", reference_dir)
    frame = pl.scan_parquet(path)
    _require_columns(frame, ["pcds", "lsoa11cd", "ladcd", "ctry", "dointr", "doterm"], "postcode_lsoa11")
    return frame.select(
        pl.col("pcds").alias("postcode"),
        pl.col("lsoa11cd").alias("lsoa11_code"),
        pl.col("ladcd").alias("lad_code"),
        pl.col("ctry").alias("country_code"),
        pl.col("dointr").cast(pl.String).alias("date_introduced"),
        pl.col("doterm").cast(pl.String).alias("date_terminated"),
    )


def scan_postcode_centroids(reference_dir: str | Path | None = None) -> pl.LazyFrame:
    """Return Code-Point Open 2025 centroids: postcode, easting, northing (EPSG:27700), country_code."""
    path = verified_path("postcode_centroids", reference_dir)
    frame = pl.scan_parquet(path)
    _require_columns(frame, ["Postcode", "Eastings", "Northings", "Country_code"], "postcode_centroids")
    return frame.select(
        pl.col("Postcode").alias("postcode"),
        pl.col("Eastings").cast(pl.Float64).alias("easting"),
        pl.col("Northings").cast(pl.Float64).alias("northing"),
        pl.col("Country_code").alias("country_code"),
        pl.col("Positional_quality_indicator").cast(pl.Int8).alias("positional_quality"),
    )


def read_codelist(codelist_id: str, reference_dir: str | Path | None = None) -> pl.DataFrame:
    """Return a pinned codelist (all columns as text; `code` and `term` always present).

    A manifest entry with `select` is a part of its published file: the rows whose columns
    hold the selected values (e.g. the `never` rows of the smoking list, or named codes of
    the systolic list). Every selected value must occur in the file, so a selection can
    only narrow a published list, never add a code to it.
    """
    frame = _read_csv(codelist_id, reference_dir)
    _require_columns(frame, ["code", "term"], codelist_id)
    entry = load_manifest().codelists.get(codelist_id)
    for column, values in entry.select if entry is not None else ():
        _require_columns(frame, [column], codelist_id)
        absent = sorted(set(values) - set(frame[column].to_list()))
        if absent:
            raise ReferenceDataError(
                f"codelist '{codelist_id}' selects {column} value(s) {absent} that file {entry.path} does not hold; "
                "a selection may only name values of the published file (reference_data/manifest.yaml)"
            )
        frame = frame.filter(pl.col(column).is_in(list(values)))
    return frame


def attribution_statements() -> list[str]:
    """Return the attribution statements the reference data's licences require."""
    return list(load_manifest().attributions.values())


def parse_icb_regions(raw: pl.DataFrame) -> pl.DataFrame:
    """Return icb_code (ODS), icb_name, region_code (ODS), region_name from the ICB 2024 to NHS England region lookup."""
    needed = ["icb24_code_nhs", "icb24_name", "nhser_code_nhs", "nhser_name"]
    _require_columns(raw, needed, "icb24_nhser")
    return raw.select(
        pl.col("icb24_code_nhs").alias("icb_code"), pl.col("icb24_name").alias("icb_name"),
        pl.col("nhser_code_nhs").alias("region_code"), pl.col("nhser_name").alias("region_name"),
    )


def read_icb_regions(reference_dir: str | Path | None = None) -> pl.DataFrame:
    return parse_icb_regions(_read_csv("icb24_nhser", reference_dir))
