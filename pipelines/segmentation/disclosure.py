"""Disclosure control for published counts: named profiles, applied before any rate is computed.

A profile is configuration (the ICS chooses it) and its name is written into every
published row (`disclosure_profile`), so a reader can always tell which rule produced a
figure. DOMAIN.md section 6 fixes the order: control the counts first, then compute rates,
intervals and gaps from the controlled counts, so no published statistic can be inverted
to recover a small count.

Profiles:

- `NHS_SUPPRESS_ROUND5` ("nhs_suppress_1_7_round_5"): counts 1-7 are suppressed (null);
  every other count is rounded to the nearest 5; 0 stays 0. The rule of NHS England's
  secondary-care statistical publications.
- `OPENSAFELY_REDACT_ROUND5` ("opensafely_redact_le7_round_5"): counts of 7 or fewer are
  redacted to 0, then every count is rounded to the nearest 5 (OpenSAFELY "Updated
  disclosure control guidance"; ehrQL measures do the same, replacing small numbers with 0).
- `MIDPOINT6` ("midpoint6"): OpenSAFELY's midpoint 6 rounding. 0 stays 0; any other count
  x is published as ceil(x / 6) * 6 - 3, the midpoint of its band of six: 1-6 -> 3,
  7-12 -> 9, 13-18 -> 15, ... Nothing is suppressed: the small count itself is never
  shown, because every count 1-6 is shown as the same 3. (So this profile *does* publish
  the number 3, which is not a count of 3 people; the "never 1-7" guarantee below is a
  guarantee of the suppressing profiles. The published-table gate,
  expectations/audit.gap_table.json, rejects any count of 1-7, so as it stands it blocks
  a midpoint-6 table that has a group of 1-6 people: fail-safe, pending a decision to
  exempt this profile there or not to offer it for publication.)
- `NONE` ("none"): counts unchanged. For private checks only; never for a published table.

Guarantee (suppressing profiles): no published count is between 1 and 7.

Rounding to the nearest 5 has no ties on integers (5 is odd), so "nearest" is exact:
floor((x + 2) / 5) * 5, e.g. 12 -> 10, 13 -> 15, 8 -> 10.

Secondary (complementary) suppression: `protect_counts`. DOMAIN.md section 6: when one
cell of a row or column is suppressed, another must be, or the suppressed value falls out
by subtraction from the total. A published gap table is a set of additive relations
(every breakdown's groups add up to the overall count; deciles add up to quintiles,
quintiles to Core20/rest, detailed ethnic groups to broad ones, Sub-ICBs to ICBs; the
cells of an intersection add up to both margins). `complementary_suppression` makes
sure, within each table of counts, that

1. no relation has exactly one hidden cell (the classic rule: hide the smallest
   non-zero visible part as well, else the total), and
2. no hidden cell is determined by the relations at all (checked by linear algebra: a
   cell is recoverable from the visible cells exactly when every vector of the null
   space of the hidden cells' relation matrix is zero at that cell; a recoverable cell
   gets a further complement, and the check repeats).

It assumes the worst case, that every visible count were exact; rounding to 5 adds
protection on top. The complementary cells are hidden in the same way as the small ones
(null, or 0 for the redacting profile) and are not marked apart from them: telling a
reader which hidden cells are the small ones would tell them those cells are 1-7.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence, TypeVar

import polars as pl

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


@dataclass(frozen=True)
class DisclosureProfile:
    """A named disclosure-control rule for counts.

    Arguments:
        name: the identifier written into published rows.
        description: the rule in words, for the data dictionary.
        small_count_threshold: counts from 1 up to this value are "small" (0: none are).
        small_count_action: what happens to a small count: "suppress" (null), "redact"
            (0) or "keep".
        rounding: "nearest" (nearest multiple of `base`), "midpoint" (midpoint of the
            band of `base`, OpenSAFELY midpoint 6) or "none".
        base: the rounding base.
    """

    name: str
    description: str
    small_count_threshold: int = 0
    small_count_action: Literal["suppress", "redact", "keep"] = "keep"
    rounding: Literal["nearest", "midpoint", "none"] = "none"
    base: int = 1

    def is_small(self, column: str | pl.Expr) -> pl.Expr:
        """Return an expression: whether the count is suppressed or redacted by this profile.

        Null counts are not small (there is nothing to hide); 0 is never small.

        Examples:
            >>> import polars as pl
            >>> pl.DataFrame({"n": [0, 7, 8]}).select(NHS_SUPPRESS_ROUND5.is_small("n"))["n"].to_list()
            [False, True, False]
        """
        x = pl.col(column) if isinstance(column, str) else column
        if self.small_count_action == "keep" or self.small_count_threshold < 1:
            # Always false, but keeps the input column's name (like the branch below).
            return x.is_null() & pl.lit(False)
        return x.is_between(1, self.small_count_threshold).fill_null(False)

    def control(self, column: str | pl.Expr) -> pl.Expr:
        """Return an expression giving the published (controlled) value of a count column.

        Examples:
            >>> import polars as pl
            >>> frame = pl.DataFrame({"n": [0, 7, 13]})
            >>> frame.select(MIDPOINT6.control("n"))["n"].to_list()
            [0, 9, 15]
        """
        x = (pl.col(column) if isinstance(column, str) else column).cast(pl.Int64)
        small = self.is_small(x)
        # `then(x)` first so the result keeps the input column's name.
        if self.small_count_action == "suppress":
            x = pl.when(~small).then(x)  # otherwise null
        elif self.small_count_action == "redact":
            x = pl.when(~small).then(x).otherwise(pl.lit(0, dtype=pl.Int64))
        if self.rounding == "nearest":
            # Integer arithmetic: no float rounding mode can creep in. For odd bases there
            # are no ties; for even bases ties round up (half up), stated here for the record.
            x = ((x + self.base // 2) // self.base) * self.base
        elif self.rounding == "midpoint":
            # OpenSAFELY midpoint rounding: ceil(x / base) * base - base / 2, 0 stays 0.
            # ceil(x / b) for non-negative integers is (x + b - 1) // b.
            x = pl.when(x == 0).then(x).otherwise(((x + self.base - 1) // self.base) * self.base - self.base // 2)
        return x


NHS_SUPPRESS_ROUND5 = DisclosureProfile(
    name="nhs_suppress_1_7_round_5",
    description="Counts 1-7 suppressed (null); others rounded to the nearest 5; 0 stays 0.",
    small_count_threshold=7,
    small_count_action="suppress",
    rounding="nearest",
    base=5,
)

OPENSAFELY_REDACT_ROUND5 = DisclosureProfile(
    name="opensafely_redact_le7_round_5",
    description="Counts of 7 or fewer redacted to 0, then all counts rounded to the nearest 5.",
    small_count_threshold=7,
    small_count_action="redact",
    rounding="nearest",
    base=5,
)

MIDPOINT6 = DisclosureProfile(
    name="midpoint6",
    description="0 stays 0; other counts x shown as ceil(x/6)*6 - 3 (1-6 -> 3, 7-12 -> 9, ...).",
    rounding="midpoint",
    base=6,
)

NONE = DisclosureProfile(
    name="none",
    description="No disclosure control. Private checks only; never published.",
)

PROFILES: dict[str, DisclosureProfile] = {
    p.name: p for p in (NHS_SUPPRESS_ROUND5, OPENSAFELY_REDACT_ROUND5, MIDPOINT6, NONE)
}


def get_profile(name: str) -> DisclosureProfile:
    """Return the profile called `name`, or raise ValueError listing the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown disclosure profile {name!r}; known profiles: {sorted(PROFILES)}") from None


