"""Bounded resources: a compressed input may not expand without limit, and a run may not eat the machine.

A ~1 MB `events.csv.gz` can expand to a gibibyte of NUL bytes; read whole, it once drove a
run to 24 GB and the kernel's out-of-memory killer, taking other work on the server with it.
So, before any reader sees a compressed input:

- **gzip** is decompressed once as a stream (1 MiB at a time, never whole) counting bytes,
  and refused, naming the file and the limit, as soon as it passes either the size limit
  (`CORE20_MAX_DECOMPRESSED_BYTES`, default 8 GiB) or the ratio limit
  (`CORE20_MAX_COMPRESSION_RATIO`, default 100: real register extracts compress 5-20 times).
  The bomb is refused after reading about 100 times its compressed size.
- **Parquet** declares each row group's uncompressed size in its footer; the same two
  limits apply to their sum before a row is read. (That size is after Parquet's own
  encodings: a column that repeats one value through dictionary encoding declares only the
  dictionary, so that case is left to the memory watchdog below.)

And while a run works, a watchdog samples the process's resident memory; past
`CORE20_MEMORY_LIMIT` (default half the machine's memory) it records the run as failed,
says which limit was reached and what to do, and ends the process before the machine swaps
or the kernel starts killing. DuckDB gets its own `memory_limit` per connection
(`CORE20_DUCKDB_MEMORY`) and spills to disk beyond it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import zlib
from pathlib import Path

MAX_BYTES_ENV = "CORE20_MAX_DECOMPRESSED_BYTES"
MAX_RATIO_ENV = "CORE20_MAX_COMPRESSION_RATIO"
MEMORY_ENV = "CORE20_MEMORY_LIMIT"
DEFAULT_MAX_BYTES = 8 * 1024**3
DEFAULT_MAX_RATIO = 100.0
_CHUNK = 1 << 20


class InputTooLarge(ValueError):
    """A compressed input expands past a limit; the message names the file and the limit."""


def _size_setting(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return parse_size(value)
    except ValueError:
        raise InputTooLarge(f"{name} must be a size such as 8GiB, 500MB or a number of bytes; got {value!r}") from None


def parse_size(text: str) -> float:
    """Return a size in bytes from '8GiB', '500 MB', '1.5G' or a plain number.

    Examples:
        >>> parse_size("8GiB"), parse_size("500MB"), parse_size("1024")
        (8589934592.0, 500000000.0, 1024.0)
    """
    units = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 1024, "mib": 1024**2,
             "gib": 1024**3, "tib": 1024**4, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    stripped = text.strip().lower().replace(" ", "")
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = stripped[len(number):]
    if unit not in units or not number:
        raise ValueError(text)
    return float(number) * units[unit]


def _human(n: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} bytes"


def limits() -> tuple[float, float]:
    """Return (maximum decompressed bytes, maximum compression ratio) from the environment."""
    ratio = os.environ.get(MAX_RATIO_ENV)
    try:
        max_ratio = float(ratio) if ratio else DEFAULT_MAX_RATIO
    except ValueError:
        raise InputTooLarge(f"{MAX_RATIO_ENV} must be a number such as 100; got {ratio!r}") from None
    return _size_setting(MAX_BYTES_ENV, DEFAULT_MAX_BYTES), max_ratio


def _refuse(path: Path, expanded: float, compressed: int, max_bytes: float, max_ratio: float, *, declared: bool) -> None:
    verb = "declares" if declared else "expands to at least"
    if expanded > max_bytes:
        limit = f"the limit of {_human(max_bytes)} (${MAX_BYTES_ENV})"
    else:
        limit = f"{max_ratio:g} times its compressed size of {_human(compressed)} (${MAX_RATIO_ENV})"
    raise InputTooLarge(
        f"{path}: {verb} {_human(expanded)} uncompressed, more than {limit}; refused before reading it, so it "
        "cannot exhaust the machine's memory. Expected a register extract: check the file (a damaged or "
        "hostile archive expands like this); if it is genuine, raise the limit."
    )


def check_gzip(path: Path) -> int:
    """Stream-decompress a gzip file, refusing it past the limits; return its uncompressed size.

    Raises:
        InputTooLarge: past a limit (named in the message with the file).
        ValueError: not a complete gzip stream (the caller words the message).
    """
    max_bytes, max_ratio = limits()
    compressed = max(path.stat().st_size, 1)
    ceiling = min(max_bytes, max_ratio * compressed)
    expanded = 0
    with open(path, "rb") as handle:
        decompressor = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
        while True:
            block = handle.read(_CHUNK)
            data = decompressor.decompress(block, _CHUNK) if block else b""
            expanded += len(data)
            # Output beyond max_length stays in the decompressor: drain it in bounded pieces.
            while decompressor.unconsumed_tail:
                if expanded > ceiling:
                    break
                data = decompressor.decompress(decompressor.unconsumed_tail, _CHUNK)
                expanded += len(data)
            if expanded > ceiling:
                _refuse(path, expanded, compressed, max_bytes, max_ratio, declared=False)
            if decompressor.eof:
                rest = decompressor.unused_data + handle.read(2)
                if rest[:2] == b"\x1f\x8b":  # a further gzip member follows (concatenated .gz)
                    handle.seek(handle.tell() - len(rest))
                    decompressor = zlib.decompressobj(wbits=47)
                    continue
                return expanded
            if not block:
                raise ValueError("the gzip stream ends early")


def check_parquet(path: Path) -> int:
    """Refuse a Parquet file whose footer declares more uncompressed data than the limits allow."""
    import pyarrow.parquet as pq

    max_bytes, max_ratio = limits()
    compressed = max(path.stat().st_size, 1)
    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the reader with its own message
        return 0
    declared = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if declared > min(max_bytes, max_ratio * compressed):
        _refuse(path, declared, compressed, max_bytes, max_ratio, declared=True)
    return declared


def check_input(path: Path) -> None:
    """Apply the decompression limits to one input file (gzip and Parquet; plain text is its own size)."""
    if path.name.endswith(".gz"):
        try:
            check_gzip(path)
        except (ValueError, zlib.error, EOFError, OSError) as error:
            if isinstance(error, InputTooLarge):
                raise
            raise InputTooLarge(
                f"{path}: is not a complete gzip file ({'cut short' if 'early' in str(error) else 'damaged'}); "
                "expected a gzip-compressed CSV. It may have been cut short in transfer: ask the supplier to send it again."
            ) from None
    elif path.name.endswith(".parquet"):
        check_parquet(path)


# --- the memory watchdog ---------------------------------------------------------------------


def physical_memory() -> int:
    """Return the machine's memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit() -> float:
    """Return the process memory limit: $CORE20_MEMORY_LIMIT, else half the machine's memory."""
    return _size_setting(MEMORY_ENV, physical_memory() / 2)


