"""Read and stage the optional linked feeds (maternity, cancer registry, HES, MHSDS).

A feed is an optional table in the extract folder, named after the feed (`maternity.csv`,
`cancer_registry.parquet`, ...), with the columns its contract declares
(`schemas.FEEDS`). Reading reuses the extract reader (`extract.py`): the same file
formats, the same date format and delimiter options from the column mapping, the same
errors naming the file and the column and never quoting a value. Feed headers must be
the contract's names (the column mapping's sections cover the GP tables only).

Staging keeps the rows of patients registered at the end of the month, dated on or
before it, with exact duplicates dropped, and records per feed whether it was present:
an absent feed makes its indicators *not available* for the month, which is different
from a present feed with no qualifying rows (a true zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipelines.segmentation.extract import (
    MAPPING_FILE,
    SUFFIXES,
    ColumnMapping,
    ExtractError,
    _cast_to_contract,
    _expected,
    _read_raw,
    _rename_to_contract,
    load_column_mapping,
    month_end,
)
from pipelines.segmentation.quarantine import ROW, UNREADABLE
from pipelines.segmentation.schemas import BOOLEAN_TEXT, FEED_AVAILABILITY, FEEDS, Feed, Table


def find_feed_file(folder: Path, feed: Feed) -> Path | None:
    """Return the file holding a feed in an extract folder, or None when it is absent.

    Examples:
        >>> find_feed_file(Path("/nonexistent"), FEEDS["maternity"]) is None
        True
    """
    for suffix in SUFFIXES:
        candidate = folder / f"{feed.name}{suffix}"
        if candidate.is_symlink() and not candidate.exists():
            raise ExtractError(f"{candidate}: is a symbolic link that leads nowhere (its target is missing, or the link "
                               f"loops); expected the '{feed.name}' feed file or a link to it.", file=candidate)
        if candidate.exists() and not candidate.is_file():
            raise ExtractError(f"{candidate}: is a folder, not a file; expected the '{feed.name}' feed as one file.",
                               file=candidate)
    found = [folder / f"{feed.name}{suffix}" for suffix in SUFFIXES if (folder / f"{feed.name}{suffix}").exists()]
    if len(found) > 1:
        raise ExtractError(f"extract folder {folder} has more than one '{feed.name}' file: {[p.name for p in found]}.")
    return found[0] if found else None


def parse_booleans(frame: pl.DataFrame, feed: Feed, path: Path) -> pl.DataFrame:
    """Return `frame` with the feed's Boolean columns parsed from text (true/false, yes/no, 1/0).

    Arguments:
        frame: the feed's columns under their contract names.
        feed: the feed.
        path: the file (named in errors).

    Examples:
        >>> f = pl.DataFrame({"patient_id": ["a", "b", "c"], "booking_date": ["2026-01-01"] * 3,
        ...     "is_on_continuity_pathway": ["Yes", "false", " 1 "]})
        >>> parse_booleans(f, FEEDS["maternity"], Path("maternity.csv"))["is_on_continuity_pathway"].to_list()
        [True, False, True]
    """
    for column in feed.table.columns:
        if column.dtype != pl.Boolean or column.name not in frame.columns or frame.schema[column.name] == pl.Boolean:
            continue
        text = pl.col(column.name).cast(pl.String).str.strip_chars().str.to_lowercase()
        parsed = text.replace_strict(BOOLEAN_TEXT, default=None, return_dtype=pl.Boolean)
        bad = int(frame.select((text.is_not_null() & (text != "") & parsed.is_null()).sum()).item())
        if bad:
            raise ExtractError(
                f"{path}: column '{column.name}' has {bad} value(s) that are not true/false "
                f"(expected one of {sorted(BOOLEAN_TEXT)})."
            )
        frame = frame.with_columns(parsed.alias(column.name))
    return frame


def _check_allowed(frame: pl.DataFrame, feed: Feed, path: Path) -> None:
    for column in feed.table.columns:
        if column.allowed is None or column.name not in frame.columns:
            continue
        outside = int(frame.select(
            (pl.col(column.name).is_not_null() & ~pl.col(column.name).cast(pl.String).is_in(list(column.allowed))).sum()
        ).item())
        if outside:
            raise ExtractError(
                f"{path}: column '{column.name}' has {outside} value(s) outside {list(column.allowed)} (blank is allowed)."
            )


def read_feed(folder: Path, feed: Feed, mapping: ColumnMapping | None = None) -> pl.DataFrame | None:
    """Read one feed from an extract folder, cast to its contract; None when the folder has none.

    Arguments:
        folder: the extract folder.
        feed: which feed.
        mapping: the extract's column mapping (its date format and delimiter apply).
    """
    path = find_feed_file(Path(folder), feed)
    if path is None:
        return None
    mapping = mapping or ColumnMapping()
    raw = _read_raw(path, mapping)
    frame = _rename_to_contract(raw, feed.table, {}, path)
    frame = parse_booleans(frame, feed, path).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(ROW))
    # Boolean columns are parsed above; the extract caster handles the rest (text to dates
    # and numbers, blanks to nulls) with its usual messages. A feed has no quarantine: a
    # value that cannot be read, or a blank where one is required, refuses the file.
    flags = [c for c in feed.table.columns if c.dtype == pl.Boolean and c.name in frame.columns]
    others = Table(feed.table.name, feed.table.description, tuple(c for c in feed.table.columns if c.dtype != pl.Boolean))
    cast = _cast_to_contract(frame.drop([c.name for c in flags]), others, path, mapping.date_format)
    for column in others.columns:
        n_unreadable = int(cast[UNREADABLE + column.name].sum()) if UNREADABLE + column.name in cast.columns else 0
        if n_unreadable:
            raise ExtractError(
                f"{path}: column '{column.name}' has {n_unreadable} value(s) that are not "
                f"{_expected(column.dtype, mapping.date_format)}.", file=path, column=column.name,
            )
    frame = cast.select(others.names[0], *[c for c in others.names[1:] if c in cast.columns]).with_columns(
        frame.select([c.name for c in flags])
    )
    for column in feed.table.columns:
        nulls = int(frame[column.name].is_null().sum()) if column.name in frame.columns else 0
        if nulls and not column.nullable:
            raise ExtractError(f"{path}: column '{column.name}' has {nulls} blank value(s); it must always be filled.",
                               file=path, column=column.name)
    _check_allowed(frame, feed, path)
    for column in feed.table.columns:
        if column.name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=column.dtype).alias(column.name))
    return frame.select(feed.table.names)


def stage_feed(frame: pl.DataFrame | None, feed: Feed, reporting_month: date, patients: pl.DataFrame) -> pl.DataFrame:
    """Return a feed's staged rows: registered patients, dated on or before R, no exact duplicates.

    When the patients carry their `patient_key` (staged for the warehouse), the rows gain
    it as a last column and are ordered by it, each patient's rows in file order: a slice
    of the patient model then reads its patients' rows by a key range (see
    `patient_model.Sources.keyed`) instead of testing every row's id. Otherwise the rows
    keep file order.

    Arguments:
        frame: `read_feed` output, or None when the feed is absent (an empty table results).
        feed: which feed.
        reporting_month: first day of the reporting month.
        patients: staged patients of the month (their ids define who is registered).

    Examples:
        >>> p = pl.DataFrame({"patient_id": ["a", "b"]})
        >>> f = pl.DataFrame({"patient_id": ["b", "a", "a", "a", "z"], "contact_date": [date(2026, 1, 7),
        ...     date(2026, 1, 5), date(2026, 1, 5), date(2026, 2, 1), date(2026, 1, 5)]})
        >>> stage_feed(f, FEEDS["mh_contacts"], date(2026, 1, 1), p).select("patient_id", "contact_date").rows()
        [('b', datetime.date(2026, 1, 7)), ('a', datetime.date(2026, 1, 5))]
        >>> keyed = p.with_columns(pl.Series("patient_key", [1, 2], dtype=pl.Int32))
        >>> stage_feed(f, FEEDS["mh_contacts"], date(2026, 1, 1), keyed).select("patient_id", "patient_key").rows()
        [('a', 1), ('b', 2)]
    """
    contract = feed.staging()
    keyed = "patient_key" in patients.columns
    key = {"patient_key": pl.Int32} if keyed else {}
    if frame is None:
        return pl.DataFrame(schema={**contract.schema, **key})
    rows = frame.unique(maintain_order=True).filter(pl.col(feed.date_column) <= month_end(reporting_month))
    if keyed:
        rows = (rows.join(patients.select("patient_id", "patient_key").unique(), on="patient_id", how="inner",
                          maintain_order="left")
                .sort("patient_key", maintain_order=True))
    else:
        rows = rows.join(patients.select("patient_id").unique(), on="patient_id", how="semi")
    return (
        rows.with_columns(pl.lit(reporting_month).alias("reporting_month"))
        .select(*contract.names, *key)
        .cast({**contract.schema, **key})
    )


@dataclass
class StagedFeeds:
    """Every feed's staged rows (empty when absent) and the availability table."""

    frames: dict[str, pl.DataFrame]
    availability: pl.DataFrame

    def present(self) -> dict[str, pl.LazyFrame | None]:
        """Return feed -> staged rows for the feeds the extract supplied, None for the others."""
        supplied = set(self.availability.filter("is_present")["feed"].to_list())
        return {name: (frame.lazy() if name in supplied else None) for name, frame in self.frames.items()}