def apply_profile(frame: FrameT, columns: Sequence[str], profile: DisclosureProfile) -> FrameT:
    """Replace count columns by their published values and flag rows with a small count.

    Arguments:
        frame: a DataFrame or LazyFrame of aggregate counts.
        columns: the count columns to control (e.g. numerator and denominator).
        profile: the disclosure profile to apply.

    Returns:
        The same kind of frame with `columns` controlled (cast to Int64) and a Boolean
        column `is_suppressed`: true when any of `columns` held a small count that the
        profile suppressed or redacted (OR-ed with an existing `is_suppressed`, if any).
        Rates and intervals must be computed from the returned counts, and left null where
        `is_suppressed` is true.

    Examples:
        >>> import polars as pl
        >>> frame = pl.DataFrame({"numerator": [0, 5, 13], "denominator": [12, 40, 20]})
        >>> apply_profile(frame, ["numerator", "denominator"], NHS_SUPPRESS_ROUND5)
        shape: (3, 3)
        ┌───────────┬─────────────┬───────────────┐
        │ numerator ┆ denominator ┆ is_suppressed │
        │ ---       ┆ ---         ┆ ---           │
        │ i64       ┆ i64         ┆ bool          │
        ╞═══════════╪═════════════╪═══════════════╡
        │ 0         ┆ 10          ┆ false         │
        │ null      ┆ 40          ┆ true          │
        │ 15        ┆ 20          ┆ false         │
        └───────────┴─────────────┴───────────────┘
    """
    if not columns:
        raise ValueError("columns must name at least one count column to control")
    names = frame.collect_schema().names()
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"apply_profile: columns {missing} are not in the frame (has {names})")
    small = pl.any_horizontal([profile.is_small(c) for c in columns])
    if "is_suppressed" in names:
        small = small | pl.col("is_suppressed").fill_null(False)
    return frame.with_columns(
        *[profile.control(c).alias(c) for c in columns],
        small.alias("is_suppressed"),
    )


