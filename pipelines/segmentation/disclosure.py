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

import time
from dataclasses import dataclass, field
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


def _published(profile: DisclosureProfile, counts: list[int]) -> list[int]:
    """Return the values `profile` publishes for visible counts (its rounding)."""
    frame = pl.DataFrame({"n": counts}, schema={"n": pl.Int64})
    return frame.select(profile.control("n"))["n"].fill_null(0).to_list()


def _shown_bounds(profile: DisclosureProfile, values) -> tuple:
    """Return (lower, upper) arrays: the true counts each visible count's published value stands for."""
    import numpy as np

    values = np.asarray(values, dtype=np.int64)
    distinct = sorted(set(values.tolist()))
    ranges = dict(zip(distinct, shown_ranges(profile, _published(profile, distinct)))) if distinct else {}
    lower = np.array([ranges[v][0] for v in values.tolist()], dtype=float)
    upper = np.array([ranges[v][1] for v in values.tolist()], dtype=float)
    return lower, upper


@dataclass
class CountProblem:
    """Every published count of a month as one system a reader can reason about.

    The variables are the true counts behind published numbers ("cells"); one variable can
    appear in several published places (two indicators with the same denominator, the same
    patients counted in two tables), which is why hiding is decided per *unit* (a set of
    published numbers hidden together, e.g. a gap-table row's numerator and denominator)
    and a variable counts as hidden only when every unit showing it is hidden.

    Attributes:
        keys: one sortable key per variable (stable order: the audit never follows input order).
        values: the true count of each variable.
        relations: homogeneous linear equalities a reader knows, as (variable indices,
            coefficients) with sum(coef * x) = 0 (a total minus its parts).
        at_most: (a, b) variable pairs with x_a <= x_b (a numerator never exceeds its denominator).
        units: for each unit, the variables it shows.
        unit_keys: a sortable key per unit, for a stable choice among equals.
        unit_priority: complements come from the lowest priority first.
        implies: unit -> units hidden with it (a hidden denominator hides the whole row).
        released: earlier releases of the same counts still in readers' hands, each
            (lower, upper, shift) arrays over the variables: what that release showed of the
            count (0 to infinity where it was hidden) and how much the true count changed since.
        exact: variable -> its value, for counts every reader knows exactly (in no unit).
        unpublished: units that are never shown (hidden from the start, never a complement);
            a count only they hold must still not be narrowed down when it is small.
        fixed_hidden: variables an earlier release of the same counts hid: every unit showing
            them is hidden from the start (once hidden, a count stays hidden in every later
            release, or the later one would show what the earlier one hid).
        known_zero: variables every reader knows are 0 whatever is shown: the counts of a
            population with no member this month (0 = its count is an identity, in every cell).
        earlier_small: variable -> (low, high): a count an earlier release hid while it was
            small, as this release's values must still allow it (1..threshold there, shifted by
            the known change since): the interval left must cover low..high. This is the need
            of such a count in a problem that holds the earlier releases (`released`): a reader
            who knows the exact change learns about the earlier patients' count, so 1..threshold
            applies to it, not to today's count (which the added patients make at least the
            change). Today's count alone is held to 1..threshold by a separate pass without
            the earlier releases (month_disclosure.protect_month).
        kept_shown: units an enclosing problem already decided to show (a region's shown cells
            when its ICBs are protected under it, `pipelines.national.protection`): never hidden
            here, so never a complement; the reader's knowledge of them is their published range.
        context: variables that are what a reader knows, not what this problem protects (the
            counts of areas an enclosing problem protected, audited again elsewhere): never a
            target here, hidden or not.
        scope_sets: scope name -> the variables of a smaller model of the problem (an area and
            the areas under it, when several are protected together: `month_disclosure.protect_month`).
        scope_chain: variable -> the scopes it is audited in, smallest first; the whole connected
            part always comes last. In a scope's model every count outside it is held at its
            true value, so a point of that model is a point of the whole problem with the rest
            at the truth: what it shows a reader cannot rule out (the guarantee is the same),
            and each LP is the size of the scope, not of every area at once. A count short of
            its need is completed with complements from its smallest scope, and moves to the
            next scope only when that scope has no visible count left to hide (the rest of the
            part holds it there). Without scopes every count is audited in its whole part.
        prior_blocks: with `released`, variable -> the block it belongs to, when what the
            earlier releases allow of each count follows from its block alone: the blocks share
            no relation except through `prior_sums` totals, which those releases did not show
            (each ICB's own release, under a national one). A count's prior interval is then an
            LP over its block, not over its whole part.
        prior_sums: with `prior_blocks`, variable -> its parts: a total the earlier releases did
            not show, whose prior interval is the sum of its parts' (exact: the blocks are
            independent, and every other relation of the total is the sum of its parts').
        prior_relaxed: the blocks are a relaxation, not exact: an earlier release also showed
            totals (a national release before a re-send), which ties the blocks together. A
            block's interval (a total's: its parts' sum within its own earlier bounds) is then
            wider than what the releases allow, so a need it cuts is cut, and one it does not is
            worked out over the whole part before the count is given a complement found by
            widening the search, or declared short.
        dear_complements: a complement changes something already decided (a check of a new run
            against a release already out, `national.context`), so one is chosen only for a count
            short of its need in its whole part: a count short in a scope climbs to the next one
            (up to the whole part) first, and with `prior_relaxed` its interval is worked out over
            the whole part first. Slower (LPs over the whole part); on the scoped-audit spec tables
            it never hid more (`tests/spec/test_scoped_suppression.py`).
    """

    keys: list
    values: list
    relations: list = field(default_factory=list)
    at_most: list = field(default_factory=list)
    units: list = field(default_factory=list)
    unit_keys: list = field(default_factory=list)
    unit_priority: list = field(default_factory=list)
    implies: dict = field(default_factory=dict)
    released: list = field(default_factory=list)
    exact: dict = field(default_factory=dict)
    unpublished: set = field(default_factory=set)
    fixed_hidden: set = field(default_factory=set)
    earlier_small: dict = field(default_factory=dict)
    known_zero: set = field(default_factory=set)
    kept_shown: set = field(default_factory=set)
    context: set = field(default_factory=set)
    scope_sets: dict = field(default_factory=dict)
    scope_chain: dict = field(default_factory=dict)
    prior_blocks: dict = field(default_factory=dict)
    prior_sums: dict = field(default_factory=dict)
    prior_relaxed: bool = False
    dear_complements: bool = False


_HIGHS_STARTED = False
# Parts of at least this many counts report their progress (a national roll-up's take minutes),
# at most every PROGRESS_EVERY seconds while their counts are audited one by one.
PROGRESS_PART_SIZE = 5000
PROGRESS_EVERY = 60.0
# After this many new complements the remaining targets are re-checked with the two joint LPs
# (each such check costs two solves of the whole part; the witness points stay free).
RECHECK_EVERY = 10
# Joint LPs of one direction (up or down) go on while each certifies at least this many targets
# and this share of the targets it pushed; a direction that falls short is not tried again in
# that check (the other direction's solutions still count as witnesses for it).
JOINT_MIN_GAIN = 2
JOINT_MIN_SHARE = 0.1
# A model of at least IPM_MODEL_SIZE counts takes its first LP, and a model of at least
# IPM_JOINT_MODEL_SIZE counts a joint LP over at least IPM_JOINT_TARGETS targets, by the
# interior-point method with crossover (`_Component._run`); every other LP by the simplex from
# the last basis. (On a national roll-up part of 18,248 counts these cut its audit from 411 s to
# 171 s; the interior-point method for every joint LP of 1,000 counts or more made it slower,
# 485 s: most joint LPs re-check a few targets, which the simplex does from its last basis in
# tens of milliseconds.)
IPM_MODEL_SIZE = 5000
IPM_JOINT_TARGETS = 100
IPM_JOINT_MODEL_SIZE = 2000
# With `suppress(processes=)` above 1, parts of at least this many counts are shared out to
# forked processes (a national roll-up's parts take minutes each; an ICS month's largest, the
# SMI health checks, about a second on the demo month; a fork costs milliseconds).
PARALLEL_PART_SIZE = 1000
# The processes an ICS month's secondary suppression audits its parts in (`suppression_processes`).
PROCESSES_ENV = "CORE20_SUPPRESSION_PROCESSES"


def suppression_processes(processes: int | None = None, env: str = PROCESSES_ENV) -> int:
    """The processes `suppress` shares a problem's parts between: `processes` if given (above 0),
    else the whole number in $`env`, else every CPU this process may run on."""
    import os

    if processes is None or processes <= 0:
        text = os.environ.get(env, "").strip()
        if text:
            try:
                processes = int(text)
            except ValueError:
                raise ValueError(f"${env} must be a whole number of processes, not {text!r}") from None
        else:
            processes = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if processes < 1:
        raise ValueError(f"secondary suppression needs at least 1 process, not {processes}")
    return processes


