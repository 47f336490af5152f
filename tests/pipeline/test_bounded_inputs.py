"""Bounded resources: a decompression bomb is refused naming the file and the limit, before it can
exhaust the machine, and nothing published changes. The bomb is generated here (never checked in):
about 1 MB of gzip that expands to 1 GiB of NUL bytes behind a valid header line.
"""

from __future__ import annotations

import gzip
import random
import zlib
from pathlib import Path

import polars as pl
import pytest

from pipeline_helpers import core20_in_process, published_state
from pipelines.limits import InputTooLarge, check_gzip, check_input, parse_size

GIB = 1024**3


def write_bomb(path: Path, header: bytes, expanded: int = GIB) -> Path:
    """Write `header` and then `expanded` NUL bytes, gzip-compressed, streaming (little memory)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    block = bytes(1 << 20)
    with open(path, "wb") as handle:
        handle.write(compressor.compress(header))
        for _ in range(expanded // len(block)):
            handle.write(compressor.compress(block))
        handle.write(compressor.flush())
    return path


def test_the_bomb_is_refused_naming_the_file_and_the_limit_and_nothing_is_published(september, warehouse):
    folder = september / "2026-09"
    events = pl.read_parquet(folder / "events.parquet")
    (folder / "events.parquet").unlink()
    bomb = write_bomb(folder / "events.csv.gz", (",".join(events.columns) + "\n").encode())
    assert bomb.stat().st_size < 2 * 1024**2  # about 1 MB on disk
    before = published_state(warehouse)
    code, output = core20_in_process("run", "--extract", str(september), "--month", "2026-09", "--warehouse", str(warehouse))
    assert code == 1, output
    assert f"{bomb}: expands to at least" in output
    assert "more than 100 times its compressed size" in output and "$CORE20_MAX_COMPRESSION_RATIO" in output
    assert "refused before reading it" in output
    assert "Traceback" not in output
    assert published_state(warehouse) == before


def test_the_size_limit_applies_whatever_the_ratio(tmp_path, monkeypatch):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(random.Random(1).randbytes(10_240_000)))  # 10 MB that does not compress
    monkeypatch.setenv("CORE20_MAX_DECOMPRESSED_BYTES", "1MiB")
    with pytest.raises(InputTooLarge, match=r"more than the limit of 1\.0 MiB \(\$CORE20_MAX_DECOMPRESSED_BYTES\)"):
        check_gzip(path)
    monkeypatch.setenv("CORE20_MAX_DECOMPRESSED_BYTES", "1GiB")
    assert check_gzip(path) == 10_240_000


def test_ordinary_gzip_passes_including_concatenated_members(tmp_path):
    text = b"patient_id,code\n" + b"".join(b"p%06d,123456\n" % i for i in range(50_000))
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(text[:400_000]) + gzip.compress(text[400_000:]))
    assert check_gzip(path) == len(text)


def test_a_cut_short_gzip_is_named(tmp_path):
    path = tmp_path / "events.csv.gz"
    rng = random.Random(2)
    data = gzip.compress(b"patient_id,code\n" + b"".join(b"p%d,%d\n" % (rng.randrange(10**9), rng.randrange(10**6))
                                                         for _ in range(100_000)))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputTooLarge, match=r"events\.csv\.gz: is not a complete gzip file \(cut short\)"):
        check_input(path)


def test_a_parquet_file_declaring_too_much_is_refused_from_its_footer(tmp_path, monkeypatch):
    path = tmp_path / "events.parquet"
    import pyarrow.parquet as pq

    # zstd over plain encoding: the footer declares the expanded size. (A dictionary-encoded
    # repetition declares only its dictionary; the memory watchdog bounds that case.)
    pq.write_table(pl.DataFrame({"code": ["x" * 1000] * 5000}).to_arrow(), path, compression="zstd", use_dictionary=False)
    with pytest.raises(InputTooLarge, match=r"events\.parquet: declares .* uncompressed, more than 100 times"):
        check_input(path)
    monkeypatch.setenv("CORE20_MAX_COMPRESSION_RATIO", "100000")
    check_input(path)


def test_sizes_are_read_as_people_write_them():
    assert parse_size("8GiB") == 8 * GIB and parse_size("1.5 GB") == 1.5e9 and parse_size("2g") == 2 * GIB
    with pytest.raises(ValueError):
        parse_size("lots")
