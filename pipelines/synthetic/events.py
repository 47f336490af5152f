"""The event buffer and the small vectorised helpers every event emitter uses."""

from __future__ import annotations

import numpy as np
import polars as pl


class EventBuffer:
    """Collect event chunks as parallel numpy arrays (patient index, code index, day, value)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, pid: np.ndarray, code: np.ndarray, day: np.ndarray, value: np.ndarray | None = None) -> None:
        pid = np.asarray(pid, dtype=np.int64)
        if pid.size == 0:
            return
        val = np.full(pid.size, np.nan) if value is None else np.asarray(value, dtype=np.float64)
        self.chunks.append((pid, np.asarray(code, dtype=np.int64), np.asarray(day, dtype=np.int64), val))

    def finish(self, rng: np.random.Generator, defect_rate: float) -> tuple[pl.DataFrame, int]:
        """Return the events (pid, code, day, value) with injected exact duplicates, and their count.

        Chance coincidences (two identical rows drawn independently) are dropped first, so
        that the only exact duplicates in the extract are the injected, counted ones. Rows
        are ordered by patient, date and code; a duplicate sits next to its original.
        Patient, day and code are packed into one int64 key to keep a 25M-row sort light.
        """
        pid = np.concatenate([c[0] for c in self.chunks])
        code = np.concatenate([c[1] for c in self.chunks])
        day = np.concatenate([c[2] for c in self.chunks])
        value = np.concatenate([c[3] for c in self.chunks])
        self.chunks = []
        base = int(day.min())
        code_bits = max(int(code.max()).bit_length(), 1)
        day_bits = max(int(day.max() - base).bit_length(), 1)
        if int(pid.max()).bit_length() + day_bits + code_bits > 62:
            raise ValueError("too many patients to pack event keys into 62 bits")
        key = (pid << (day_bits + code_bits)) | ((day - base) << code_bits) | code
        del pid, code, day
        frame = pl.DataFrame({"key": key, "value": pl.Series(value, nan_to_null=True)})
        del key, value
        frame = frame.sort("key", "value", nulls_last=True)
        same = (pl.col("key") == pl.col("key").shift(1)) & pl.col("value").eq_missing(pl.col("value").shift(1))
        frame = frame.filter(~same.fill_null(False))
        n_dup = int(round(defect_rate / 5.0 * frame.height))
        if n_dup:
            dup = np.sort(rng.choice(frame.height, size=n_dup, replace=False))
            frame = pl.concat([frame, frame[dup]]).sort("key", maintain_order=True)
        frame = frame.select(
            (pl.col("key") // (1 << (day_bits + code_bits))).alias("pid"),
            (pl.col("key") % (1 << code_bits)).alias("code"),
            ((pl.col("key") // (1 << code_bits)) % (1 << day_bits) + base).alias("day"),
            "value",
        )
        return frame, n_dup


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