class _PartWorkers:
    """Forked processes that audit the large parts of one `suppress` call, largest first, beside the caller.

    The parts of a problem are independent (no relation, order pair, unit or implied unit
    reaches across two), so each can be protected in its own process from the state at the
    fork and the hidden units merged afterwards: the same units as one process hides. Forked,
    not spawned, so a child starts from the problem already built (nothing pickled but the
    results, and it works inside a Celery worker, whose daemonic processes may not start
    multiprocessing children). A child takes its next part from a shared pipe (4 bytes a part
    index), sends its progress lines and each part's result back on its own pipe, and ends
    with `os._exit`; it touches no file, database or logger of the parent.

    The calling process works too: after `start` it audits the parts kept for it (the small
    ones), then takes large parts from the same pipe (`take`) until none is left, while a
    thread of its own reads the children's pipes (HiGHS lets go of the interpreter while it
    solves, so the thread reads while the caller's LPs run, and no child waits on a full pipe).
    `finish` then merges what the children sent. So `processes` processes are busy in all: the
    caller and `processes - 1` children.
    """

    # In a child: its connection to the parent (`suppress` sends an error there and exits).
    child_out = None

    def __init__(self, children: int, parts: list[int]):
        self.n_children, self.parts = children, parts
        self.children: dict = {}
        self.results: list = []
        self.failure: str | None = None
        self.queue_read: int | None = None
        self.reader = None

    @classmethod
    def fail_child(cls, error: BaseException) -> None:
        """In a child: send the error to the parent and end the process (it must never return
        into the parent's callers: a Dagster step, a Celery task)."""
        import os
        import traceback

        try:
            cls.child_out.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
        finally:
            os._exit(1)

    def start(self, progress, part_result):
        """Fork the children. In each child yield (part, progress) for every part it takes, then
        end the process; in the parent yield nothing and return once the children run.

        `progress` (called from the reader thread too: give a thread-safe one) gets the
        children's lines; after each part a child sends `part_result()` (picklable).
        """
        import gc
        import os
        import struct
        import threading
        from multiprocessing.connection import Connection

        import highspy

        # HiGHS's global task scheduler has threads a child would not have: stop them first
        # (a model's next solve starts it again).
        highspy.Highs.resetGlobalScheduler(True)
        queue_read, queue_write = os.pipe()
        os.write(queue_write, b"".join(struct.pack("<i", k) for k in self.parts))
        os.close(queue_write)
        self.queue_read = queue_read
        gc.freeze()  # the collector then leaves the parent's objects (and their pages) alone in a child
        parent = os.getpid()
        try:
            for _ in range(min(self.n_children, len(self.parts))):
                read_fd, write_fd = os.pipe()
                pid = os.fork()
                if pid == 0:
                    _die_with_parent(parent)
                    yield from self._child(queue_read, read_fd, write_fd, progress, part_result)
                os.close(write_fd)
                self.children[Connection(read_fd, writable=False)] = pid
        finally:
            gc.unfreeze()
        self.reader = threading.Thread(target=self._read, args=(progress,), name="suppression-parts", daemon=True)
        self.reader.start()

    def _read(self, progress) -> None:
        """In the parent's reader thread: relay the children's lines, keep their results, note an error."""
        import signal
        from multiprocessing.connection import wait

        waiting = list(self.children)
        while waiting:
            for conn in wait(waiting):
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    waiting.remove(conn)
                    conn.close()
                    continue
                if kind == "line" and progress is not None:
                    progress(payload)
                elif kind == "part":
                    self.results.append(payload)
                elif kind == "error" and self.failure is None:
                    self.failure = payload
                    self._signal(signal.SIGTERM)  # the call fails: the other parts' work is moot

    def _signal(self, signum) -> None:
        import os

        for pid in self.children.values():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def take(self):
        """In the parent: yield the parts it takes from the pipe itself, until none is left or a child failed."""
        import os
        import struct

        while self.failure is None:
            taken = os.read(self.queue_read, 4)
            if len(taken) < 4:
                return
            yield struct.unpack("<i", taken)[0]

    def finish(self, merge) -> None:
        """In the parent: wait for the children, hand each part's result to `merge`; raise a
        child's error as a RuntimeError naming it (no count's value: the errors name keys only)."""
        import os
        import pickle

        self.reader.join()
        self._close()
        if self.failure is not None:
            raise RuntimeError(f"secondary suppression: a part audited in its own process failed: {self.failure}")
        for payload in self.results:
            merge(pickle.loads(payload))

    def stop(self) -> None:
        """In the parent leaving early (its own part failed, or it was interrupted): no child outlives the call."""
        import signal

        self._signal(signal.SIGTERM)
        if self.reader is not None:
            self.reader.join()
        self._close()

    def _close(self) -> None:
        import os

        if self.queue_read is not None:
            os.close(self.queue_read)
            self.queue_read = None
        for pid in self.children.values():
            _, status = os.waitpid(pid, 0)
            if status != 0 and self.failure is None:
                self.failure = f"a suppression process ended with status {status}"
        self.children = {}

    @staticmethod
    def _child(queue_read, read_fd, write_fd, progress, part_result):
        """A child's life: take parts until the queue is empty, then `os._exit` (never returns)."""
        import os
        import pickle
        import struct
        from multiprocessing.connection import Connection

        os.close(read_fd)
        out = _PartWorkers.child_out = Connection(write_fd, readable=False)
        try:
            say = (lambda line: out.send(("line", line))) if progress is not None else None
            while True:
                taken = os.read(queue_read, 4)
                if len(taken) < 4:
                    break
                yield struct.unpack("<i", taken)[0], say
                out.send(("part", pickle.dumps(part_result())))
        except GeneratorExit:
            # The audit of a part raised: the error is on its way out of `_suppress`, whose
            # caller (`suppress`) sends it to the parent and ends this process.
            raise
        except BaseException as error:
            _PartWorkers.fail_child(error)
        os._exit(0)


def _die_with_parent(parent: int) -> None:
    """In a forked child: end when the parent does, however it ends.

    The parent kills its children when it fails or is interrupted (`_PartWorkers.stop`),
    but a parent killed outright (SIGKILL, the OOM killer, a Celery worker's hard time limit)
    runs no code: its children would go on solving for an hour with nobody to read them. On
    Linux the kernel sends them SIGKILL then (prctl PR_SET_PDEATHSIG); elsewhere they end at
    their next write to the closed pipe. SIGTERM, the parent's own way of stopping them, gets
    its default action back (a Celery worker installs a handler for it that a child must not run).
    """
    import ctypes
    import os
    import signal

    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:
        pass
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _new_highs():
    """Return a silent HiGHS instance.

    HiGHS prints its banner on the first instance a process makes, from C++, whatever the
    options; the pipeline's console output is for analysts, so that one construction runs
    with the process's standard output pointed at /dev/null.
    """
    import os
    import sys

    import highspy

    global _HIGHS_STARTED
    if not _HIGHS_STARTED:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _HIGHS_STARTED = True
    else:
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