def resident_bytes() -> int:
    """Return this process's resident memory (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_watchdog: threading.Thread | None = None


def start_memory_watchdog(on_breach=None, interval: float = 0.2) -> None:
    """Start (once per process) a thread that ends the process when resident memory passes the limit.

    `on_breach(message)` runs first (e.g. to record the run as failed); then the message goes to
    standard error and the process exits with status 1. It cannot be caught and undone: a run
    past the limit is stopped, and the published tables are as they were (they change only in
    a run's final publish transaction).
    """
    global _watchdog
    if _watchdog is not None and _watchdog.is_alive():
        return
    limit = memory_limit()

    def watch() -> None:
        while True:
            used = resident_bytes()
            if used > limit:
                message = (f"core20: stopped - the run's memory reached {_human(used)}, past the limit of "
                           f"{_human(limit)} (${MEMORY_ENV}, default half the machine's memory), before the machine "
                           "could run short. The published tables are unchanged. Check the extract's size; raise "
                           f"{MEMORY_ENV} if the machine has room.")
                try:
                    if on_breach is not None:
                        on_breach(message)
                finally:
                    print(message, file=sys.stderr, flush=True)
                    os._exit(1)
            time.sleep(interval)

    _watchdog = threading.Thread(target=watch, name="core20-memory-watchdog", daemon=True)
    _watchdog.start()
