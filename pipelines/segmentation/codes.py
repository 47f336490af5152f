"""Normalise and validate postcodes, LSOA codes and ODS codes as polars expressions.

Every function takes and returns a `pl.Expr`, so normalisation runs inside the query
engine over whole columns: no Python row loops and no `map_elements` (the narwhals habit),
which keeps a million-patient extract to well under a second here.

A postcode's *shape* is checked, not its existence: whether it is a real postcode is the
job of the ONS and Code-Point lookups in `deprivation.py`.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "POSTCODE_PATTERN",
    "LSOA_CODE_PATTERN",
    "ODS_CODE_PATTERN",
    "normalise_postcode",
    "postcode_status",
    "postcode_district",
    "postcode_area",
    "normalise_lsoa_code",
    "is_valid_lsoa_code",
    "normalise_ods_code",
]

# The compact (no space) UK postcode shapes: outward code A9, A99, AA9, AA99, A9A or AA9A,
# then the inward code 9AA; plus the Girobank GIR 0AA. Letters are not restricted by
# position (e.g. Q/V/X in the first place) because the lookups, not this pattern, decide
# whether a postcode exists; the pattern only rejects what cannot be a postcode.
POSTCODE_PATTERN = r"^(?:[A-Z]{1,2}[0-9]{1,2}|[A-Z]{1,2}[0-9][A-Z])[0-9][A-Z]{2}$|^GIR0AA$"

# English (E01) or Welsh (W01) LSOA, 2011 or 2021 vintage: the code alone cannot say which.
LSOA_CODE_PATTERN = r"^[EW]01[0-9]{6}$"

# ODS organisation codes: 3 to 8 letters/digits (ICB "QMF", Sub-ICB "52R", practice "C84001").
ODS_CODE_PATTERN = r"^[A-Z0-9]{3,8}$"

# Anything that is not a letter or digit at either end is transcription junk (quotes,
# commas, full stops, non-breaking spaces from spreadsheets).
_EDGE_JUNK = r"^[^A-Z0-9]+|[^A-Z0-9]+$"


def _compact_postcode(expr: pl.Expr) -> pl.Expr:
    # Upper-case first so the junk pattern only has to know upper-case letters; `\s` is
    # Unicode-aware, so tabs and non-breaking spaces inside the postcode go too.
    return (
        expr.cast(pl.String)
        .str.to_uppercase()
        .str.replace_all(_EDGE_JUNK, "")
        .str.replace_all(r"\s+", "")
    )


def normalise_postcode(expr: pl.Expr) -> pl.Expr:
    """Return the canonical form of a postcode ('SW1A 1AA'), or null when it is not one.

    Upper-cases, strips leading/trailing junk, removes all internal whitespace and puts one
    space before the three-character inward code. The result is null when the input is
    null, blank, or not the shape of a UK postcode.

    Arguments:
        expr: a String expression holding postcodes in any common format.

    Returns:
        A String expression: the canonical postcode or null.

    Examples:
        >>> import polars as pl
        >>> from pipelines.segmentation.codes import normalise_postcode
        >>> df = pl.DataFrame({"raw": [" sw1a1aa ", "ng7  2uh.", "not a postcode"]})
        >>> df.select(normalise_postcode(pl.col("raw")).alias("postcode"))
        shape: (3, 1)
        ┌──────────┐
        │ postcode │
        │ ---      │
        │ str      │
        ╞══════════╡
        │ SW1A 1AA │
        │ NG7 2UH  │
        │ null     │
        └──────────┘
    """
    compact = _compact_postcode(expr)
    canonical = pl.concat_str([compact.str.head(-3), pl.lit(" "), compact.str.tail(3)])
    return pl.when(compact.str.contains(POSTCODE_PATTERN)).then(canonical).otherwise(None)


def postcode_status(expr: pl.Expr) -> pl.Expr:
    """Return whether a supplied postcode is 'blank', 'invalid' or 'valid'.

    'blank' means null, empty or only whitespace (nothing was recorded); 'invalid' means
    something was recorded but it is not the shape of a UK postcode; 'valid' means
    `normalise_postcode` gives a canonical postcode. The two failures are reported
    separately because they have different fixes (missing data vs. data-entry errors).

    Arguments:
        expr: a String expression holding postcodes as supplied.

    Returns:
        A String expression, never null.

    Examples:
        >>> import polars as pl
        >>> from pipelines.segmentation.codes import postcode_status
        >>> df = pl.DataFrame({"raw": ["ls1 4ap", "   ", "12345"]})
        >>> df.select(postcode_status(pl.col("raw")).alias("status"))
        shape: (3, 1)
        ┌─────────┐
        │ status  │
        │ ---     │
        │ str     │
        ╞═════════╡
        │ valid   │
        │ blank   │
        │ invalid │
        └─────────┘
    """
    text = expr.cast(pl.String)
    is_blank = text.is_null() | (text.str.strip_chars() == "")
    return (
        pl.when(is_blank)
        .then(pl.lit("blank"))
        .when(normalise_postcode(text).is_null())
        .then(pl.lit("invalid"))
        .otherwise(pl.lit("valid"))
        # Keep the input column's name, like the other functions here (not "literal").
        .name.keep()
    )


def postcode_district(expr: pl.Expr) -> pl.Expr:
    """Return the outward code (postcode district, e.g. 'SW1A') of a canonical postcode.

    Arguments:
        expr: a String expression holding canonical postcodes (see `normalise_postcode`).

    Returns:
        A String expression: the part before the space, or null.

    Examples:
        >>> import polars as pl
        >>> from pipelines.segmentation.codes import postcode_district
        >>> df = pl.DataFrame({"postcode": ["SW1A 1AA", "BT1 1AA", None]})
        >>> df.select(postcode_district(pl.col("postcode")).alias("district"))
        shape: (3, 1)
        ┌──────────┐
        │ district │
        │ ---      │
        │ str      │
        ╞══════════╡
        │ SW1A     │
        │ BT1      │
        │ null     │
        └──────────┘
    """
    return expr.str.extract(r"^([A-Z0-9]+) ", 1)


def postcode_area(expr: pl.Expr) -> pl.Expr:
    """Return the postcode area (the leading letters, e.g. 'SW') of a canonical postcode.

    Arguments:
        expr: a String expression holding canonical postcodes (see `normalise_postcode`).

    Returns:
        A String expression: one or two letters, or null.

    Examples:
        >>> import polars as pl
        >>> from pipelines.segmentation.codes import postcode_area
        >>> df = pl.DataFrame({"postcode": ["SW1A 1AA", "B1 1AA", None]})
        >>> df.select(postcode_area(pl.col("postcode")).alias("area"))
        shape: (3, 1)
        ┌──────┐
        │ area │
        │ ---  │
        │ str  │
        ╞══════╡
        │ SW   │
        │ B    │
        │ null │
        └──────┘
    """
    return expr.str.extract(r"^([A-Z]{1,2})[0-9]", 1)


def normalise_lsoa_code(expr: pl.Expr) -> pl.Expr:
    """Return an LSOA code upper-cased and stripped, or null when it is not E01/W01 + 6 digits.

    Arguments:
        expr: a String expression holding LSOA codes as supplied.

    Returns:
        A String expression: the code ('E01004736') or null.

    Examples:
        >>> import polars as pl
        >>> from pipelines.segmentation.codes import normalise_lsoa_code
        >>> df = pl.DataFrame({"raw": [" e01004736", "W01000001", "E0100473"]})
        >>> df.select(normalise_lsoa_code(pl.col("raw")).alias("lsoa_code"))
        shape: (3, 1)
        ┌───────────┐
        │ lsoa_code │
        │ ---       │
        │ str       │
        ╞═══════════╡
        │ E01004736 │
        │ W01000001 │
        │ null      │
        └───────────┘
    """
    code = expr.cast(pl.String).str.strip_chars().str.to_uppercase()
    return pl.when(code.str.contains(LSOA_CODE_PATTERN)).then(code).otherwise(None)


def is_valid_lsoa_code(expr: pl.Expr) -> pl.Expr:
    """Return whether a value normalises to an LSOA code (False for null).

    Arguments:
        expr: a String expression holding LSOA codes as supplied.

    Returns:
        A Boolean expression, never null.

    Examples:
        >>> import polars as pl
        >>> from pipelines.segmentation.codes import is_valid_lsoa_code
        >>> df = pl.DataFrame({"raw": ["E01004736", "S01000001", None]})
        >>> df.select(is_valid_lsoa_code(pl.col("raw")).alias("is_valid"))
        shape: (3, 1)
        ┌──────────┐
        │ is_valid │
        │ ---      │
        │ bool     │
        ╞══════════╡
        │ true     │
        │ false    │
        │ false    │
        └──────────┘
    """
    return normalise_lsoa_code(expr).is_not_null()


def normalise_ods_code(expr: pl.Expr) -> pl.Expr:
    """Return an ODS organisation code upper-cased without whitespace, or null if not one.

    Arguments:
        expr: a String expression holding ODS codes (practice, Sub-ICB, ICB) as supplied.

    Returns:
        A String expression: 3 to 8 letters/digits, or null.

    Examples:
        >>> import polars as pl
        >>> from pipelines.segmentation.codes import normalise_ods_code
        >>> df = pl.DataFrame({"raw": [" c84001 ", "qmf", "C84-001"]})
        >>> df.select(normalise_ods_code(pl.col("raw")).alias("ods_code"))
        shape: (3, 1)
        ┌──────────┐
        │ ods_code │
        │ ---      │
        │ str      │
        ╞══════════╡
        │ C84001   │
        │ QMF      │
        │ null     │
        └──────────┘
    """
    code = expr.cast(pl.String).str.to_uppercase().str.replace_all(r"\s+", "")
    return pl.when(code.str.contains(ODS_CODE_PATTERN)).then(code).otherwise(None)