class _Component:
    """One connected part of a `CountProblem` as a HiGHS model, re-solved from a warm start.

    Columns are the part's true counts x; a reader's knowledge is the rows (every relation
    and x_a <= x_b) and each visible count's bounds (the true counts its published value
    stands for). Auxiliary columns u_i <= x_i and d_i >= x_i, added for a variable when it
    first becomes a target, let one LP push many targets up (maximise sum of u_i capped at
    what each needs) or down at once: a target that reaches its need in the joint optimum
    is certified, since its own LP could only do better (the shortcut of the previous audit).
    Bounds and costs change between solves; HiGHS keeps its basis, so a re-solve after hiding
    one cell costs a fraction of a fresh solve (measured: see the README's suppression figures).
    """

    def __init__(self, variables, problem: CountProblem, lower, upper, hidden_bounds, relations=None, at_most=None,
                 seen=None):
        import highspy
        import numpy as np

        self.highspy = highspy
        self.variables = list(variables)
        self.index = np.array(self.variables, dtype=np.int64)
        self.local = {v: i for i, v in enumerate(self.variables)}
        self.relations = problem.relations if relations is None else relations
        self.at_most = problem.at_most if at_most is None else at_most
        self.lower, self.upper = lower, upper
        h = _new_highs()
        # Presolve rebuilds the model each time; these LPs are re-solved many times from a
        # warm basis, where presolve costs more than it saves.
        h.setOptionValue("presolve", "off")
        h.setOptionValue("random_seed", 0)
        # Every change between solves (a new objective, a bound relaxed by hiding a count) keeps
        # the last solution feasible, so primal simplex restarts from it where dual would not.
        h.setOptionValue("simplex_strategy", 4)
        # Crossover (the default) turns an interior-point optimum into a vertex: its duals name the
        # visible counts that bind, as a simplex optimum's do, and its basis warm-starts the next solve.
        h.setOptionValue("run_crossover", "on")
        inf = highspy.kHighsInf
        n = len(self.variables)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.col_cost_ = np.zeros(n)
        lp.col_lower_ = np.array([lower[v] for v in self.variables], dtype=float)
        lp.col_upper_ = np.array([upper[v] if np.isfinite(upper[v]) else inf for v in self.variables], dtype=float)
        rows_lower, rows_upper, starts, index, value = [], [], [0], [], []
        # A count outside the model (a scope of a larger part: `CountProblem.scope_sets`) is held at
        # its true value: its terms move to the right-hand side, so every point of the model is a
        # point of the whole problem (the rest at the truth) and certifies what it shows.
        for members, coefficients in self.relations:
            local, constant = [], 0.0
            for m, c in zip(members, coefficients):
                if m in self.local:
                    local.append((self.local[m], c))
                else:
                    constant -= float(c) * problem.values[m]
            if not local:
                continue
            merged: dict[int, float] = {}
            for i, c in local:
                # A variable listed twice in one identity (two of its populations share a class)
                # is one column: HiGHS refuses duplicate entries in a row.
                merged[i] = merged.get(i, 0.0) + float(c)
            merged = {i: c for i, c in merged.items() if c != 0.0}
            if not merged:
                continue
            for i, c in sorted(merged.items()):
                index.append(i)
                value.append(c)
            starts.append(len(index))
            rows_lower.append(constant)
            rows_upper.append(constant)
        # An order pair that the two counts' bounds already keep (a numerator shown as at most 12
        # under a denominator shown as at least 48) is no row: a quarter to a half of a month's
        # pairs, and each row costs every simplex iteration. It waits, dormant, until hiding one
        # of its counts widens the bounds enough for the pair to bind (`set_hidden`).
        self.dormant: dict[int, list[tuple[int, int]]] = {}
        for a, b in self.at_most:
            # a == b when the numerator is the whole denominator (the same population): nothing to add.
            if a == b or (a not in self.local and b not in self.local):
                continue
            high_a = upper[a] if a in self.local else problem.values[a]
            low_b = lower[b] if b in self.local else problem.values[b]
            if high_a <= low_b:
                for m in (a, b):
                    if m in self.local:
                        self.dormant.setdefault(self.local[m], []).append((a, b))
                continue
            if a in self.local and b in self.local:
                index += [self.local[a], self.local[b]]
                value += [1.0, -1.0]
                rows_upper.append(0.0)
            elif a in self.local:
                index.append(self.local[a])  # x_a <= the true x_b
                value.append(1.0)
                rows_upper.append(float(problem.values[b]))
            else:
                index.append(self.local[b])  # the true x_a <= x_b
                value.append(-1.0)
                rows_upper.append(-float(problem.values[a]))
            starts.append(len(index))
            rows_lower.append(-inf)
        if not rows_lower:
            # A part with no relation at all (one count alone): HiGHS calls a row-less model
            # 'empty' rather than solving it, so it gets the trivial row x >= 0.
            index.append(0)
            value.append(1.0)
            starts.append(len(index))
            rows_lower.append(0.0)
            rows_upper.append(inf)
        lp.num_row_ = len(rows_lower)
        lp.row_lower_ = np.array(rows_lower, dtype=float)
        lp.row_upper_ = np.array(rows_upper, dtype=float)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
        lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
        lp.a_matrix_.value_ = np.array(value, dtype=float)
        lp.a_matrix_.num_col_ = n
        lp.a_matrix_.num_row_ = len(rows_lower)
        status = h.passModel(lp)
        if status != highspy.HighsStatus.kOk:
            raise RuntimeError(f"secondary suppression audit: HiGHS refused the model ({status}); "
                               f"{n} counts, {len(rows_lower)} rows")
        self.rows = (np.array(starts, dtype=np.int64), np.array(index, dtype=np.int64), np.array(value, dtype=float),
                     np.array(rows_lower, dtype=float), np.array(rows_upper, dtype=float))
        self.truth = np.array([problem.values[v] for v in self.variables], dtype=float)
        self.col_lower = np.array(lp.col_lower_, dtype=float)
        self.col_upper = np.array(lp.col_upper_, dtype=float)
        self.hidden_lower = np.array([hidden_bounds[v][0] for v in self.variables], dtype=float)
        self.hidden_upper = np.array([hidden_bounds[v][1] if np.isfinite(hidden_bounds[v][1]) else inf
                                      for v in self.variables], dtype=float)
        self.truth_outside = problem.values
        self.h = h
        self.n = n
        self.solves = 0
        # Bumped whenever a count of the model is hidden (its bounds widen): a target re-checked
        # jointly at one version and left uncertified gets nothing new from another joint LP of
        # the same version (`_suppress`'s `certify` skips it; `protect` still audits it alone).
        self.version = 0
        # Every solution is a point a reader cannot rule out, so the lowest and highest value
        # each count took in any solution so far are within its interval: a target they
        # already cover needs no LP of its own. (Hiding only adds points; they stay valid.)
        # `seen`: (low, high) arrays over every variable of the problem, shared by the models of
        # one part's scopes (a point of one is a point of the whole problem).
        if seen is None:
            self.seen_low, self.seen_high, self.shared = self.truth.copy(), self.truth.copy(), False
        else:
            self.seen_low, self.seen_high, self.shared = seen[0], seen[1], True

    def _truth_violation(self) -> str:
        """Describe how far the true counts are from the model's rows and bounds (for an error; no values)."""
        import numpy as np

        starts, index, value, lower, upper = self.rows
        activity = np.add.reduceat(value * self.truth[index], starts[:-1]) if len(index) else np.zeros(0)
        activity[np.diff(starts) == 0] = 0.0
        rows = float(np.max(np.maximum(lower - activity, activity - upper), initial=0.0))
        columns = float(np.max(np.maximum(self.col_lower - self.truth, self.truth - self.col_upper), initial=0.0))
        return f"the true counts break a row by {rows:g} and a bound by {columns:g}"

    def set_hidden(self, variable) -> None:
        i = self.local[variable]
        self.version += 1
        self.col_lower[i], self.col_upper[i] = self.hidden_lower[i], self.hidden_upper[i]
        self.h.changeColBounds(i, self.col_lower[i], self.col_upper[i])
        for a, b in self.dormant.pop(i, ()):
            # The pair's other count may still hold it dormant under its own key: wake it once.
            ia, ib = self.local.get(a), self.local.get(b)
            other = ib if ia == i else ia
            if other is not None:
                pairs = self.dormant.get(other, [])
                if (a, b) not in pairs:
                    continue  # already woken through the other count
                pairs.remove((a, b))
            high_a = self.col_upper[ia] if ia is not None else self.truth_outside[a]
            low_b = self.col_lower[ib] if ib is not None else self.truth_outside[b]
            if high_a <= low_b:
                # Still kept by the bounds: dormant again under each count's key.
                for m in (ia, ib):
                    if m is not None:
                        self.dormant.setdefault(m, []).append((a, b))
                continue
            self._add_pair(a, b, ia, ib)

    def _add_pair(self, a, b, ia, ib) -> None:
        """Add the row x_a <= x_b (a count outside the model at its true value)."""
        import numpy as np

        if ia is not None and ib is not None:
            index, value, upper = [ia, ib], [1.0, -1.0], 0.0
        elif ia is not None:
            index, value, upper = [ia], [1.0], float(self.truth_outside[b])
        else:
            index, value, upper = [ib], [-1.0], -float(self.truth_outside[a])
        self.h.addRow(-self.highspy.kHighsInf, upper, len(index), np.array(index, dtype=np.int32),
                      np.array(value, dtype=float))
        starts, row_index, row_value, lower, row_upper = self.rows
        self.rows = (np.append(starts, starts[-1] + len(index)), np.append(row_index, index), np.append(row_value, value),
                     np.append(lower, -np.inf), np.append(row_upper, upper))

    def _run(self, costs: dict[int, float]):
        import numpy as np

        columns = np.array(sorted(costs), dtype=np.int32)
        self.h.changeColsCost(len(columns), columns, np.array([costs[c] for c in columns.tolist()], dtype=float))
        # A large model's first solve, and a joint LP over many targets (many costs at once, far
        # from the last optimum), by the interior-point method with crossover to a vertex: the
        # simplex from a slack basis, or from a basis the new objective is far from, takes
        # thousands of iterations there. The crossover's basis then warm-starts the simplex of
        # the LPs that follow. (Measured on a national roll-up part of 18,248 counts: its first
        # solve 154 s by the simplex, 12 s so; a joint LP of 1,458 targets over 4,764 counts
        # 15-29 s against 1.7 s.)
        interior = ((self.solves == 0 and self.n >= IPM_MODEL_SIZE)
                    or (len(columns) >= IPM_JOINT_TARGETS and self.n >= IPM_JOINT_MODEL_SIZE))
        solver = self.h
        if interior:
            # In an instance of its own: switching one instance between the two solvers
            # corrupted the heap (HiGHS 1.16, seen on the 3-ICB roll-up).
            solver = _new_highs()
            solver.setOptionValue("presolve", "off")
            solver.setOptionValue("solver", "ipm")
            solver.setOptionValue("run_crossover", "on")
            solver.passModel(self.h.getLp())
        solver.run()
        self.solves += 1
        status = solver.getModelStatus()
        if interior and status == self.highspy.HighsModelStatus.kOptimal:
            self.h.setBasis(solver.getBasis())  # the crossover's vertex: the simplex's next start
        if interior and status != self.highspy.HighsModelStatus.kOptimal:
            # (The interior-point method may stop short, e.g. on an unbounded LP: the simplex decides.)
            solver = self.h
            self.h.run()
            self.solves += 1
            status = self.h.getModelStatus()
        if status not in (self.highspy.HighsModelStatus.kOptimal, self.highspy.HighsModelStatus.kUnbounded):
            # The true counts satisfy every row, so a model that is not optimal is the solver's
            # numerical trouble or a bug: solved again from no basis with the dual simplex, and if
            # that fails too, the truth is checked against the rows.
            # (Measured: HiGHS's primal simplex without presolve called a model of 18,248 counts
            # infeasible that its dual simplex, and the truth, show is not.)
            self.h.clearSolver()
            self.h.setOptionValue("simplex_strategy", 1)
            self.h.run()
            self.h.setOptionValue("simplex_strategy", 4)
            self.solves += 1
            status = self.h.getModelStatus()
        self.h.changeColsCost(len(columns), columns, np.zeros(len(columns)))
        if status == self.highspy.HighsModelStatus.kUnbounded:
            return None
        if status != self.highspy.HighsModelStatus.kOptimal:
            # The true counts always satisfy every relation, so this is a bug in the caller's
            # relations or counts, never something to publish through.
            raise RuntimeError(f"secondary suppression audit: the counts do not fit the relations "
                               f"({self.h.modelStatusToString(status)}; {self._truth_violation()})")
        solution = solver.getSolution()
        x = np.asarray(solution.col_value[: self.n])
        if self.shared:
            self.seen_low[self.index] = np.minimum(self.seen_low[self.index], x)
            self.seen_high[self.index] = np.maximum(self.seen_high[self.index], x)
        else:
            np.minimum(self.seen_low, x, out=self.seen_low)
            np.maximum(self.seen_high, x, out=self.seen_high)
        return solution

    def seen(self, variable) -> tuple[float, float]:
        """Return the lowest and highest value the count took in any solution so far."""
        i = variable if self.shared else self.local[variable]
        return self.seen_low[i], self.seen_high[i]

    def extreme(self, variable, sign: float):
        """Return (value, binding visible variables) of min (sign +1) or max (sign -1) of a count."""
        solution = self._run({self.local[variable]: sign})
        if solution is None:
            return float("inf"), []
        import numpy as np

        value = solution.col_value[self.local[variable]]
        duals = np.asarray(solution.col_dual[: self.n])
        binding = [self.variables[i] for i in np.flatnonzero(np.abs(duals) > 1e-9).tolist()]
        return value, binding

    def joint(self, targets: dict, up: bool) -> set:
        """Return the targets shown to reach their need (dict variable -> need) in one joint LP.

        Each target is capped at its need for the solve (up: x <= need, maximise the sum; down:
        x >= need, minimise it) and reaches it when it sits on the cap at the optimum. The true
        counts satisfy every cap (a small count is within 1..threshold, any other count within
        one of itself), so the capped LP is feasible; its solution is also a witness point.
        """
        import numpy as np

        inf = self.highspy.kHighsInf
        order = sorted(targets)
        columns = np.array([self.local[v] for v in order], dtype=np.int32)
        saved_lower = self.col_lower[columns]
        saved_upper = self.col_upper[columns]
        need = np.array([float(targets[v]) for v in order])
        if up:
            self.h.changeColsBounds(len(columns), columns, saved_lower, np.minimum(saved_upper, need))
        else:
            self.h.changeColsBounds(len(columns), columns, np.maximum(saved_lower, need), saved_upper)
        try:
            solution = self._run({c: (-1.0 if up else 1.0) for c in columns.tolist()})
        finally:
            self.h.changeColsBounds(len(columns), columns, saved_lower, saved_upper)
        if solution is None:
            return set()
        values = np.asarray(solution.col_value)[columns]
        hit = values >= need - 1e-6 if up else values <= need + 1e-6
        return {v for v, ok in zip(order, hit.tolist()) if ok}


