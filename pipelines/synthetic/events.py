"""The event buffer and the small vectorised helpers every event emitter uses."""

from __future__ import annotations

import numpy as np
import polars as pl


class EventBuffer:
    """Collect event chunks as parallel numpy arrays (patient index, code index, day, value).

    Chunks are kept in 32-bit integers, and a chunk without values keeps none, so that the
    buffer of a 5M-patient extract (about 125M rows) stays a few GiB.
    """

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []

    def add(self, pid: np.ndarray, code: np.ndarray, day: np.ndarray, value: np.ndarray | None = None) -> None:
        pid = np.asarray(pid)
        if pid.size == 0:
            return
        val = None if value is None else np.asarray(value, dtype=np.float64)
        self.chunks.append((_int32(pid), _int32(code), _int32(day), val))

    def finish(self, rng: np.random.Generator, defect_rate: float) -> tuple[pl.DataFrame, int]:
        """Return the events (pid, code, day, value) with injected exact duplicates, and their count.

        Chance coincidences (two identical rows drawn independently) are dropped first, so
        that the only exact duplicates in the extract are the injected, counted ones. Rows
        are ordered by patient, date, code and value; a duplicate sits after the last row of
        its patient, date and code. Patient, day and code are packed into one int64 key, built
        chunk by chunk, and the rows are ordered by two single-column stable sorts (value,
        then key), which polars does several times faster than one two-column sort.
        """
        chunks, self.chunks = self.chunks, []
        total = sum(c[0].size for c in chunks)
        base = min(int(c[2].min()) for c in chunks)
        code_bits = max(max(int(c[1].max()) for c in chunks).bit_length(), 1)
        day_bits = max((max(int(c[2].max()) for c in chunks) - base).bit_length(), 1)
        if max(int(c[0].max()) for c in chunks).bit_length() + day_bits + code_bits > 62:
            raise ValueError("too many patients to pack event keys into 62 bits")
        key = np.empty(total, dtype=np.int64)
        value = np.full(total, np.nan)
        at = 0
        while chunks:  # a few hundred chunks, each vectorised; each freed once packed
            pid, code, day, val = chunks.pop(0)
            end = at + pid.size
            key[at:end] = (pid.astype(np.int64) << (day_bits + code_bits)) | ((day.astype(np.int64) - base) << code_bits) | code
            if val is not None:
                value[at:end] = val
            at = end
        frame = pl.DataFrame({"key": key, "value": pl.Series(value, nan_to_null=True)})
        del key, value
        frame = frame.sort("value", nulls_last=True).sort("key", maintain_order=True)
        same = (pl.col("key") == pl.col("key").shift(1)) & pl.col("value").eq_missing(pl.col("value").shift(1))
        frame = frame.filter(~same.fill_null(False))
        n_dup = int(round(defect_rate / 5.0 * frame.height))
        if n_dup:
            dup = np.sort(rng.choice(frame.height, size=n_dup, replace=False))
            keys = frame["key"].to_numpy()
            # Each copy goes after the last row sharing its key (as a stable sort of the
            # rows followed by their copies would put it), without sorting the rows again.
            order = np.insert(np.arange(frame.height), np.searchsorted(keys, keys[dup], side="right"), dup)
            del keys
            frame = frame[order]
        return frame.select(
            (pl.col("key") // (1 << (day_bits + code_bits))).cast(pl.Int32).alias("pid"),
            (pl.col("key") % (1 << code_bits)).cast(pl.Int32).alias("code"),
            ((pl.col("key") // (1 << code_bits)) % (1 << day_bits) + base).cast(pl.Int32).alias("day"),
            "value",
        ), n_dup


def _int32(values) -> np.ndarray:
    """Return integer indices or day numbers as int32, refusing any that would not fit."""
    array = np.asarray(values)
    if array.dtype != np.int32 and array.size and (array.max() > np.iinfo(np.int32).max or array.min() < np.iinfo(np.int32).min):
        raise ValueError("event indices and day numbers must fit in 32 bits")
    return array.astype(np.int32, copy=False)


def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (owner, k): row i of the expansion belongs to owner[i] and is its k[i]-th item."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def uniform_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Return a day uniformly in [lo, hi] per row (lo when the range is empty)."""
    span = np.maximum(hi - lo + 1, 1)
    return lo + np.floor(rng.random(np.shape(lo)) * span).astype(np.int64)