def unpublishable_counts(profile: DisclosureProfile, upper: int = 7) -> list[int]:
    """Return the counts from 1 to `upper` that this profile can never publish.

    The published-table gate forbids exactly these values, so each profile is held to its
    own promise: rounding to 5 after suppressing 1-7 never shows 1-7, while midpoint 6 may
    show 3 (the midpoint of the band 1-6) and nothing else below 8.

    Examples:
        >>> unpublishable_counts(NHS_SUPPRESS_ROUND5)
        [1, 2, 3, 4, 5, 6, 7]
        >>> unpublishable_counts(MIDPOINT6)
        [1, 2, 4, 5, 6, 7]
    """
    if profile.name == NONE.name:
        raise ValueError("disclosure profile 'none' is for private checks only; published tables need control")
    counts = pl.DataFrame({"n": list(range(0, 10 * upper + 1))})
    published = set(apply_profile(counts, ["n"], profile)["n"].drop_nulls().to_list())
    return [k for k in range(1, upper + 1) if k not in published]


# ---------------------------------------------------------------------------
# Secondary (complementary) suppression.
# ---------------------------------------------------------------------------

CellKey = tuple


def _no_priority(cell: CellKey) -> int:
    return 0


def _complement(members: list, values: dict, hidden: set, total, priority=_no_priority) -> CellKey | None:
    """Return the cell to hide next in a relation: the non-zero visible part of lowest
    priority (then smallest), else the total."""
    parts = [m for m in members if m != total and m not in hidden]
    positive = sorted((priority(m), values[m], m) for m in parts if values[m] > 0)
    if positive:
        return positive[0][-1]
    if total is not None and total not in hidden and values[total] > 0:
        return total
    zeros = sorted(parts)
    if zeros:
        return zeros[0]
    return total if total is not None and total not in hidden else None