def _components(problem: CountProblem) -> list[list[int]]:
    """Return the variables in connected groups: relations, order pairs and shared units link them.

    Union-find over the links (scipy's graph module costs more to import than this takes).
    """
    parent = list(range(len(problem.keys)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def link(group) -> None:
        group = list(group)
        if len(group) > 1:
            first = root(group[0])
            for m in group[1:]:
                other = root(m)
                if other != first:
                    parent[other] = first

    for members, _ in problem.relations:
        link(members)
    for pair in problem.at_most:
        link(pair)
    for unit in problem.units:
        link(unit)
    for unit, others in problem.implies.items():
        link([problem.units[u][0] for u in (unit, *others) if problem.units[u]])
    groups: dict[int, list[int]] = {}
    for v in range(len(parent)):
        groups.setdefault(root(v), []).append(v)
    return sorted(groups.values(), key=lambda g: g[0])


def _public_zeros(problem: CountProblem, visible_zero: set, relations=None, at_most=None) -> set:
    """Return the variables any reader knows are 0: a visible 0, the parts of a total known to
    be 0, and anything at most a count known to be 0 (counts are not negative).

    `relations` and `at_most` default to the whole problem's; a connected part's own are enough
    for the variables of that part (no relation reaches across parts).
    """
    return _ZeroRules(problem.relations if relations is None else relations,
                      problem.at_most if at_most is None else at_most).closure(visible_zero)


class _ZeroRules:
    """The rules by which a reader infers a 0, indexed once and applied from any set of visible zeros.

    A relation's parts (negative coefficients) are 0 once all its totals (positive ones) are;
    x_a is 0 once x_b is, for every pair x_a <= x_b. `closure` follows the rules from each new
    zero only, so it costs the rules that fire, not a sweep of every relation until nothing
    changes: a national roll-up part hides a visible 0 thousands of times, and each time the
    zeros are worked out again (py-spy on a part of 58,160 counts: 16% of its audit in the sweeps).
    """

    def __init__(self, relations, at_most):
        self.parts: list[list[int]] = []
        self.n_totals: list[int] = []
        self.as_total: dict[int, list[int]] = {}
        for members, coefficients in relations:
            totals = {m for m, c in zip(members, coefficients) if c > 0}
            r = len(self.parts)
            self.parts.append([m for m, c in zip(members, coefficients) if c < 0])
            self.n_totals.append(len(totals))
            for t in totals:
                self.as_total.setdefault(t, []).append(r)
        self.below: dict[int, list[int]] = {}
        for a, b in at_most:
            self.below.setdefault(b, []).append(a)

    def closure(self, visible_zero) -> set:
        zero: set = set()
        left = list(self.n_totals)
        stack = list(visible_zero)
        while stack:
            v = stack.pop()
            if v in zero:
                continue
            zero.add(v)
            for r in self.as_total.get(v, ()):
                left[r] -= 1
                if left[r] == 0:
                    stack.extend(self.parts[r])
            stack.extend(self.below.get(v, ()))
        return zero


@dataclass
class SuppressionResult:
    """What `suppress` decided: the hidden units and how much work the audit did."""

    hidden_units: set
    n_lp_solves: int = 0
    n_components: int = 0
    n_complements: int = 0
    n_prior_cut: int = 0
    largest_model: int = 0
    n_models: int = 0
    smallest_model: int = 0


def suppress(problem: CountProblem, profile: DisclosureProfile, primary_units: set | None = None,
             progress=None, processes: int = 1) -> SuppressionResult:
    """Return the units to hide so that no hidden count can be narrowed down from everything published.

    Arguments:
        problem: every count, relation and unit of the month (`CountProblem`).
        profile: the disclosure profile; its rounding is what a reader knows of each visible count.
        primary_units: units hidden by the small-count rule; default: every unit showing a
            count of 1 to the profile's threshold.
        progress: called with a line of text (no count's value) as each large part starts and ends.
        processes: with more than 1, the parts of at least PARALLEL_PART_SIZE counts are audited
            in `processes - 1` forked processes beside this one (`_PartWorkers`); the units
            hidden are the same.

    The rule (DOMAIN.md section 6; the audit of cell suppression in Hundepool et al.,
    *Handbook on Statistical Disclosure Control*, ch. 4): for every hidden count, the values
    a reader can still hold possible, by linear programming over every relation, every order
    pair, what each visible count stands for and non-negativity, must

    - include every count from 1 to the threshold, for a small count;
    - include more than one value, for any other hidden count (a complement is not pinned),
      unless a visible 0 already tells every reader it is 0 (the parts of a total shown as 0).

    While a count falls short, the unit with the lowest priority (then not a zero, then the
    smallest count) among those showing a visible count that binds in the failing LP is
    hidden, with the units it implies, and the check repeats. Hiding only widens every
    interval, so a count once protected stays so and the loop ends.
    """
    started: list[_PartWorkers] = []
    try:
        return _suppress(problem, profile, primary_units, progress, processes, started)
    except BaseException as error:
        if _PartWorkers.child_out is not None:
            _PartWorkers.fail_child(error)  # a forked child never returns into its parent's callers
        for workers in started:
            workers.stop()  # no part process outlives a call that failed here
        raise


def _one_at_a_time(progress):
    """`progress`, called by one thread at a time (a line is never cut into by another)."""
    import threading

    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            progress(line)

    return say


def _suppress(problem: CountProblem, profile: DisclosureProfile, primary_units: set | None, progress,
              processes: int, started: list) -> SuppressionResult:
    import numpy as np

    n = len(problem.keys)
    values = np.asarray(problem.values, dtype=np.int64)
    threshold = max(profile.small_count_threshold, 1)
    suppresses = profile.small_count_action in ("suppress", "redact") and profile.small_count_threshold > 0
    if not suppresses or n == 0:
        return SuppressionResult(set())
    is_small = (values >= 1) & (values <= profile.small_count_threshold)
    units_of: dict[int, list[int]] = {}
    for u, members in enumerate(problem.units):
        for m in members:
            units_of.setdefault(m, []).append(u)
    if primary_units is None:
        primary_units = {u for u, members in enumerate(problem.units) if any(is_small[m] for m in members)}

    hidden_units: set[int] = set()
    # Units hidden since the current part last looked: only their counts can have become hidden.
    recent_units: list[int] = []

    def hide_unit(u: int) -> None:
        stack = [u]
        while stack:
            x = stack.pop()
            if x in hidden_units:
                continue
            hidden_units.add(x)
            recent_units.append(x)
            stack.extend(problem.implies.get(x, ()))

    fixed_units = {u for v in problem.fixed_hidden for u in units_of.get(v, ())}
    for u in sorted(set(primary_units) | set(problem.unpublished) | fixed_units):
        hide_unit(u)
    if hidden_units & problem.kept_shown:
        # An enclosing problem showed a unit this one must hide (its count is small here): the
        # two problems do not describe the same counts.
        raise ValueError(f"suppress: {len(hidden_units & problem.kept_shown)} unit(s) kept shown are hidden from the start "
                         f"(e.g. {problem.unit_keys[min(hidden_units & problem.kept_shown)]})")
    only_unpublished = {v for v, us in units_of.items() if all(u in problem.unpublished for u in us)}

    def is_hidden(v: int) -> bool:
        shown_in = units_of.get(v, ())
        return bool(shown_in) and all(u in hidden_units for u in shown_in)

    lower, upper = _shown_bounds(profile, values)
    # Earlier releases of the same month still in readers' hands: each narrows what the
    # variable can be (its bounds there, shifted by the known change in the true count).
    fixed_lower, fixed_upper = np.zeros(n), np.full(n, np.inf)
    for release_lower, release_upper, shift in problem.released:
        fixed_lower = np.maximum(fixed_lower, np.asarray(release_lower) + np.asarray(shift))
        fixed_upper = np.minimum(fixed_upper, np.asarray(release_upper) + np.asarray(shift))

    def bounds_for(v: int) -> tuple[float, float]:
        if v in problem.exact:
            return float(problem.exact[v]), float(problem.exact[v])
        if is_hidden(v):
            return fixed_lower[v], fixed_upper[v]
        return max(lower[v], fixed_lower[v]), min(upper[v], fixed_upper[v])

    # Counts an earlier release fixed exactly (shown as 0 then, the parts of such a total, the
    # numerators of such a denominator): known to every reader of that release.
    known_before = (_public_zeros(problem, {v for v in range(n) if fixed_upper[v] - fixed_lower[v] < 0.5})
                    if problem.released else set())
    components = _components(problem)
    result = SuppressionResult(hidden_units, n_components=len(components))
    order = np.argsort(np.array([repr(k) for k in problem.keys]), kind="stable")
    rank_of = np.empty(n, dtype=np.int64)
    rank_of[order] = np.arange(n)

    def unit_rank(u: int):
        members = problem.units[u]
        worst = max([problem.unit_priority[u], *(problem.unit_priority[x] for x in problem.implies.get(u, ()))])
        smallest = min(values[m] for m in members) if members else 0
        return worst, smallest == 0, smallest, problem.unit_keys[u]

    # Units that cannot be hidden: kept shown, or hiding them hides a unit kept shown.
    # One walk back along `implies` from the kept units, not a walk forward from every unit.
    blocked = set(problem.kept_shown)
    if blocked:
        implied_by: dict[int, list[int]] = {}
        for x, implied in problem.implies.items():
            for y in implied:
                implied_by.setdefault(y, []).append(x)
        stack = list(blocked)
        while stack:
            for x in implied_by.get(stack.pop(), ()):
                if x not in blocked:
                    blocked.add(x)
                    stack.append(x)

    def cost_of_hiding(v: int):
        # Hiding a variable means hiding every unit that shows it.
        units = [u for u in units_of.get(v, ()) if u not in hidden_units]
        if blocked and any(u in blocked for u in units):
            return None
        ranks = [unit_rank(u) for u in units]
        return max(ranks) if ranks else None

    # Each part's own relations and order pairs (none reaches across parts).
    part_of = np.empty(n, dtype=np.int64)
    for k, variables in enumerate(components):
        part_of[variables] = k
    part_relations: list[list] = [[] for _ in components]
    part_at_most: list[list] = [[] for _ in components]
    for relation in problem.relations:
        if relation[0]:
            part_relations[part_of[relation[0][0]]].append(relation)
    for pair in problem.at_most:
        part_at_most[part_of[pair[0]]].append(pair)

    # Scopes (`CountProblem.scope_sets`): each target is audited first in the smallest model that
    # can certify it, the rest of its part held at the truth; the whole part is the last scope.
    scoped = bool(problem.scope_chain)
    seen_all = (np.asarray(values, dtype=float).copy(), np.asarray(values, dtype=float).copy()) if scoped else None

    # Parts of PARALLEL_PART_SIZE counts or more go to forked processes, largest first, while
    # this process audits the rest and then takes large parts too (`_PartWorkers`): when there are
    # two large parts or more, or one and at least as many counts in the rest.
    with_hidden = [k for k, variables in enumerate(components) if any(is_hidden(v) for v in variables)]
    forked = sorted((k for k in with_hidden if len(components[k]) >= PARALLEL_PART_SIZE),
                    key=lambda k: (-len(components[k]), k)) if processes > 1 else []
    rest = sum(len(components[k]) for k in with_hidden if k not in forked)
    forked = forked if len(forked) > 1 or (forked and rest >= PARALLEL_PART_SIZE) else []
    counters = ("n_lp_solves", "n_complements", "n_prior_cut", "n_models")
    sent: dict = {}

    def part_result() -> tuple:
        """In a child: the units hidden and the work done since the last part's result."""
        units = hidden_units - sent["units"]
        sent["units"] |= units
        done = {c: getattr(result, c) - sent[c] for c in counters}
        sent.update({c: getattr(result, c) for c in counters})
        return units, done, result.largest_model, result.smallest_model

    def merge_part(part: tuple) -> None:
        units, done, largest, smallest = part
        hidden_units.update(units)
        for c, n in done.items():
            setattr(result, c, getattr(result, c) + n)
        result.largest_model = max(result.largest_model, largest)
        sizes = [x for x in (result.smallest_model, smallest) if x]
        result.smallest_model = min(sizes) if sizes else 0

    def parts_here():
        nonlocal progress
        if not forked:
            yield from enumerate(components)
            return
        elsewhere = set(forked)
        if progress is not None:
            progress = _one_at_a_time(progress)  # the reader thread relays the children's lines beside this process's
        sent.update({"units": set(hidden_units), **{c: getattr(result, c) for c in counters}})
        workers = _PartWorkers(processes - 1, forked)
        started.append(workers)  # `suppress` stops them if this process fails or is interrupted
        for k, say in workers.start(progress, part_result):
            progress = say  # in a child: its lines go to the parent
            yield k, components[k]
        yield from ((k, variables) for k, variables in enumerate(components) if k not in elsewhere)
        yield from ((k, components[k]) for k in workers.take())
        workers.finish(merge_part)

    for k, variables in parts_here():
        if not any(is_hidden(v) for v in variables):
            continue
        relations, at_most = part_relations[k], part_at_most[k]
        in_part = set(variables)
        models: dict = {}
        level: dict[int, int] = {}
        relations_of: dict[int, list[int]] = {}
        pairs_of: dict[int, list[int]] = {}

        def chain(v: int) -> tuple:
            return (*problem.scope_chain.get(v, ()), None)

        def scope_of(v: int):
            return chain(v)[level.get(v, 0)]

        def model(scope) -> _Component:
            """The part's model of one scope (None: the whole part), built on first use."""
            found = models.get(scope)
            if found is not None:
                return found
            if scope is None:
                members, scope_relations, scope_pairs = variables, relations, at_most
            else:
                if not relations_of:
                    for r, (rel_members, _) in enumerate(relations):
                        for m in rel_members:
                            relations_of.setdefault(m, []).append(r)
                    for r, (a, b) in enumerate(at_most):
                        pairs_of.setdefault(a, []).append(r)
                        pairs_of.setdefault(b, []).append(r)
                inside = problem.scope_sets[scope]
                members = [v for v in variables if v in inside]
                scope_relations = [relations[r] for r in sorted({r for v in members for r in relations_of.get(v, ())})]
                scope_pairs = [at_most[r] for r in sorted({r for v in members for r in pairs_of.get(v, ())})]
            bounds = {v: bounds_for(v) for v in members}
            built = models[scope] = _Component(members, problem, {v: b[0] for v, b in bounds.items()},
                                               {v: b[1] for v, b in bounds.items()},
                                               {v: (fixed_lower[v], fixed_upper[v]) for v in members},
                                               scope_relations, scope_pairs, seen=seen_all)
            return built

        if not scoped:
            component = model(None)
        seen_hidden = {v for v in variables if is_hidden(v)}
        recent_units.clear()
        checked: dict[int, tuple] = {}  # target -> (scope, model version) of its last joint check
        # scope -> (model version, counts to wait for): a scope whose last joint re-check certified
        # fewer than JOINT_MIN_GAIN targets is re-checked again only once that many more of its
        # counts are hidden, the wait doubling each fruitless time (`certify`).
        backoff: dict = {}
        # With earlier releases: what they and the structure alone allow of a count (`_within_prior`),
        # from a model of the part with every count hidden, built when a target first falls short.
        prior: dict[int, tuple[float, float]] = {}
        prior_model: list = []

        block_models: dict = {}

        def block_prior(v: int) -> tuple[float, float]:
            """`prior_interval` from the count's block alone, or as the sum of its parts' (`CountProblem.prior_blocks`)."""
            if v in problem.prior_sums:
                ends = [prior_interval(x) for x in problem.prior_sums[v]]
                # Within what the earlier releases showed of the total itself (none: 0 up).
                return max(sum(e[0] for e in ends), fixed_lower[v]), min(sum(e[1] for e in ends), fixed_upper[v])
            block = problem.prior_blocks.get(v)
            if block is None:
                return 0.0, float("inf")  # nothing the earlier releases showed bounds it
            if block not in block_models:
                members = [x for x in variables if problem.prior_blocks.get(x) == block]
                inside = set(members)
                hidden_all = {x: ((float(problem.exact[x]),) * 2 if x in problem.exact else (fixed_lower[x], fixed_upper[x]))
                              for x in members}
                block_models[block] = _Component(
                    members, problem, {x: b[0] for x, b in hidden_all.items()}, {x: b[1] for x, b in hidden_all.items()},
                    hidden_all, [r for r in relations if all(m in inside for m in r[0])],
                    [pair for pair in at_most if pair[0] in inside and pair[1] in inside])
            model = block_models[block]
            result.n_lp_solves += 2
            return model.extreme(v, 1.0)[0], model.extreme(v, -1.0)[0]

        def prior_interval(v: int, whole: bool = False) -> tuple[float, float]:
            """What the earlier releases and the structure alone allow of the count (with earlier releases only).

            From the count's block (`CountProblem.prior_blocks`) where there are blocks, unless
            `whole`: then over the whole part (what a relaxed block allows, narrowed to the truth).
            """
            if v in prior and not whole:
                return prior[v]
            if problem.prior_blocks and not whole:
                prior[v] = block_prior(v)
                return prior[v]
            if not prior_model:
                hidden_all = {x: ((float(problem.exact[x]),) * 2 if x in problem.exact else (fixed_lower[x], fixed_upper[x]))
                              for x in variables}
                prior_model.append(_Component(variables, problem, {x: b[0] for x, b in hidden_all.items()},
                                              {x: b[1] for x, b in hidden_all.items()}, hidden_all, relations, at_most))
            model = prior_model[0]
            prior[v] = (model.extreme(v, 1.0)[0], model.extreme(v, -1.0)[0])
            result.n_lp_solves += 2
            return prior[v]

        worked_whole: set = set()

        def learn_prior(v: int, whole: bool = False) -> bool:
            """Work out the count's prior interval (over its whole part: `whole`, once, where the
            blocks are relaxed); return whether it cut the count's need."""
            if not problem.released:
                return False
            if whole:
                if not problem.prior_relaxed or v in worked_whole:
                    return False
                worked_whole.add(v)
            elif v in prior:
                return False
            before = needs(v)
            prior_interval(v, whole)
            if needs(v) != before:
                result.n_prior_cut += 1
                return True
            return False

        zero_rules = _ZeroRules(relations, at_most)
        # The visible zeros only shrink as counts are hidden (`refresh`).
        visible_zero = {v for v in variables if (not is_hidden(v) and values[v] == 0 and upper[v] == 0)
                        or v in problem.known_zero}
        zero = zero_rules.closure(visible_zero)

        def needs(v: int) -> tuple[float | None, float | None]:
            """(need_low, need_high): the values the count's interval must reach; None: no need."""
            if v in problem.earlier_small:
                # Small in an earlier release still in readers' hands: cover that range, shifted
                # to this release's counts (see CountProblem.earlier_small).
                low, high = problem.earlier_small[v]
                return _within_prior(v, float(low), float(high))
            if v in known_before:
                # An earlier release still in readers' hands fixed it (a visible 0 then, or a part
                # of one): today's value is that plus the known change, whatever this release hides.
                return None, None
            if is_small[v]:
                low, high = 1.0, float(threshold)
            elif v in zero or v in only_unpublished:
                return None, None
            else:
                low, high = (float(values[v] - 1) if values[v] >= 1 else None), float(values[v] + 1)
            return _within_prior(v, low, high)

        def _within_prior(v: int, low, high):
            """Today's need, cut to what the earlier releases and the structure alone already allow.

            A reader holding every earlier release and the exact change knows the count is within
            `prior[v]` whatever this release shows (every count hidden today); this release can
            only fail to narrow that, so a need beyond it is void (e.g. a count an earlier release
            showed, exactly fixed by its rounded neighbours there, hidden today as a complement).
            """
            if v not in prior:
                return low, high
            prior_low, prior_high = prior[v]
            if small_like(v):
                return max(low, prior_low), min(high, prior_high)
            if high is not None and high > prior_high + 1e-6:
                high = None
            if low is not None and low < prior_low - 1e-6:
                low = None
            return low, high

        def small_like(v: int) -> bool:
            """Whether both ends of the count's need must be reached (a small count, now or in a release)."""
            return (bool(is_small[v]) and v not in known_before) or v in problem.earlier_small

        def refresh() -> list[int]:
            # A count becomes hidden when its last unit does, so only the counts of the units
            # hidden since the last look can be new (in the part's order, as a scan of it gave).
            touched = {m for u in recent_units for m in problem.units[u] if m in in_part}
            recent_units.clear()
            newly = sorted(v for v in touched if v not in seen_hidden and is_hidden(v))
            for v in newly:
                seen_hidden.add(v)
                for built in models.values():
                    if v in built.local:
                        built.set_hidden(v)
            if any(v in visible_zero and v not in problem.known_zero for v in newly):
                # A visible 0 is hidden now: what it told every reader must be worked out again.
                visible_zero.difference_update(v for v in newly if v not in problem.known_zero)
                zero.clear()
                zero.update(zero_rules.closure(visible_zero))
            return [v for v in newly if v not in problem.context]

        def seen(v: int) -> tuple[float, float]:
            if scoped:
                return seen_all[0][v], seen_all[1][v]
            return component.seen(v)

        def covered(v: int) -> bool:
            low, high = needs(v)
            if low is None and high is None:
                return True
            seen_low, seen_high = seen(v)
            reaches_high = high is not None and seen_high >= high - 1e-6
            reaches_low = low is not None and seen_low <= low + 1e-6
            return (reaches_high and reaches_low) if small_like(v) else (reaches_high or reaches_low)

        def reaches(v: int, up: bool) -> bool:
            """Whether a solution so far took the count to its need in that direction."""
            low, high = needs(v)
            seen_low, seen_high = seen(v)
            if up:
                return high is not None and seen_high >= high - 1e-6
            return low is not None and seen_low <= low + 1e-6

        def wants(v: int, up: bool) -> bool:
            """Whether the count still needs a point in that direction (small: both ends; else either)."""
            low, high = needs(v)
            if (high if up else low) is None or reaches(v, up):
                return False
            return small_like(v) or not reaches(v, not up)

        def certify(targets: list[int], recheck: bool = False) -> list[int]:
            """Return the targets the solutions so far and joint LPs could not certify.

            Rounds alternate up and down, each over the targets still open in its direction: a
            joint optimum trades targets against each other (two hidden parts of one total
            cannot both rise), so the next round gives the objective to those left. A direction
            stops once one of its rounds certifies fewer than JOINT_MIN_GAIN targets or
            JOINT_MIN_SHARE of those it pushed (each joint LP costs about what two to four single
            ones do; measured on the demo month, the SMI part's down rounds went on certifying
            nothing while its up rounds still gained, at 20-30 ms a round). In a re-check
            (`recheck`) of a scoped audit, a scope whose last re-check certified fewer than
            JOINT_MIN_GAIN targets waits (`backoff`); its targets are still audited one by one,
            so nothing is skipped. (An ICS month has one model per part and is not scoped: its
            re-checks, and so its complements, are as before.)
            """
            targets = [v for v in targets if not covered(v)]
            by_scope: dict = {}
            for v in targets:
                by_scope.setdefault(scope_of(v), []).append(v)  # in the targets' order: a stable model order
            left: list[int] = []
            for scope, group in by_scope.items():
                scope_model = model(scope)
                # A target whose model is unchanged since its last joint check (no count of it
                # hidden since) would meet the same optimum again: it waits for `protect`. In a
                # scoped audit most complements fall in other scopes' models, so most re-checks
                # are skipped (measured on a 42-ICB roll-up part of 18,248 counts: 12,669 LP
                # solves and 126.8 s of CPU without the skip, 4,680 and 110.7 s with it).
                stamp = (scope, scope_model.version)
                left += [v for v in group if checked.get(v) == stamp]
                group = [v for v in group if checked.get(v) != stamp]
                if scope in backoff and scope_model.version - backoff[scope][0] < backoff[scope][1]:
                    # Its last re-check was fruitless and its model has changed little since. (In
                    # a linked national roll-up every England complement changes every ICB's model:
                    # re-checking each after every 10 complements certified 1 target in 181, and
                    # took minutes a round; measured on the 42-ICB 1% release's SMI part.)
                    left += group
                    continue
                open_before = len(group)
                active = {True: True, False: True}
                up = True
                while group and (active[True] or active[False]):
                    if active[up]:
                        want = {v: (needs(v)[1] if up else needs(v)[0]) for v in group if wants(v, up)}
                        if want:
                            scope_model.joint(want, up)
                            before = len(group)
                            group = [v for v in group if not covered(v)]
                            gained = before - len(group)
                        if not want or gained < max(JOINT_MIN_GAIN, JOINT_MIN_SHARE * len(want)):
                            active[up] = False
                    up = not up
                checked.update({v: stamp for v in group})
                if open_before and recheck and scoped and open_before - len(group) < JOINT_MIN_GAIN:
                    wait = backoff[scope][1] * 2 if scope in backoff else RECHECK_EVERY
                    backoff[scope] = (scope_model.version, wait)
                elif open_before:
                    backoff.pop(scope, None)
                left += group
            return sorted(left, key=lambda v: rank_of[v])

        def known_anyway(c: int) -> bool:
            """Whether the earlier releases alone fix the count exactly: hiding it today tells the
            reader who holds them nothing less (it stays at that value in every LP), so it is no
            complement, and a headline cell such a release showed is not hidden for nothing."""
            if not problem.released:
                return False
            low, high = prior_interval(c)
            return high - low < 0.5

        def protect(v: int) -> None:
            while True:
                low, high = needs(v)
                if covered(v):
                    return
                component = model(scope_of(v))
                short = None
                # An end a solution so far already reached needs no LP: hiding only widens the
                # feasible set, so that point is still one a reader cannot rule out.
                if small_like(v):
                    # Both ends: the top first, then the bottom once the top is reached.
                    if not reaches(v, True):
                        top, binding = component.extreme(v, -1.0)
                        if top < high - 1e-6:
                            short = binding
                    if short is None and not reaches(v, False):
                        bottom, binding_low = component.extreme(v, 1.0)
                        if bottom > low + 1e-6:
                            short = binding_low
                else:
                    # Either end will do (an end may be void: cut to what earlier releases allow).
                    short = []
                    if high is not None:
                        top, binding = component.extreme(v, -1.0)
                        if top >= high - 1e-6:
                            return
                        short += binding
                    if low is not None:
                        bottom, binding_low = component.extreme(v, 1.0)
                        if bottom <= low + 1e-6:
                            return
                        short += binding_low
                if short is None:
                    return
                if learn_prior(v):
                    continue  # the need was beyond what earlier releases already allowed: check again
                if problem.dear_complements:
                    if level.get(v, 0) + 1 < len(chain(v)):
                        # Short in this scope only (the rest held at the truth): look in the next one.
                        level[v] = level.get(v, 0) + 1
                        continue
                    if learn_prior(v, whole=True):
                        continue  # beyond what the earlier releases allow, over the whole part
                candidates = [c for c in dict.fromkeys(short) if not is_hidden(c) and cost_of_hiding(c) is not None
                              and not known_anyway(c)]
                if not candidates and level.get(v, 0) + 1 < len(chain(v)):
                    # No visible count of this scope binds: the count is held by what lies outside
                    # (the rest of the part, at the truth) or by non-negativity. Audit it, and choose
                    # its complements, in the next larger scope.
                    level[v] = level.get(v, 0) + 1
                    continue
                if not candidates and learn_prior(v, whole=True):
                    continue  # beyond what the earlier releases allow, over the whole part
                if not candidates:
                    # Only non-negativity of hidden counts binds: widen the search to every
                    # visible count of a relation touching a hidden one. Hiding only removes
                    # information, so this ends, at worst with every such count hidden.
                    candidates = sorted({m for members, _ in component.relations if any(
                        x in component.local and is_hidden(x) for x in members)
                        for m in members if m in component.local and not is_hidden(m)
                        and cost_of_hiding(m) is not None and not known_anyway(m)})
                    if not candidates:
                        # Names the count (population and cell), never its value.
                        raise RuntimeError("secondary suppression: a hidden count stays narrowed down and "
                                           f"no visible count is left to hide ({problem.keys[v]!r})")
                choice = min(candidates, key=lambda c: (cost_of_hiding(c), rank_of[c]))
                for u in sorted(units_of[choice]):
                    if u not in hidden_units:
                        result.n_complements += 1
                        hide_unit(u)
                pending.extend(refresh())

        large = progress is not None and len(variables) >= PROGRESS_PART_SIZE
        if large:
            started = time.perf_counter()
            progress(f"suppression: part {k + 1} of {len(components)}, {len(variables):,} counts, "
                     f"{len(seen_hidden):,} hidden ...")
        pending = certify(sorted(seen_hidden - problem.context, key=lambda v: rank_of[v]))
        added, recheck_every = 0, RECHECK_EVERY
        if large:
            progress(f"  {len(pending):,} to audit one by one after the joint LPs")
            reported = time.perf_counter()
        while pending:
            if large and time.perf_counter() - reported >= PROGRESS_EVERY:
                reported = time.perf_counter()
                progress(f"  part {k + 1}: {len(pending):,} left to audit, {len(seen_hidden):,} hidden, "
                         f"{sum(built.solves for built in models.values()):,} LP solves, "
                         f"{reported - started:.0f} s")
            target = pending.pop(0)
            before = len(seen_hidden)
            protect(target)
            if len(seen_hidden) > before:
                added += len(seen_hidden) - before
                if added >= recheck_every and len(pending) > 2:
                    # The new complements may protect the rest too: re-check them jointly.
                    added = 0
                    pending = certify(sorted(set(pending) - {target}, key=lambda v: rank_of[v]), recheck=True)
        result.n_lp_solves += sum(built.solves for built in models.values())
        if large:
            progress(f"  {len(seen_hidden):,} hidden, {sum(built.solves for built in models.values()):,} LP solves in "
                     f"{len(models)} model(s) of {min(b.n for b in models.values()):,}-{max(b.n for b in models.values()):,} "
                     f"counts, {time.perf_counter() - started:.0f} s")
        sizes = [built.n for built in models.values()]
        result.largest_model = max([result.largest_model, *sizes])
        result.smallest_model = min([result.smallest_model or sizes[0], *sizes]) if sizes else result.smallest_model
        result.n_models += len(sizes)
    return result


# ---------------------------------------------------------------------------
# One table of counts: the earlier interface, now a thin layer over `suppress`.
# ---------------------------------------------------------------------------


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
        The hidden cells: `primary` plus the complementary cells (each cell is its own unit).

    Rounding to 5 is part of the protection: 'overall 50, a hidden, b 20, c 25' gives
    a = 50 - 20 - 25 = 5 give or take 6, which covers 1-7, so no complement is needed,
    whereas with exact counts (the `NONE` profile's knowledge) a would fall out by
    subtraction and a complement is hidden. See `suppress` for the rule.

    Examples:
        >>> values = {"all": 50, "a": 3, "b": 20, "c": 27}
        >>> relation = [("all", ["all", "a", "b", "c"])]
        >>> sorted(complementary_suppression(values, {"a"}, relation, profile=NHS_SUPPRESS_ROUND5))
        ['a']
        >>> exact = DisclosureProfile("suppress_only", "1-7 suppressed, nothing rounded", 7, "suppress")
        >>> sorted(complementary_suppression(values, {"a"}, relation, profile=exact))
        ['a', 'b']
    """
    if not primary:
        return set()
    keys = sorted(values, key=repr)
    index = {k: i for i, k in enumerate(keys)}
    problem = CountProblem(keys=list(keys), values=[values[k] for k in keys])
    for total, members in relations:
        present = [m for m in dict.fromkeys(members) if m in index]
        if total is None or total not in index:
            # The parts add up to a known constant: their true sum, as an exact helper count.
            helper = len(problem.keys)
            problem.keys.append(("__constant__", helper))
            problem.values.append(sum(values[m] for m in present))
            problem.exact[helper] = problem.values[-1]
            problem.relations.append(([helper, *[index[m] for m in present]], [1.0] + [-1.0] * len(present)))
            continue
        if len(present) < 2:
            continue
        parts = [m for m in present if m != total]
        problem.relations.append(([index[total], *[index[p] for p in parts]], [1.0] + [-1.0] * len(parts)))
    problem.at_most = [(index[a], index[b]) for a, b in at_most if a in index and b in index]
    problem.units = [[i] for i in range(len(keys))]
    problem.unit_keys = [repr(k) for k in keys]
    problem.unit_priority = [priority(k) for k in keys]
    result = suppress(problem, profile, primary_units={index[p] for p in primary if p in index})
    return {keys[u] for u in result.hidden_units}


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
    """Apply a profile with secondary suppression: small counts, their rows and complements hidden.

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
        `frame` with `columns` controlled (Int64; hidden rows null in every count column,
        or 0 for a redacting profile, the rest rounded by the profile) and `is_suppressed`
        true where the row is hidden. A row is hidden whole: a hidden denominator hides its
        numerator too, 0 included (DOMAIN.md section 6: no half-shown row).

    Examples:
        >>> import polars as pl
        >>> f = pl.DataFrame({"t": [1] * 3, "g": ["all", "a", "b"], "n": [12, 3, 9]})
        >>> protect_counts(f, ["n"], NHS_SUPPRESS_ROUND5, table=["t"], cell=["g"],
        ...                relations=[(("all",), [("all",), ("a",), ("b",)])]).rows()
        [(1, 'all', 10, False), (1, 'a', None, True), (1, 'b', None, True)]

        Shown as 10, 'all' was 8-12 and so was 'b' (9): 'a' would be 0-4, not 1-7, so 'b'
        is hidden as well.
    """
    problem, row_of_unit = table_problem(frame, columns, table=table, cell=cell, relations=relations,
                                         priority=priority, at_most=at_most)
    hidden = suppress(problem, profile).hidden_units
    return apply_hidden_rows(frame, columns, profile, {row_of_unit[u] for u in hidden})


def table_problem(frame: pl.DataFrame, columns: Sequence[str], *, table: Sequence[str], cell: Sequence[str],
                  relations: list[tuple], priority=_no_priority, at_most: Sequence[tuple[str, str]] = (),
                  key_prefix: tuple = ()) -> tuple[CountProblem, list[int]]:
    """Return the `CountProblem` of a frame of counts (one unit per row) and each unit's row number.

    Every (table, cell, column) is a variable; every relation holds in each table and column;
    each row is one unit (its counts are hidden together).
    """
    keys, values, units, unit_keys, unit_priority, rows = [], [], [], [], [], []
    index: dict = {}
    table_rows = frame.select(list(table)).rows() if table else [()] * frame.height
    cell_rows = frame.select(list(cell)).rows()
    counts = {c: frame[c].fill_null(0).to_list() for c in columns}
    # Variables, units and relations in key order, never the frame's row order: with several
    # optima (common here) the solver's pick depends on the order of the model's columns and
    # rows, and a re-run of the same month must hide the same cells.
    order = sorted(range(frame.height), key=lambda r: repr((table_rows[r], cell_rows[r])))
    for r in order:
        t, k = table_rows[r], cell_rows[r]
        members = []
        for c in columns:
            key = (*key_prefix, t, k, c)
            index[key] = len(keys)
            keys.append(key)
            values.append(int(counts[c][r]))
            members.append(index[key])
        units.append(members)
        unit_keys.append(repr((*key_prefix, t, k)))
        unit_priority.append(priority(k))
        rows.append(r)
    problem = CountProblem(keys=keys, values=values, units=units, unit_keys=unit_keys, unit_priority=unit_priority)
    for t in sorted(set(table_rows), key=repr):
        for total, members in relations:
            for c in columns:
                total_key = (*key_prefix, t, total, c)
                parts = [index[(*key_prefix, t, m, c)] for m in members
                         if m != total and (*key_prefix, t, m, c) in index]
                if total_key in index and parts:
                    problem.relations.append(([index[total_key], *parts], [1.0] + [-1.0] * len(parts)))
                elif total_key not in index and parts:
                    # No row for the total: no patients there, so every part is 0 too.
                    problem.relations.append((parts, [1.0] * len(parts)))
    for r in order:
        t, k = table_rows[r], cell_rows[r]
        for a, b in at_most:
            problem.at_most.append((index[(*key_prefix, t, k, a)], index[(*key_prefix, t, k, b)]))
    return problem, rows


def apply_hidden_rows(frame: pl.DataFrame, columns: Sequence[str], profile: DisclosureProfile,
                      hidden_rows: set) -> pl.DataFrame:
    """Return `frame` with `columns` controlled by `profile` and the given rows hidden whole."""
    hidden_value = pl.lit(None, pl.Int64) if profile.small_count_action != "redact" else pl.lit(0, pl.Int64)
    mask = pl.Series("_hide", [r in hidden_rows for r in range(frame.height)], dtype=pl.Boolean)
    out = frame.with_columns(mask)
    return out.with_columns(
        *[pl.when(pl.col("_hide")).then(hidden_value).otherwise(profile.control(c)).alias(c) for c in columns],
        pl.col("_hide").alias("is_suppressed"),
    ).drop("_hide")