def stage_feeds(
    folder: Path, mapping_path: Path | None, reporting_month: date, patients: pl.DataFrame
) -> StagedFeeds:
    """Read and stage every feed the extract folder holds; record which ones it does.

    Arguments:
        folder: the extract folder.
        mapping_path: the column-mapping file (default `column_mapping.yaml` in the folder).
        reporting_month: first day of the reporting month.
        patients: staged patients of the month.
    """
    folder = Path(folder)
    mapping = load_column_mapping(mapping_path or folder / MAPPING_FILE)
    frames, rows = {}, []
    for name, feed in FEEDS.items():
        raw = read_feed(folder, feed, mapping)
        frames[name] = stage_feed(raw, feed, reporting_month, patients)
        rows.append((reporting_month, name, raw is not None, 0 if raw is None else raw.height, frames[name].height))
    availability = pl.DataFrame(rows, schema=FEED_AVAILABILITY.schema, orient="row")
    return StagedFeeds(frames, availability)


def feeds_from_tables(availability: pl.DataFrame, frames: dict[str, pl.DataFrame]) -> dict[str, pl.LazyFrame | None]:
    """Return feed -> rows for the feeds marked present in `availability`, None for the rest.

    Examples:
        >>> a = pl.DataFrame({"feed": ["maternity", "mh_contacts"], "is_present": [True, False]})
        >>> sorted((k, v is None) for k, v in feeds_from_tables(a, {"maternity": pl.DataFrame(), "mh_contacts": pl.DataFrame()}).items())
        [('maternity', False), ('mh_contacts', True)]
    """
    return StagedFeeds(frames, availability).present()
