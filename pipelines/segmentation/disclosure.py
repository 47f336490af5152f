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
cells of an intersection add up to both margins). `complementary_suppression` hides
further cells, within each table of counts, until no small count can be narrowed down:
for every suppressed small count, the values the published table still allows (worked
out by linear programming from every relation, non-negativity and what each visible
count can stand for under the profile's rounding: a count shown as 10 was 8 to 12) must
include every count from 1 to the threshold. The table then tells a reader nothing about
a small count beyond what suppression itself says.

The visible counts are rounded, and the rounding is part of the protection, as the NHS
rule intends: 'overall 50, a hidden, b 20, c 25' leaves a = 50 - 20 - 25 = 5 give or take
6, which covers 1-7, so a complement there would only hide a headline figure for nothing.
Where the rounding does not cover the range (e.g. overall 10 and one visible part 10 leave
the hidden part 0-4) a complement is hidden. Without rounding (a profile with base 1) the
same rule is the classic one: a hidden cell alone in a relation falls out exactly and
always gets a complement.

The complementary cells are hidden in the same way as the small ones (null, or 0 for the
redacting profile) and are not marked apart from them: telling a reader which hidden cells
are the small ones would tell them those cells are 1-7.
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


def shown_ranges(profile: DisclosureProfile, shown: Sequence[int]) -> list[tuple[int, int]]:
    """Return, for each published (visible) count, the true counts it can stand for.

    This is what any reader knows from a visible count and the profile's rule, which is
    public: a count shown as 10 under `NHS_SUPPRESS_ROUND5` was 8-12 (13 would show 15,
    and 1-7 would not be shown at all), and a visible 0 was exactly 0. It is derived by
    applying the profile itself to every candidate count, so it cannot drift from the rule.

    Examples:
        >>> shown_ranges(NHS_SUPPRESS_ROUND5, [0, 10, 15, 1235])
        [(0, 0), (8, 12), (13, 17), (1233, 1237)]
        >>> shown_ranges(MIDPOINT6, [3, 9])
        [(1, 6), (7, 12)]
        >>> shown_ranges(NONE, [4])
        [(4, 4)]
    """
    if not shown:
        return []
    width = max(profile.base, 1)
    candidates = (
        pl.DataFrame({"i": range(len(shown)), "shown": list(shown)}, schema={"i": pl.Int64, "shown": pl.Int64})
        .with_columns(pl.int_ranges(pl.col("shown") - width, pl.col("shown") + width + 1).alias("n"))
        .explode("n")
        .filter(pl.col("n") >= 0)
    )
    # Each candidate n is a true count the reader cannot rule out: it publishes as `shown`
    # and is not a count the profile would have hidden.
    possible = candidates.filter((profile.control("n") == pl.col("shown")) & ~profile.is_small("n"))
    ranges = possible.group_by("i").agg(pl.col("n").min().alias("lo"), pl.col("n").max().alias("hi"))
    found = {i: (lo, hi) for i, lo, hi in ranges.iter_rows()}
    missing = [shown[i] for i in range(len(shown)) if i not in found]
    if missing:
        raise ValueError(f"profile {profile.name!r} never publishes the value(s) {sorted(set(missing))[:5]}")
    return [found[i] for i in range(len(shown))]


class _Audit:
    """What a reader can infer about each hidden cell of one table of counts.

    The reader knows every relation (a total equals the sum of its parts), that counts are
    not negative, and for each visible cell the range of true counts its published value
    can stand for (`shown_ranges`). The feasible values of a hidden cell are then a
    polytope's projection, an interval whose ends are two linear programmes (the "audit"
    of cell suppression in the Handbook on Statistical Disclosure Control, Hundepool et al.,
    chapter 4). Solved as real-valued LPs with HiGHS through scipy.
    """

    def __init__(self, values: dict, relations: list[tuple], profile: DisclosureProfile, at_most: Sequence[tuple] = ()):
        import numpy as np
        from scipy import sparse

        self.cells = sorted({m for _, members in relations for m in members})
        self.position = {c: i for i, c in enumerate(self.cells)}
        rows, columns, data, rhs = [], [], [], []
        for r, (total, members) in enumerate(relations):
            constant = 0.0
            for m in members:
                rows.append(r)
                columns.append(self.position[m])
                data.append(1.0 if m == total else -1.0)
            if total is None:  # the parts add up to a known constant: their true sum
                constant = -float(sum(values[m] for m in members))
            rhs.append(constant)
        self.a_eq = sparse.csr_matrix((data, (rows, columns)), shape=(len(relations), len(self.cells)))
        self.b_eq = np.array(rhs)
        # Sorted, like the cells and relations: the LP's rows must not follow the caller's row
        # order, because with several optima (common here) HiGHS's pick depends on it, and a
        # re-run of the same month would hide other cells.
        pairs = sorted((a, b) for a, b in at_most if a in self.position and b in self.position)
        self.a_le = sparse.csr_matrix(
            ([1.0] * len(pairs) + [-1.0] * len(pairs),
             (list(range(len(pairs))) * 2, [self.position[a] for a, _ in pairs] + [self.position[b] for _, b in pairs])),
            shape=(len(pairs), len(self.cells)),
        )
        self.shown = dict(zip(self.cells, shown_ranges(profile, _published(profile, [values[c] for c in self.cells]))))

    def _bounds(self, hidden: set) -> list[tuple]:
        return [(0, None) if c in hidden else self.shown[c] for c in self.cells]

    def _solve(self, objective, bounds, a_ub=None):
        """Minimise `objective` over the cells (and any extra variables after them)."""
        from scipy import sparse
        from scipy.optimize import linprog

        extra = len(objective) - len(self.cells)

        def widen(matrix):
            return sparse.hstack([matrix, sparse.csr_matrix((matrix.shape[0], extra))]).tocsr() if extra else matrix

        blocks = [b for b in (widen(self.a_le), a_ub) if b is not None and b.shape[0]]
        upper = sparse.vstack(blocks).tocsr() if blocks else None
        result = linprog(
            objective, A_ub=upper, b_ub=None if upper is None else [0.0] * upper.shape[0],
            A_eq=widen(self.a_eq), b_eq=self.b_eq, bounds=bounds, method="highs",
            # These LPs are small and solved thousands of times; HiGHS's presolve costs more
            # than it saves here (measured: the demo's gap table in 8 s instead of 15 s).
            options={"presolve": False},
        )
        if result.status not in (0, 3):  # 3: unbounded, i.e. no upper limit at all
            # The true counts always satisfy every relation, so this is a bug in the caller's
            # relations or counts, never something to publish through.
            raise RuntimeError(f"secondary suppression audit: the counts do not fit the table's relations ({result.message})")
        return result

    def uncertified(self, hidden: set, targets: list, low: int, high: int) -> list:
        """Return the targets not yet shown to cover [low, high], cheaply.

        Joint LPs push every remaining target up to `high` at once (maximise the sum of
        min(x, high)) and pull them down to `low` at once; a target that gets there in the
        joint solution covers that end, since its own LP can only do better. Rounds repeat
        on the rest while they make progress. What is left needs its own LP (`limiting`).
        """
        import numpy as np
        from scipy import sparse

        bounds = self._bounds(hidden)
        n = len(self.cells)
        remaining = {"up": [t for t in targets if t in self.position], "down": [t for t in targets if t in self.position]}
        for side, sign, cap in (("up", -1.0, (None, high)), ("down", 1.0, (low, None))):
            while remaining[side]:
                group = remaining[side]
                k = len(group)
                picks = sparse.csr_matrix(([1.0] * k, (range(k), [self.position[t] for t in group])), shape=(k, n))
                eye = sparse.identity(k, format="csr")
                # up: u_i <= x_i, u_i <= high, maximise sum u; down: d_i >= x_i, d_i >= low, minimise sum d.
                result = self._solve(np.r_[np.zeros(n), sign * np.ones(k)], bounds + [cap] * k,
                                     sparse.hstack([sign * picks, -sign * eye]).tocsr())
                extra = result.x[n:]
                done = extra >= high - 1e-6 if side == "up" else extra <= low + 1e-6
                if not done.any():
                    break
                remaining[side] = [t for t, ok in zip(group, done) if not ok]
        return sorted(set(remaining["up"]) | set(remaining["down"]))

    def limiting(self, hidden: set, target, low: int, high: int) -> tuple[list, float] | None:
        """Return the visible cells whose shown ranges stop `target` reaching `low` or `high`.

        None when the target already covers [low, high]. Otherwise (cells, shortfall): the
        visible cells with a non-zero bound marginal in the LP that falls short (with the
        relations homogeneous, LP duality says the optimum is set by variable bounds alone,
        so hiding one of them can relax what binds) and how far short it falls.
        """
        import numpy as np

        j = self.position[target]
        bounds = self._bounds(hidden)
        for sign in (-1.0, 1.0):
            objective = np.zeros(len(self.cells))
            objective[j] = sign
            result = self._solve(objective, bounds)
            if result.status == 3:
                continue
            shortfall = high - (-result.fun) if sign < 0 else result.fun - low
            if shortfall <= 1e-6:
                continue
            weight = np.abs(result.lower.marginals) + np.abs(result.upper.marginals)
            return [c for c, w in zip(self.cells, weight) if w > 1e-9 and c not in hidden], shortfall
        return None


def _published(profile: DisclosureProfile, counts: list[int]) -> list[int]:
    """Return the values `profile` publishes for visible counts (its rounding)."""
    frame = pl.DataFrame({"n": counts}, schema={"n": pl.Int64})
    return frame.select(profile.control("n"))["n"].fill_null(0).to_list()


def complementary_suppression(
    values: dict,
    primary: set,
    relations: list[tuple],
    priority=_no_priority,
    *,
    profile: DisclosureProfile,
    at_most: Sequence[tuple] = (),
) -> set:
    """Return the cells to hide so that no small count can be narrowed down from the rest.

    Arguments:
        values: true count of every cell of one table (cell key -> count).
        primary: the cells hidden by the profile's small-count rule (counts 1 to the
            profile's threshold).
        relations: (total, members) pairs, where `members` lists the total and its parts
            and the total equals the sum of the parts; `total` may be None for a relation
            stated as "these parts sum to a published constant".
        priority: cell -> number; complements are taken from the lowest first (then the
            smallest count), so the caller can spare the cells readers rely on most.
        profile: the disclosure profile; its rounding is what a reader knows of each
            visible count (`shown_ranges`).
        at_most: (a, b) cell pairs with a <= b, known to any reader (a numerator never
            exceeds its denominator); the audit uses them as a reader would.

    Returns:
        The hidden cells: `primary` plus the complementary cells.

    The protection rule: for every primary cell, the values the published table leaves
    possible (the interval a reader can compute from every relation, the visible counts'
    ranges and non-negativity, by linear programming) must include every count from 1 to
    the threshold. The table then tells a reader nothing about a small count beyond what
    suppression itself says, that it was between 1 and the threshold. While some primary
    cell falls short, one of the visible cells that limit it (those whose shown range binds
    in the linear programme) is hidden, the lowest-priority and then smallest first, and
    the check repeats; hiding only widens the intervals, so this ends.

    Rounding to 5 is part of the protection: 'overall 50, a hidden, b 20, c 25' gives
    a = 50 - 20 - 25 = 5 give or take 6, which covers 1-7, so no complement is needed,
    whereas with exact counts (the `NONE` profile's knowledge) a would fall out by
    subtraction and a complement is hidden.

    Examples:
        >>> values = {"all": 50, "a": 3, "b": 20, "c": 27}
        >>> relation = [("all", ["all", "a", "b", "c"])]
        >>> sorted(complementary_suppression(values, {"a"}, relation, profile=NHS_SUPPRESS_ROUND5))
        ['a']
        >>> exact = DisclosureProfile("suppress_only", "1-7 suppressed, nothing rounded", 7, "suppress")
        >>> sorted(complementary_suppression(values, {"a"}, relation, profile=exact))
        ['a', 'b']
    """
    hidden = set(primary)
    if not hidden:
        return hidden
    relations = [(t if t in values else None, [m for m in members if m in values]) for t, members in relations]
    relations = sorted(((t, members) for t, members in relations if len(members) > 1), key=repr)
    if not relations:
        return hidden
    audit = _Audit(values, relations, profile, at_most)
    low, high = 1, max(profile.small_count_threshold, 1)
    def rank(m):
        # A non-zero count first: a cell shown as 0 is often pinned by another relation too.
        return priority(m), values[m] == 0, values[m], m

    def protect(cell) -> None:
        while (limits := audit.limiting(hidden, cell, low, high)) is not None:
            candidates = limits[0]
            if not candidates:
                # Only non-negativity of hidden cells binds: widen the search to every
                # visible cell of a relation touching a hidden cell. Hiding only ever removes
                # information, so this ends, at worst with every such cell hidden.
                candidates = [m for _, members in relations if any(x in hidden for x in members)
                              for m in members if m not in hidden]
                if not candidates:
                    raise RuntimeError(
                        "complementary_suppression: a small cell stays narrowed down and no visible cell is left to hide"
                    )
            hidden.add(min(candidates, key=rank))

    # Cells that reach both ends in the joint LPs are done; each other one is worked on in
    # turn, hiding the lowest-priority (then smallest) cell that limits it until it covers
    # the range. Hiding only widens every interval, so a cell once protected stays so.
    pending = audit.uncertified(hidden, sorted(primary), low, high)
    while pending:
        before = len(hidden)
        protect(pending[0])
        pending = pending[1:]
        if len(hidden) > before and len(pending) > 2:
            # The new complements may protect others too: re-check the rest jointly.
            pending = audit.uncertified(hidden, pending, low, high)
    # Several bounds can bind at once (a degenerate optimum); a count shown as 0 picked then
    # may be pinned to 0 by another relation anyway, hiding nothing. Publish each such
    # complement again unless some small count needs it.
    for cell in sorted(c for c in hidden - primary if values[c] == 0):
        hidden.discard(cell)
        candidates = audit.uncertified(hidden, sorted(primary), low, high)
        if any(audit.limiting(hidden, c, low, high) is not None for c in candidates):  # stops at the first
            hidden.add(cell)
    return hidden


def protect_counts(
    frame: pl.DataFrame,
    columns: Sequence[str],
    profile: DisclosureProfile,
    *,
    table: Sequence[str],
    cell: Sequence[str],
    relations: list[tuple],
    priority=_no_priority,
    at_most: Sequence[tuple[str, str]] = (),
) -> pl.DataFrame:
    """Apply a profile with secondary suppression: small counts and their complements hidden.

    Arguments:
        frame: true aggregate counts, one row per cell of each table.
        columns: count columns; each is its own additive table of counts (a numerator and
            a denominator each add up along `relations`), audited together.
        profile: the disclosure profile.
        table: columns identifying one table (e.g. month, indicator and version).
        cell: columns identifying a cell within a table (e.g. vintage, breakdown, group).
        relations: (total, members) pairs of cell keys (tuples of the `cell` columns),
            true in every table and every column: the total equals the sum of the other
            members.
        priority: cell key -> number; complements come from low-priority cells first.
        at_most: (a, b) column pairs with a <= b in every row, known to any reader (a
            numerator never exceeds its denominator), so the audit uses them too.

    Returns:
        `frame` with `columns` controlled (Int64; hidden cells null, or 0 for a redacting
        profile, the rest rounded by the profile) and `is_suppressed` true where any of
        `columns` is hidden.

    Examples:
        >>> import polars as pl
        >>> f = pl.DataFrame({"t": [1] * 3, "g": ["all", "a", "b"], "n": [12, 3, 9]})
        >>> protect_counts(f, ["n"], NHS_SUPPRESS_ROUND5, table=["t"], cell=["g"],
        ...                relations=[(("all",), [("all",), ("a",), ("b",)])]).rows()
        [(1, 'all', 10, False), (1, 'a', None, True), (1, 'b', None, True)]

        Shown as 10, 'all' was 8-12 and so was 'b' (9): 'a' would be 0-4, not 1-7, so 'b'
        is hidden as well.
    """
    hides = {c: [False] * frame.height for c in columns}
    suppresses = profile.small_count_action in ("suppress", "redact") and profile.small_count_threshold > 0
    if suppresses:
        indexed = frame.with_row_index("_row").with_columns(
            [profile.is_small(c).alias(f"_small_{c}") for c in columns]
        )
        # Keys of the joint audit are (cell key, column): every relation holds in each column.
        joint = [((total, c), [(m, c) for m in members]) for total, members in relations for c in columns]
        def solve(group: pl.DataFrame) -> list[tuple[int, str]]:
            keys = group.select(list(cell)).rows()
            rows = group["_row"].to_list()
            values, row_of, primary = {}, {}, set()
            for c in columns:
                for k, r, v, small in zip(keys, rows, group[c].to_list(), group[f"_small_{c}"].to_list()):
                    values[(k, c)], row_of[(k, c)] = (v or 0), r
                    if small:
                        primary.add((k, c))
            pairs = [((k, a), (k, b)) for a, b in at_most for k in keys]
            hidden = complementary_suppression(
                values, primary, joint, lambda key: priority(key[0]), profile=profile, at_most=pairs
            )
            return [(row_of[key], key[1]) for key in hidden]

        small_any = pl.any_horizontal([pl.col(f"_small_{c}") for c in columns]).any()
        groups = [g for _, g in indexed.group_by(list(table), maintain_order=True) if g.select(small_any).item()]
        for group in groups:
            for row, c in solve(group):
                hides[c][row] = True
    hidden_value = pl.lit(None, pl.Int64) if profile.small_count_action == "suppress" else pl.lit(0, pl.Int64)
    hide_columns = [pl.Series(f"_hide_{c}", hides[c], dtype=pl.Boolean) for c in columns]
    out = frame.with_columns(hide_columns)
    return out.with_columns(
        *[pl.when(pl.col(f"_hide_{c}")).then(hidden_value).otherwise(profile.control(c)).alias(c) for c in columns],
        pl.any_horizontal([pl.col(f"_hide_{c}") for c in columns]).alias("is_suppressed"),
    ).drop([f"_hide_{c}" for c in columns])