def _recoverable(hidden: set, relations: list[tuple]) -> list[CellKey]:
    """Return the hidden cells whose value the visible cells determine (linear algebra)."""
    import numpy as np  # lazy: only tables with hidden cells need it

    cells = sorted(hidden)
    position = {c: i for i, c in enumerate(cells)}
    # Split into connected components so each SVD stays small.
    parent = list(range(len(cells)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    touching = []
    for total, members in relations:
        inside = [position[m] for m in members if m in position]
        if inside:
            touching.append((total, members))
            for i in inside[1:]:
                parent[find(i)] = find(inside[0])
    components: dict[int, list[int]] = {}
    for i in range(len(cells)):
        components.setdefault(find(i), []).append(i)
    determined = []
    for indices in components.values():
        local = {cells[i]: j for j, i in enumerate(indices)}
        rows = []
        for total, members in touching:
            row = [0.0] * len(indices)
            for m in members:
                if m in local:
                    row[local[m]] += 1.0 if m == total else -1.0
            if any(row):
                rows.append(row)
        if not rows:
            continue
        matrix = np.array(rows)
        _, singular, vt = np.linalg.svd(matrix)
        rank = int((singular > 1e-9 * max(singular.max(), 1.0)).sum())
        null_space = vt[rank:].T  # columns span the hidden values' free directions
        for cell, j in local.items():
            if null_space.shape[1] == 0 or np.abs(null_space[j]).max() < 1e-9:
                determined.append(cell)
    return sorted(determined)


def complementary_suppression(values: dict, primary: set, relations: list[tuple], priority=_no_priority) -> set:
    """Return the cells to hide so no hidden cell can be recovered from the visible ones.

    Arguments:
        values: true count of every cell of one table (cell key -> count). Cells absent
            from `values` are known zeros.
        primary: the cells hidden by the profile's small-count rule.
        relations: (total, members) pairs, where `members` lists the total and its parts
            and the total equals the sum of the parts; `total` may be None for a relation
            stated as "these parts sum to a published constant".
        priority: cell -> number; complements are taken from the lowest first (then the
            smallest count), so the caller can spare the cells readers rely on most.

    Returns:
        The hidden cells: `primary` plus the complementary cells.

    Examples:
        >>> values = {"all": 50, "a": 3, "b": 20, "c": 27}
        >>> sorted(complementary_suppression(values, {"a"}, [("all", ["all", "a", "b", "c"])]))
        ['a', 'b']
    """
    hidden = set(primary)
    if not hidden:
        return hidden
    relations = [(t if t in values else None, [m for m in members if m in values]) for t, members in relations]
    relations = [(t, members) for t, members in relations if len(members) > 1]
    by_cell: dict = {}
    for index, (_, members) in enumerate(relations):
        for m in members:
            by_cell.setdefault(m, []).append(index)
    while True:
        changed = True
        while changed:
            changed = False
            for total, members in relations:
                if sum(m in hidden for m in members) == 1:
                    extra = _complement(members, values, hidden, total, priority)
                    if extra is not None:
                        hidden.add(extra)
                        changed = True
        exposed = _recoverable(hidden, relations)
        if not exposed:
            return hidden
        added = False
        for cell in exposed:
            for index in by_cell.get(cell, []):
                total, members = relations[index]
                extra = _complement(members, values, hidden, total, priority)
                if extra is not None:
                    hidden.add(extra)
                    added = True
                    break
        if not added:
            # Every cell of the exposed cells' own relations is already hidden, yet visible
            # cells elsewhere still determine them through a chain of relations (e.g. a
            # women-only indicator, whose hidden total equals its visible 'F' group). Hide
            # the next visible cell of any relation touching a hidden cell: hiding only ever
            # removes information, so this ends, at worst with every such cell hidden.
            candidates = {m for _, members in relations if any(x in hidden for x in members)
                          for m in members if m not in hidden}
            if not candidates:
                raise RuntimeError(
                    f"complementary_suppression: {len(exposed)} hidden cell(s) stay recoverable and no visible "
                    "cell is left to hide in their relations"
                )
            positive = sorted((priority(m), values[m], m) for m in candidates if values[m] > 0)
            hidden.add(positive[0][-1] if positive else sorted(candidates)[0])


def protect_counts(
    frame: pl.DataFrame,
    columns: Sequence[str],
    profile: DisclosureProfile,
    *,
    table: Sequence[str],
    cell: Sequence[str],
    relations: list[tuple],
    priority=_no_priority,
) -> pl.DataFrame:
    """Apply a profile with secondary suppression: small counts and their complements hidden.

    Arguments:
        frame: true aggregate counts, one row per cell of each table.
        columns: count columns, each protected as its own table of counts (a numerator and
            a denominator are separate additive tables).
        profile: the disclosure profile.
        table: columns identifying one table (e.g. month, indicator and version).
        cell: columns identifying a cell within a table (e.g. vintage, breakdown, group).
        relations: (total, members) pairs of cell keys (tuples of the `cell` columns),
            true in every table: the total equals the sum of the other members.
        priority: cell key -> number; complements come from low-priority cells first.

    Returns:
        `frame` with `columns` controlled (Int64; hidden cells null, or 0 for a redacting
        profile, the rest rounded by the profile) and `is_suppressed` true where any of
        `columns` is hidden.

    Examples:
        >>> import polars as pl
        >>> f = pl.DataFrame({"t": [1] * 4, "g": ["all", "a", "b", "c"], "n": [50, 3, 20, 27]})
        >>> protect_counts(f, ["n"], NHS_SUPPRESS_ROUND5, table=["t"], cell=["g"],
        ...                relations=[(("all",), [("all",), ("a",), ("b",), ("c",)])]).rows()
        [(1, 'all', 50, False), (1, 'a', None, True), (1, 'b', None, True), (1, 'c', 25, False)]
    """
    hides = {c: [False] * frame.height for c in columns}
    suppresses = profile.small_count_action in ("suppress", "redact") and profile.small_count_threshold > 0
    if suppresses:
        indexed = frame.with_row_index("_row")
        for c in columns:
            small = indexed.select(pl.col("_row"), profile.is_small(c).alias("_small"))["_small"].to_list()
            for _, group in indexed.group_by(list(table)):
                rows = group["_row"].to_list()
                if not any(small[r] for r in rows):
                    continue
                keys = group.select(list(cell)).rows()
                values = {k: (v or 0) for k, v in zip(keys, group[c].to_list())}
                row_of = dict(zip(keys, rows))
                primary = {k for k, r in row_of.items() if small[r]}
                for k in complementary_suppression(values, primary, relations, priority):
                    hides[c][row_of[k]] = True
    hidden_value = pl.lit(None, pl.Int64) if profile.small_count_action == "suppress" else pl.lit(0, pl.Int64)
    hide_columns = [pl.Series(f"_hide_{c}", hides[c], dtype=pl.Boolean) for c in columns]
    out = frame.with_columns(hide_columns)
    return out.with_columns(
        *[pl.when(pl.col(f"_hide_{c}")).then(hidden_value).otherwise(profile.control(c)).alias(c) for c in columns],
        pl.any_horizontal([pl.col(f"_hide_{c}") for c in columns]).alias("is_suppressed"),
    ).drop([f"_hide_{c}" for c in columns])
