"""Data-quality defects: blank, invalid and non-English postcodes, dropped ethnicity codes, formatting noise.

Formatting variation (case, spacing) is not a defect: the pipeline must normalise it away.
The fifth defect, exact duplicate event rows, is injected when the events are assembled
(`events.EventBuffer.finish`). Every defect is counted in the ground truth.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.synthetic.parameters import POSTCODE_SHAPE
from pipelines.synthetic.population import People
from pipelines.synthetic.reference import Reference


def draw_defect_kinds(rng: np.random.Generator, n: int, defect_rate: float) -> np.ndarray:
    """Return each patient's defect: 0 none, 1 blank, 2 invalid, 3 non-English postcode, 4 ethnicity.

    The fifth kind, duplicated event rows, is drawn over events (see EventBuffer.finish).
    """
    u = rng.random(n)
    share = defect_rate / 5.0
    return np.where(u < 4 * share, np.floor(u / share).astype(np.int64) + 1, 0) if share > 0 else np.zeros(n, dtype=np.int64)


JUNK_POSTCODES = ("12345", "NOT KNOWN", "UNKNOWN", "N/A", "XXXXXX", "NFA")


def draw_postcodes(rng, ref: Reference, people: People, defect_kind: np.ndarray) -> tuple[pl.Series, dict]:
    """Return the postcode column as written, with formatting variation and the defects."""
    n = people.n
    home = ref.postcodes.gather(people.postcode)
    country = rng.integers(0, 3, n)
    is_foreign = defect_kind == 3
    sizes = np.array([series.len() for series in ref.foreign])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pick = offsets[country] + np.floor(rng.random(n) * sizes[country]).astype(np.int64)
    foreign = pl.concat(list(ref.foreign)).gather(pick)

    frame = pl.DataFrame({
        "home": home,
        "foreign": foreign,
        "kind": defect_kind,
        "fmt": rng.random(n),
        "blank": rng.random(n),
        "bad": rng.integers(0, 4, n),
        "junk": pl.Series(JUNK_POSTCODES).gather(rng.integers(0, len(JUNK_POSTCODES), n)),
    })
    base = pl.when(pl.col("kind") == 3).then(pl.col("foreign")).otherwise(pl.col("home"))
    # Formatting variation is not a defect: the pipeline must normalise it away.
    formatted = (
        pl.when(pl.col("fmt") < 0.05).then(base.str.to_lowercase())
        .when(pl.col("fmt") < 0.10).then(base.str.replace_all(" ", ""))
        .when(pl.col("fmt") < 0.13).then(base.str.replace(" ", "  "))
        .when(pl.col("fmt") < 0.15).then(pl.concat_str([pl.lit(" "), base, pl.lit("  ")]))
        .otherwise(base)
    )
    squashed = pl.col("home").str.replace_all(" ", "")
    invalid = (
        pl.when(pl.col("bad") == 0).then(pl.col("home").str.split(" ").list.first())  # outward code only
        .when(pl.col("bad") == 1).then(pl.concat_str([squashed.str.replace_all(r"(.)", "$1 "), pl.lit("X")]))  # spaced out, stray letter
        .when(pl.col("bad") == 2).then(pl.col("home").str.slice(0, pl.col("home").str.len_chars() - 1))  # truncated inward code
        .otherwise(pl.col("junk"))
    )
    blank = pl.when(pl.col("blank") < 0.4).then(pl.lit(None, dtype=pl.String)).when(pl.col("blank") < 0.8).then(pl.lit("")).otherwise(pl.lit("   "))
    out = frame.select(
        pl.when(pl.col("kind") == 1).then(blank).when(pl.col("kind") == 2).then(invalid).otherwise(formatted).alias("postcode"),
        pl.col("kind"),
    )
    # Guard: an "invalid" postcode must not normalise to a valid shape.
    shape_ok = pl.col("postcode").str.to_uppercase().str.replace_all(r"\s", "").str.contains(POSTCODE_SHAPE)
    out = out.with_columns(pl.when((pl.col("kind") == 2) & shape_ok.fill_null(False)).then(pl.lit("NOT KNOWN")).otherwise(pl.col("postcode")).alias("postcode"))
    counts = {
        "blank_postcode": int((defect_kind == 1).sum()),
        "invalid_postcode": int((defect_kind == 2).sum()),
        "non_english_postcode": int(is_foreign.sum()),
        "non_english_postcode_by_country": {
            name: int((is_foreign & (country == c)).sum()) for c, name in enumerate(("wales", "scotland", "northern_ireland"))
        },
    }
    return out["postcode"], counts


