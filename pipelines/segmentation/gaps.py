"""Build the published gap table: rates by group, and gaps against a named reference group.

One function, `build_gap_table`, turns patient-level indicator results (private layer) into
the aggregate `GAP_TABLE` contract (published layer). The order of work follows DOMAIN.md
sections 5 and 6:

1. count numerator and denominator per month x indicator x group (one scan of the
   patient-level rows to the finest cross-tabulation, then cheap re-aggregation per
   breakdown);
2. apply the disclosure profile to those counts, with secondary suppression across every
   additive relation of the table (`disclosure.protect_counts`);
3. only then compute rates (Wilson), gaps against the reference group (Newcombe hybrid
   score, method 10), rate ratios and the direction-aware comparison.

Breakdowns (one-dimensional) and their reference groups (`REFERENCE_GROUPS`; fixed labels
rather than "the largest group", so a gap means the same thing every month):

- `overall`: the single group 'all'; compared to nothing.
- `imd_decile`: '1'..'10' (national decile, 1 = most deprived); reference '10'.
- `imd_quintile`: '1'..'5' = ceil(decile / 2); reference '5' (least deprived).
- `core20`: 'core20' (national decile 1-2) or 'rest' (everyone else, including patients with
  no national decile: a small 'unknown' group would otherwise cost the headline Core20 row
  as its complement); reference 'rest'.
- `ethnicity_broad`: the five broad census groups plus 'Not stated'; reference 'White'.
- `ethnicity_16`: the 16 census groups (NHS ethnic category A-S) plus 'Not stated';
  reference 'White - British' (DOMAIN.md section 5: "each ethnic group vs White British").
- `sex`: 'F', 'M', 'I'; reference 'F', so the sex gap reads "male minus female"; 'U'
  (unknown / not recorded) is the 'unknown' group.
- `age_band`: '0-17', '18-39', '40-59', '60-79', '80+'; reference '40-59'.
- `practice`, `sub_icb`, `icb`: the registered practice (ODS code) and the Sub-ICB and ICB
  of the home LSOA. Areas are compared with the whole population ('all') the way
  Fingertips compares an area with its benchmark: the overall rate is treated as a fixed
  value, the gap's interval is the area's Wilson interval minus it, and the area is
  better or worse when that interval excludes 0 (`comparison_method` 'benchmark').
- `cohort:<id>`: 'member' or 'not_member' of each cohort in `cohorts.cohort_membership`
  (the PLUS groups and ICS focus cohorts; the Core20 cohort is the `core20` breakdown);
  reference 'not_member'.

Intersections of two breakdowns (`INTERSECTIONS`, default IMD quintile x broad ethnicity
and Core20 x each cohort) are breakdowns named 'A|B' with groups 'a|b'; their reference
group is 'ref(A)|ref(B)' (e.g. '5|White': least deprived White patients), because equity
work asks who is disadvantaged on more than one axis at once.

Deprivation breakdowns, and intersections involving one, are emitted once per IMD vintage.
Other breakdowns are emitted once, labelled with `primary_vintage`.

Missing values (null decile, ethnicity or geography, sex 'U', null age, or a patient with
no attributes row) form their own group 'unknown' (in an intersection, any 'unknown'
part): missingness is itself an output (DOMAIN.md section 1). 'unknown' and 'Not stated'
groups are reported, never compared.
"""

from __future__ import annotations

from typing import Collection, Mapping, NamedTuple, Sequence

import polars as pl

from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5, DisclosureProfile, suppression_processes
from pipelines.segmentation.month_disclosure import population_memberships, protect_month
from pipelines.segmentation.schemas import GAP_TABLE, IMD_VINTAGES
from pipelines.segmentation.sql import literal, quote
from pipelines.segmentation.stats import newcombe_columns, wilson_columns

# Under this many (the denominator of a proportion, the numerator of a rate), a rate from counts
# rounded to 5 is flagged: each count may be off by up to 2, which at 50 is 4% of the count and
# can move a proportion by about half of its own 95% interval (e.g. 8/10 publishes as 10/10).
RELIABILITY_THRESHOLD = 50


UNKNOWN = "unknown"
SEPARATOR = "|"
COHORT_PREFIX = "cohort:"
MEMBER, NOT_MEMBER = "member", "not_member"

BREAKDOWNS: tuple[str, ...] = (
    "overall",
    "imd_decile",
    "imd_quintile",
    "core20",
    "ethnicity_broad",
    "ethnicity_16",
    "sex",
    "age_band",
    "practice",
    "sub_icb",
    "icb",
)

DEPRIVATION_BREAKDOWNS = ("imd_decile", "imd_quintile", "core20")
# Areas are benchmarked against the whole population rather than a reference group.
BENCHMARKED_BREAKDOWNS = ("practice", "sub_icb", "icb")

REFERENCE_GROUPS: dict[str, str | None] = {
    "overall": None,
    "imd_decile": "10",
    "imd_quintile": "5",
    "core20": "rest",
    "ethnicity_broad": "White",
    "ethnicity_16": "White - British",
    "sex": "F",
    "age_band": "40-59",
    "practice": "all",
    "sub_icb": "all",
    "icb": "all",
}

# "cohort:*" stands for every cohort breakdown present.
INTERSECTIONS: tuple[tuple[str, str], ...] = (
    ("imd_quintile", "ethnicity_broad"),
    ("core20", "cohort:*"),
)

# Group labels that describe missing data: reported, never compared (lower-cased match).
NOT_COMPARED_GROUPS = frozenset({UNKNOWN, "not stated", "not_stated", "not known"})

# Upper age (inclusive) of each band but the last; the last band is open ("80+").
AGE_BANDS: tuple[tuple[str, int], ...] = (("0-17", 17), ("18-39", 39), ("40-59", 59), ("60-79", 79))
AGE_BAND_OPEN = "80+"

# The attribute column each breakdown needs (deprivation ones need both decile columns).
_ATTRIBUTE_COLUMNS = {
    "ethnicity_broad": "ethnicity_broad",
    "ethnicity_16": "ethnicity_16",
    "sex": "sex",
    "age_band": "age",
    "practice": "practice_code",
    "sub_icb": "sicbl_code",
    "icb": "icb_code",
}
_DECILE_COLUMNS = {"IMD2019": "imd2019_decile", "IMD2025": "imd2025_decile"}
_KEYS = ["reporting_month", "indicator_id", "indicator_version"]
_CELL = ["imd_vintage", "breakdown", "group"]


def _deprivation_groups(decile: pl.Expr) -> dict[str, pl.Expr]:
    """Return the group label expressions derived from a national IMD decile."""
    d = decile.cast(pl.Int32)
    quintile = (d + 1) // 2  # ceil(decile / 2) for deciles 1..10
    return {
        "imd_decile": d.cast(pl.String).fill_null(UNKNOWN),
        "imd_quintile": quintile.cast(pl.String).fill_null(UNKNOWN),
        # 'rest' is everyone not in Core20, including patients with no national decile: the
        # small 'unknown' group then has a coarser published home in this headline breakdown,
        # instead of costing the Core20 row as its complement (missingness stays reported in
        # the decile and quintile breakdowns and in deprivation quality).
        "core20": pl.when(d.is_not_null() & (d <= 2)).then(pl.lit("core20")).otherwise(pl.lit("rest")),
    }


def _age_band(age: pl.Expr) -> pl.Expr:
    expr = pl.when(age.is_null() | (age < 0)).then(pl.lit(UNKNOWN))
    for label, upper in AGE_BANDS:
        expr = expr.when(age <= upper).then(pl.lit(label))
    return expr.otherwise(pl.lit(AGE_BAND_OPEN))


def _text_group(column: str) -> pl.Expr:
    value = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(value.is_null() | (value == "")).then(pl.lit(UNKNOWN)).otherwise(value)


def _check_columns(frame: pl.LazyFrame | pl.DataFrame, required: Sequence[str], what: str) -> None:
    names = set(frame.collect_schema().names())
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f"build_gap_table: {what} is missing columns {missing}")


def _is_deprivation(breakdown: str) -> bool:
    return any(part in DEPRIVATION_BREAKDOWNS for part in breakdown.split(SEPARATOR))


def _reference_of(breakdown: str, references: Mapping[str, str | None]) -> str | None:
    parts = breakdown.split(SEPARATOR)
    refs = [NOT_MEMBER if p.startswith(COHORT_PREFIX) else references.get(p) for p in parts]
    if any(r is None for r in refs) or (len(parts) > 1 and any(p in BENCHMARKED_BREAKDOWNS for p in parts)):
        return None
    return SEPARATOR.join(refs)


def _label_column(vintage: str, breakdown: str) -> str:
    return f"{vintage}__{breakdown}" if breakdown in DEPRIVATION_BREAKDOWNS else f"__{breakdown}"


# Secondary suppression takes its complements from the cells analysts read least first:
# intersections, then the other breakdowns (practice, cohort, ethnicity, sex, age), sparing
# the headline Core20PLUS5 figures (IMD decile, quintile, Core20 vs rest, overall) where it can.
# Within the Core20 breakdown the Core20 row itself is the headline: 'rest' goes first.
_SPARED = {"imd_decile": 2, "imd_quintile": 3, "core20": 4, "overall": 6}
CORE20_ROW_PRIORITY = 5


def complement_priority(cell: tuple) -> int:
    """Return how strongly a (vintage, breakdown, group) cell is spared as a complement.

    Examples:
        >>> [complement_priority(("IMD2025", b, "x")) for b in ("core20|cohort:smi", "practice", "core20", "overall")]
        [0, 1, 4, 6]
        >>> complement_priority(("IMD2025", "core20", "core20"))
        5
    """
    breakdown = cell[1]
    if breakdown == "core20" and cell[2] == "core20":
        return CORE20_ROW_PRIORITY
    return _SPARED.get(breakdown, 0 if SEPARATOR in breakdown else 1)


def _relations(counts: pl.DataFrame, cells: pl.DataFrame, primary_vintage: str) -> list[tuple]:
    """Return every additive relation among the table's cells: (total, [total, *parts]).

    Cell keys are (imd_vintage, breakdown, group). The relations are structural, true for
    every indicator and month: each breakdown sums to the overall count, deciles to
    quintiles to Core20/rest, detailed to broad ethnic groups, Sub-ICBs to ICBs, and the
    cells of an intersection to both of its margins.
    """
    present: dict[tuple[str, str], list[str]] = {}
    for vintage, breakdown, group in counts.select(_CELL).unique().rows():
        present.setdefault((vintage, breakdown), []).append(group)
    overall = (primary_vintage, "overall", "all")
    relations: list[tuple] = []

    def add(total, parts):
        if parts:
            relations.append((total, [total, *parts]))

    for (vintage, breakdown), groups in present.items():
        if breakdown != "overall":
            add(overall, [(vintage, breakdown, g) for g in groups])
    for vintage in IMD_VINTAGES:
        deciles = set(present.get((vintage, "imd_decile"), []))
        quintiles = set(present.get((vintage, "imd_quintile"), []))
        core20 = set(present.get((vintage, "core20"), []))
        if deciles and quintiles:
            for q in quintiles:
                members = [UNKNOWN] if q == UNKNOWN else [str(2 * int(q) - 1), str(2 * int(q))]
                add((vintage, "imd_quintile", q), [(vintage, "imd_decile", d) for d in members if d in deciles])
        if quintiles and core20:
            split = {"core20": ["1"], "rest": ["2", "3", "4", "5", UNKNOWN], UNKNOWN: [UNKNOWN]}
            for c in core20:
                add((vintage, "core20", c), [(vintage, "imd_quintile", q) for q in split[c] if q in quintiles])
    for fine, coarse in (("ethnicity_16", "ethnicity_broad"), ("sub_icb", "icb")):
        vintage = primary_vintage
        if (vintage, fine) in present and (vintage, coarse) in present:
            mapping = cells.select(
                pl.col(_label_column(vintage, fine)).alias("fine"), pl.col(_label_column(vintage, coarse)).alias("coarse")
            ).unique()
            many = mapping.group_by("fine").len().filter(pl.col("len") > 1)["fine"].to_list()
            for coarse_group, parts in mapping.filter(~pl.col("fine").is_in(many)).group_by("coarse").agg("fine").rows():
                add((vintage, coarse, coarse_group), [(vintage, fine, f) for f in parts])
    for (vintage, breakdown), groups in present.items():
        if SEPARATOR not in breakdown:
            continue
        first, second = breakdown.split(SEPARATOR)
        for position, margin in enumerate((first, second)):
            margin_vintage = vintage if margin in DEPRIVATION_BREAKDOWNS else primary_vintage
            if (margin_vintage, margin) not in present:
                continue
            by_margin: dict[str, list] = {}
            for g in groups:
                by_margin.setdefault(g.split(SEPARATOR)[position], []).append((vintage, breakdown, g))
            for label, parts in by_margin.items():
                add((margin_vintage, margin, label), parts)
    # One order whatever the order of the inputs: the greedy choice of complementary cells
    # follows the relations' order, and the groups above come from unordered collections
    # (`unique()`, sets of strings whose iteration order differs between processes), so
    # without this a re-run of the same month could suppress different cells.
    return sorted((total, [total, *sorted(members[1:])]) for total, members in relations)


def build_gap_table(
    indicator_results: pl.LazyFrame,
    attributes: pl.LazyFrame,
    catalogue: pl.DataFrame,
    *,
    cohorts: pl.LazyFrame | None = None,
    profile: DisclosureProfile = NHS_SUPPRESS_ROUND5,
    confidence: float = 0.95,
    breakdowns: Sequence[str] | None = None,
    intersections: Sequence[tuple[str, str]] | None = None,
    primary_vintage: str = "IMD2019",
    reference_groups: Mapping[str, str | None] | None = None,
    deprivation: pl.LazyFrame | None = None,
    quality: pl.DataFrame | None = None,
    earlier: "Sequence[tuple] | None" = None,
    audit_stats: dict | None = None,
    reliability_threshold: int = RELIABILITY_THRESHOLD,
) -> pl.DataFrame:
    """Return the published gap table (the `GAP_TABLE` contract) for indicator results.

    Arguments:
        indicator_results: one row per denominator patient per indicator, with
            `reporting_month`, `patient_id`, `indicator_id`, `indicator_version`,
            `is_numerator`.
        attributes: one row per patient per month, with `reporting_month`, `patient_id`,
            `imd2019_decile`, `imd2025_decile` and the columns of the chosen breakdowns
            (`sex`, `age`, `ethnicity_broad`, `ethnicity_16`, `practice_code`,
            `sicbl_code`, `icb_code`). A denominator patient with no attributes row falls
            in every 'unknown' group.
        catalogue: `indicator_id`, `indicator_version`, `clinical_area`, `direction`
            ('higher_is_better' or 'lower_is_better'); other columns are ignored.
        cohorts: cohort members (`reporting_month`, `patient_id`, `cohort_id`); each
            cohort but 'core20' becomes a `cohort:<id>` breakdown. None: no cohort rows.
        profile: disclosure-control profile applied to the counts before any statistic.
        confidence: confidence level of the rate and gap intervals.
        breakdowns: which of `BREAKDOWNS` to produce (default: all); cohort breakdowns
            follow `cohorts`.
        intersections: pairs of breakdowns to cross (default `INTERSECTIONS`; `()` for
            none); 'cohort:*' stands for every cohort.
        primary_vintage: IMD vintage that labels the breakdowns not based on deprivation.
        reference_groups: overrides of `REFERENCE_GROUPS`, by breakdown.
        deprivation: `population.patient_deprivation` rows with `practice_code` (every
            registered patient); with `quality`, the month's deprivation-quality counts are
            protected together with the gap table (see `protect_month`).
        quality: the exact `deprivation_quality` table of the same month(s).
        earlier: earlier releases of the same month still in readers' hands, as their runs
            recorded them (`audit_stats['release']`, kept privately at publish:
            pipelines/releases.py); see `month_disclosure.link_releases`.
        audit_stats: a dict the suppression's figures (and the controlled quality table,
            under 'quality') are written into.
        reliability_threshold: rates resting on a rounded count under this are flagged
            `is_low_reliability` (`RELIABILITY_THRESHOLD`).

    Returns:
        A DataFrame with exactly `GAP_TABLE`'s columns, dtypes and order, sorted by month,
        indicator, vintage, breakdown and group (numeric groups numerically, 'unknown'
        last).

    Raises:
        ValueError: for an unknown breakdown or vintage, missing input columns, or an
            indicator (id and version) that is not in the catalogue.

    Examples:
        >>> import datetime as dt
        >>> import polars as pl
        >>> month = dt.date(2026, 1, 1)
        >>> results = pl.LazyFrame({"reporting_month": [month] * 3, "patient_id": ["a", "b", "c"],
        ...     "indicator_id": ["smi_phc"] * 3, "indicator_version": [1, 1, 1],
        ...     "is_numerator": [True, False, True]}, schema_overrides={"indicator_version": pl.Int32})
        >>> people = pl.LazyFrame({"reporting_month": [month] * 3, "patient_id": ["a", "b", "c"],
        ...     "imd2019_decile": [1, 10, None], "imd2025_decile": [1, 9, 2], "sex": ["F", "M", "F"]},
        ...     schema_overrides={"imd2019_decile": pl.Int8, "imd2025_decile": pl.Int8})
        >>> catalogue = pl.DataFrame({"indicator_id": ["smi_phc"], "indicator_version": [1],
        ...     "clinical_area": ["SMI"], "direction": ["higher_is_better"]})
        >>> table = build_gap_table(results, people, catalogue, breakdowns=["overall", "core20"], intersections=())
        >>> table.select("imd_vintage", "breakdown", "group", "denominator", "is_suppressed").rows()
        [('IMD2019', 'overall', 'all', None, True), ('IMD2019', 'core20', 'core20', None, True), ('IMD2019', 'core20', 'rest', None, True), ('IMD2025', 'core20', 'core20', None, True), ('IMD2025', 'core20', 'rest', None, True)]
    """
    counted = gap_counts(indicator_results, attributes, catalogue, cohorts=cohorts, breakdowns=breakdowns,
                         intersections=intersections, primary_vintage=primary_vintage)
    memberships = population_memberships(indicator_results, deprivation) if quality is not None else None
    return gap_table_from_counts(
        counted.counts, counted.hierarchy, catalogue, profile=profile, confidence=confidence,
        primary_vintage=primary_vintage, reference_groups=reference_groups, emitted=counted.emitted,
        memberships=memberships, quality=quality, earlier=earlier, audit_stats=audit_stats,
        reliability_threshold=reliability_threshold,
    )


class GapCounts(NamedTuple):
    """Exact (private) group counts of a gap table, before any disclosure control.

    `counts` has one row per month x indicator x vintage x breakdown x group with its
    numerator and denominator; `hierarchy` the distinct fine/coarse label pairs
    (`_HIERARCHY_COLUMNS`); `emitted` the breakdowns in table order. Counts of disjoint
    populations (two ICBs) add up group by group to the counts of their union.
    """

    counts: pl.DataFrame
    hierarchy: pl.DataFrame
    emitted: list[str]


def gap_counts(
    indicator_results: pl.LazyFrame,
    attributes: pl.LazyFrame,
    catalogue: pl.DataFrame,
    *,
    cohorts: pl.LazyFrame | None = None,
    breakdowns: Sequence[str] | None = None,
    intersections: Sequence[tuple[str, str]] | None = None,
    primary_vintage: str = "IMD2019",
) -> GapCounts:
    """Return the exact group counts behind `build_gap_table` (same arguments; see there). Private: never publish.

    The frames are handed to an in-memory DuckDB and counted by `gap_counts_sql`, the same
    query the monthly run executes in the warehouse.
    """
    import duckdb

    chosen = _chosen_breakdowns(breakdowns, primary_vintage)
    _check_columns(indicator_results, ["reporting_month", "patient_id", *_KEYS[1:], "is_numerator"], "indicator_results")
    needed = _needed_attributes(chosen)
    _check_columns(attributes, ["reporting_month", "patient_id", "imd2019_decile", "imd2025_decile", *needed], "attributes")
    _check_catalogue(catalogue)
    if cohorts is not None:
        _check_columns(cohorts, ["reporting_month", "patient_id", "cohort_id"], "cohorts")
    con = duckdb.connect()
    try:
        con.register("_results", indicator_results.select("reporting_month", "patient_id", *_KEYS[1:], "is_numerator")
                     .collect().to_arrow())
        # One row per patient and month, the first given.
        con.register("_attributes", attributes.select("reporting_month", "patient_id", "imd2019_decile", "imd2025_decile",
                                                      *needed)
                     .unique(subset=["reporting_month", "patient_id"], keep="first", maintain_order=True).collect().to_arrow())
        if cohorts is not None:
            con.register("_cohorts", cohorts.select("reporting_month", "patient_id", "cohort_id").collect().to_arrow())
        return gap_counts_sql(con, "_results", "_attributes", "_cohorts" if cohorts is not None else None,
                              breakdowns=chosen, intersections=intersections, primary_vintage=primary_vintage)
    finally:
        con.close()


def gap_counts_sql(
    con,
    results: str,
    attributes: str,
    cohorts: str | None,
    *,
    breakdowns: Sequence[str] | None = None,
    intersections: Sequence[tuple[str, str]] | None = None,
    primary_vintage: str = "IMD2019",
) -> GapCounts:
    """Return the exact group counts of relations in a DuckDB connection; only the counts reach Python.

    Arguments:
        con: a DuckDB connection (read-only is enough).
        results, attributes, cohorts: SQL relations (table names or parenthesised queries) with
            the columns `build_gap_table` names for `indicator_results`, `attributes` (one row
            per patient and month) and `cohorts` (the members of the reported cohorts; None:
            no cohort breakdowns).
        breakdowns, intersections, primary_vintage: as for `build_gap_table`.

    One pass: the denominator rows are joined to their patients' attributes and cohort flags
    and counted per group of every (vintage, breakdown) in one GROUP BY GROUPING SETS, so a
    month of any size returns a frame of indicators x groups rows.
    """
    chosen = _chosen_breakdowns(breakdowns, primary_vintage)
    needed = _needed_attributes(chosen)
    # Cohort membership becomes one Boolean column per cohort (members only are listed).
    cohort_ids: list[str] = []
    if cohorts is not None:
        cohort_ids = sorted(row[0] for row in con.execute(
            f"select distinct cast(cohort_id as varchar) from {cohorts} where cohort_id <> 'core20' and cohort_id is not null"
        ).fetchall())
    cohort_breakdowns = [f"{COHORT_PREFIX}{c}" for c in cohort_ids]
    one_dimensional = chosen + cohort_breakdowns
    crosses = _crosses(intersections, one_dimensional, cohort_breakdowns)
    # The overall count is always counted and protected (conservatively, as if published:
    # two breakdowns that both sum to it are a relation even when it is not shown).
    counted = one_dimensional if "overall" in chosen else ["overall", *one_dimensional]
    # Every (vintage, breakdown) pair to emit.
    pairs: list[tuple[str, str]] = []
    for breakdown in counted + crosses:
        if _is_deprivation(breakdown):
            pairs += [(vintage, breakdown) for vintage in IMD_VINTAGES]
        else:
            pairs.append((primary_vintage, breakdown))

    # Each label is a function of one attribute (or cohort flag): DuckDB counts by the raw
    # values (small integers and short codes, no label built per row), and the labels are
    # made, and their groups summed, on the few rows that come back.
    raw: dict[str, str | None] = {"overall": None, "sex": "sex", "age_band": "age", "ethnicity_broad": "ethnicity_broad",
                                  "ethnicity_16": "ethnicity_16", "practice": "practice_code", "sub_icb": "sicbl_code",
                                  "icb": "icb_code"}
    raw |= {b: f"_c{i}" for i, b in enumerate(cohort_breakdowns)}

    def raw_column(vintage: str, part: str) -> str | None:
        return _DECILE_COLUMNS[vintage] if part in DEPRIVATION_BREAKDOWNS else raw[part]

    group_exprs: dict[str, pl.Expr] = {"__overall": pl.lit("all")}
    for vintage, column in _DECILE_COLUMNS.items():
        for breakdown, expr in _deprivation_groups(pl.col(column)).items():
            group_exprs[f"{vintage}__{breakdown}"] = expr
    sex = pl.col("sex").cast(pl.String).str.strip_chars().str.to_uppercase()
    group_exprs["__sex"] = pl.when(sex.is_null() | (sex == "U") | (sex == "")).then(pl.lit(UNKNOWN)).otherwise(sex)
    group_exprs["__age_band"] = _age_band(pl.col("age"))
    for breakdown in ("ethnicity_broad", "ethnicity_16", "practice", "sub_icb", "icb"):
        group_exprs[f"__{breakdown}"] = _text_group(_ATTRIBUTE_COLUMNS[breakdown])
    for breakdown in cohort_breakdowns:
        flag = pl.col(raw[breakdown]).cast(pl.Boolean).fill_null(False)
        group_exprs[f"__{breakdown}"] = pl.when(flag).then(pl.lit(MEMBER)).otherwise(pl.lit(NOT_MEMBER))

    # The grouping sets: the raw columns of each pair (pairs on the same columns share one,
    # e.g. decile, quintile and Core20 of a vintage), and those of the fine/coarse label
    # combinations secondary suppression nests groups by.
    sets: dict[frozenset, int] = {}
    pair_sets = [sets.setdefault(frozenset(c for p in b.split(SEPARATOR) if (c := raw_column(v, p))), len(sets))
                 for v, b in pairs]
    present = {_label_column(v, p) for v, b in pairs for p in b.split(SEPARATOR)}
    hierarchy_columns = sorted(present & _HIERARCHY_COLUMNS)
    hierarchy_raw = frozenset(raw[c.removeprefix("__")] for c in hierarchy_columns)
    hierarchy_set = sets.setdefault(hierarchy_raw, len(sets)) if hierarchy_columns else None
    attribute_columns = sorted({c for members in sets for c in members if not c.startswith("_c")})
    flags = ""
    if cohort_ids:
        flags = (f"left join (select reporting_month, patient_id, "
                 + ", ".join(f"bool_or(cohort_id = {literal(c)}) as _c{i}" for i, c in enumerate(cohort_ids))
                 + f" from {cohorts} group by reporting_month, patient_id) c using (reporting_month, patient_id)")
    # DuckDB's cost grows with the number of grouping sets, not with their width: sets are
    # packed into host sets of at most _HOST_CELLS value combinations (distinct values
    # multiplied, null included), and each set is summed from its host in polars.
    distinct = _distinct_values(con, attributes, attribute_columns)
    hosts: list[frozenset] = []
    host_of: dict[frozenset, frozenset] = {}
    for members in sorted(sets, key=lambda m: (-len(m), sorted(m))):
        for h, host in enumerate(hosts):
            if members <= host or _cells(host | members, distinct) <= _HOST_CELLS:
                hosts[h] = host | members
                break
        else:
            hosts.append(members)
    for members in sets:
        host_of[members] = next(host for host in hosts if members <= host)
    keys = ", ".join(quote(k) for k in _KEYS)
    # GROUPING() packs one bit per grouped column into a BIGINT: a query takes at most
    # _MAX_GROUPING_COLUMNS of them, so a very long cohort list is counted in several passes.
    batches: list[list[frozenset]] = [[]]
    for host in hosts:
        if len(set().union(*batches[-1], host)) > _MAX_GROUPING_COLUMNS:
            batches.append([])
        batches[-1].append(host)
    counted_hosts: dict[frozenset, pl.DataFrame] = {}
    for batch in batches:
        columns = sorted(set().union(*batch))
        grouping = f"grouping({', '.join(quote(c) for c in columns)})" if columns else "0"
        sql = f"""
            with joined as (
                select r.reporting_month, r.indicator_id, r.indicator_version, coalesce(r.is_numerator, false) as _numerator,
                       {''.join(f'a.{quote(c)}, ' for c in attribute_columns)}{''.join(f'c._c{i}, ' for i in range(len(cohort_ids)))}
                       1 as _one
                from (select reporting_month, patient_id, indicator_id, indicator_version, is_numerator from {results}) r
                left join {attributes} a using (reporting_month, patient_id)
                {flags}
            )
            select {keys}{''.join(', ' + quote(c) for c in columns)}, {grouping} as _set,
                   cast(count(*) filter (where _numerator) as bigint) as numerator, cast(count(*) as bigint) as denominator
            from joined
            group by grouping sets ({', '.join('(' + ', '.join([keys, *(quote(c) for c in sorted(m))]) + ')' for m in batch)})
        """
        cells = pl.from_arrow(con.sql(sql).to_arrow_table())
        for host in batch:
            # GROUPING(c1, ..., cn): bit n-i set when ci is not grouped in the row's set.
            mask = sum(1 << (len(columns) - 1 - i) for i, c in enumerate(columns) if c not in host)
            counted_hosts[host] = cells.filter(pl.col("_set") == mask).drop("_set")
    found = {s: counted_hosts[host_of[members]] for members, s in sets.items()}
    pieces = []
    for (vintage, breakdown), s in zip(pairs, pair_sets):
        parts = [_label_column(vintage, p) for p in breakdown.split(SEPARATOR)]
        label = group_exprs[parts[0]] if len(parts) == 1 else pl.concat_str([group_exprs[p] for p in parts], separator=SEPARATOR)
        pieces.append(
            found[s].group_by(*_KEYS, label.alias("group"))
            .agg(pl.col("numerator").sum(), pl.col("denominator").sum())
            .select(*_KEYS, pl.lit(vintage).alias("imd_vintage"), pl.lit(breakdown).alias("breakdown"), "group",
                    "numerator", "denominator")
        )
    counts = pl.concat(pieces)
    hierarchy = (found[hierarchy_set].select(group_exprs[c].alias(c) for c in hierarchy_columns).unique()
                 if hierarchy_set is not None else pl.DataFrame())
    return GapCounts(counts, hierarchy, one_dimensional + crosses)


def _chosen_breakdowns(breakdowns: Sequence[str] | None, primary_vintage: str) -> list[str]:
    chosen = list(BREAKDOWNS) if breakdowns is None else list(dict.fromkeys(breakdowns))
    if not chosen:
        raise ValueError(f"breakdowns must name at least one of {list(BREAKDOWNS)} (or be None for all)")
    unknown_breakdowns = [b for b in chosen if b not in BREAKDOWNS]
    if unknown_breakdowns:
        raise ValueError(f"breakdowns {unknown_breakdowns} are not known; choose from {list(BREAKDOWNS)}")
    if primary_vintage not in IMD_VINTAGES:
        raise ValueError(f"primary_vintage must be one of {list(IMD_VINTAGES)}; got {primary_vintage!r}")
    return chosen


def _needed_attributes(chosen: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(_ATTRIBUTE_COLUMNS[b] for b in chosen if b in _ATTRIBUTE_COLUMNS))


def _check_catalogue(catalogue: pl.DataFrame) -> None:
    _check_columns(catalogue, [*_KEYS[1:], "clinical_area", "direction"], "catalogue")
    bad_direction = catalogue.filter(~pl.col("direction").is_in(["higher_is_better", "lower_is_better"]))
    if bad_direction.height:
        raise ValueError(
            "catalogue direction must be 'higher_is_better' or 'lower_is_better'; indicators "
            f"{sorted(bad_direction['indicator_id'].unique().to_list())} have another value"
        )


def _crosses(intersections: Sequence[tuple[str, str]] | None, one_dimensional: list[str],
             cohort_breakdowns: list[str]) -> list[str]:
    """Return the intersection breakdowns 'A|B' to emit ('cohort:*' expanded to every cohort)."""
    crosses: list[str] = []
    explicit = intersections is not None
    for first, second in INTERSECTIONS if intersections is None else intersections:
        for a in cohort_breakdowns if first == f"{COHORT_PREFIX}*" else [first]:
            for b in cohort_breakdowns if second == f"{COHORT_PREFIX}*" else [second]:
                if a == "overall" or b == "overall" or a == b:
                    raise ValueError(f"intersection {a}{SEPARATOR}{b} must cross two different breakdowns other than overall")
                missing = [part for part in (a, b) if part not in one_dimensional]
                if missing:
                    # The default crosses follow the chosen breakdowns; an explicit one must be satisfiable.
                    if explicit and not any(m.startswith(COHORT_PREFIX) for m in missing):
                        raise ValueError(
                            f"intersection {a}{SEPARATOR}{b}: {missing} must also be chosen as breakdowns"
                        )
                    continue
                crosses.append(f"{a}{SEPARATOR}{b}")
    return crosses


_MAX_GROUPING_COLUMNS = 60
# The most value combinations (per indicator) a packed grouping set may have: a few
# thousand rows per indicator come back to Python, and fewer sets make the pass faster.
_HOST_CELLS = 5000


def _distinct_values(con, attributes: str, columns: Sequence[str]) -> dict[str, int]:
    """Return each attribute column's number of distinct values, null counted as one (cohort flags: 2)."""
    if not columns:
        return {}
    counts = con.execute("select " + ", ".join(
        f"count(distinct {quote(c)}) + max(case when {quote(c)} is null then 1 else 0 end)" for c in columns)
        + f" from {attributes}").fetchall()[0]
    return {c: int(n or 0) + 1 for c, n in zip(columns, counts)}  # + 1: patients with no attributes row


def _cells(columns: frozenset, distinct: Mapping[str, int]) -> int:
    cells = 1
    for column in columns:
        cells *= distinct.get(column, 2)  # a cohort flag: member or not
    return cells


# The label columns `_relations` reads to nest fine groups in coarse ones (ethnicity_16 in
# ethnicity_broad, Sub-ICB in ICB): the only part of the cross-tabulation the counts lack.
_HIERARCHY_COLUMNS = frozenset(_label_column(v, b) for v in IMD_VINTAGES for b in ("ethnicity_16", "ethnicity_broad", "sub_icb", "icb"))


def gap_table_from_counts(
    counts: pl.DataFrame,
    hierarchy: pl.DataFrame,
    catalogue: pl.DataFrame,
    *,
    profile: DisclosureProfile = NHS_SUPPRESS_ROUND5,
    confidence: float = 0.95,
    primary_vintage: str = "IMD2019",
    reference_groups: Mapping[str, str | None] | None = None,
    emitted: Sequence[str] | None = None,
    memberships: pl.LazyFrame | pl.DataFrame | None = None,
    quality: pl.DataFrame | None = None,
    earlier: "Sequence[tuple] | None" = None,
    audit_stats: dict | None = None,
    reliability_threshold: int = RELIABILITY_THRESHOLD,
    hidden: Collection[tuple] = (),
) -> pl.DataFrame:
    """Return the gap table of exact (private) group counts: disclosure control first, then every statistic.

    Arguments:
        counts: `reporting_month`, `indicator_id`, `indicator_version`, `imd_vintage`,
            `breakdown`, `group`, `numerator`, `denominator` - exact, never rounded.
        hierarchy: the distinct (fine, coarse) label combinations of the ethnicity and
            geography breakdowns (columns `__ethnicity_16`, `__ethnicity_broad`, `__sub_icb`,
            `__icb` where present), from which secondary suppression knows which groups nest.
        emitted: the breakdowns to compare (default: every breakdown in `counts`).
        memberships: `month_disclosure.population_memberships` of the month (any subset of
            patients with every distinct membership pattern will do); with `quality`, the
            deprivation-quality counts are protected together with the gap table.
        hidden: units hidden from the start whatever their counts (`protect_month`'s `hidden`).
        The others: as for `build_gap_table`.
    """
    _check_catalogue(catalogue)
    if emitted is None:
        emitted = list(dict.fromkeys(counts["breakdown"].to_list()))
    # Step 2: disclosure control on the counts, with secondary suppression, before any statistic:
    # jointly with the month's other published counts (deprivation quality) and every identity
    # between the populations behind them, since a reader holds all of them at once.
    relations = _relations(counts, hierarchy, primary_vintage)
    if quality is None:
        memberships = None
    controlled, quality_controlled, stats = protect_month(
        counts, relations, profile, primary_vintage=primary_vintage, memberships=memberships, quality=quality,
        earlier=earlier, hidden=hidden, processes=suppression_processes(),
    )
    if audit_stats is not None:
        audit_stats.update(stats)
        audit_stats["quality"] = quality_controlled
    return gap_statistics(controlled, catalogue, profile=profile, confidence=confidence, reference_groups=reference_groups,
                          emitted=emitted, reliability_threshold=reliability_threshold)


def gap_statistics(
    controlled: pl.DataFrame,
    catalogue: pl.DataFrame,
    *,
    profile: DisclosureProfile = NHS_SUPPRESS_ROUND5,
    confidence: float = 0.95,
    reference_groups: Mapping[str, str | None] | None = None,
    emitted: Sequence[str] | None = None,
    reliability_threshold: int = RELIABILITY_THRESHOLD,
) -> pl.DataFrame:
    """Return the gap table of disclosure-controlled counts (`month_disclosure.protect_month`'s output): every statistic.

    Step 3 of `gap_table_from_counts`, apart so that tables protected together (the national
    roll-up's areas side by side) get their statistics one area at a time.
    """
    _check_catalogue(catalogue)
    references = {**REFERENCE_GROUPS, **(reference_groups or {})}
    if emitted is None:
        emitted = list(dict.fromkeys(controlled["breakdown"].to_list()))
    # Step 3: rates from controlled counts, in each indicator's unit; a hidden row gets no rate.
    units = _units(catalogue)
    controlled = controlled.join(units, on=["indicator_id", "indicator_version"], how="left").with_columns(
        pl.col("value_type").fill_null("proportion"), pl.col("multiplier").fill_null(1))
    is_rate = pl.col("value_type") == "rate"
    proportion = wilson_columns("numerator", "denominator", confidence)
    rate = [e * 1.0 for e in _rate_exprs(confidence)]
    controlled = controlled.with_columns(
        [pl.when(pl.col("is_suppressed")).then(None).when(is_rate).then(r).otherwise(w).alias(name)
         for w, r, name in zip(proportion, rate, ["rate", "rate_lower", "rate_upper"])]
    ).with_columns(_low_reliability(profile, reliability_threshold).alias("is_low_reliability"))
    return _compare(controlled, catalogue, references, profile, confidence, list(emitted))


def _low_reliability(profile: DisclosureProfile, threshold: int) -> pl.Expr:
    """Return whether a visible row's rate rests on a small rounded count (see `RELIABILITY_THRESHOLD`)."""
    if profile.rounding == "none" or threshold <= 0:
        return pl.lit(False)
    basis = pl.when(pl.col("value_type") == "rate").then(pl.col("numerator")).otherwise(pl.col("denominator"))
    return (~pl.col("is_suppressed") & (basis > 0) & (basis < threshold)).fill_null(False)


def _units(catalogue: pl.DataFrame) -> pl.DataFrame:
    """Return (indicator_id, indicator_version, value_type, multiplier) from a catalogue (proportion, 1 by default)."""
    frame = catalogue.select(
        pl.col("indicator_id").cast(pl.String), pl.col("indicator_version").cast(pl.Int32),
        (pl.col("value_type") if "value_type" in catalogue.columns else pl.lit("proportion")).cast(pl.String).alias("value_type"),
        (pl.col("multiplier") if "multiplier" in catalogue.columns else pl.lit(1)).cast(pl.Int64).alias("multiplier"),
    ).unique(subset=["indicator_id", "indicator_version"], keep="first")
    bad = frame.filter(~pl.col("value_type").is_in(["proportion", "rate"]) | (pl.col("multiplier") < 1))
    if bad.height:
        raise ValueError(f"catalogue value_type must be 'proportion' or 'rate' with a positive multiplier; "
                         f"indicators {sorted(bad['indicator_id'].to_list())} have another")
    return frame


def _rate_exprs(confidence: float) -> list[pl.Expr]:
    """Return rate, lower and upper per row: Byar's limits, exact Poisson under 10 events (stats.rate_columns),
    scaled by each row's own multiplier."""
    from pipelines.segmentation.stats import rate_columns

    return [e * pl.col("multiplier").cast(pl.Float64) for e in rate_columns("numerator", "denominator", 1, confidence)]


def _compare(
    controlled: pl.DataFrame,
    catalogue: pl.DataFrame,
    references: Mapping[str, str | None],
    profile: DisclosureProfile,
    confidence: float,
    emitted: list[str],
) -> pl.DataFrame:
    """Add reference groups, gaps, ratios and the direction-aware comparison."""
    reference_frame = pl.DataFrame(
        {"breakdown": emitted, "reference_group": [_reference_of(b, references) for b in emitted]},
        schema={"breakdown": pl.String, "reference_group": pl.String},
    )
    is_benchmarked = pl.col("breakdown").is_in(list(BENCHMARKED_BREAKDOWNS))
    reference_rows = controlled.select(
        *_KEYS,
        "imd_vintage",
        "breakdown",
        pl.col("group").alias("reference_group"),
        pl.col("numerator").alias("reference_numerator"),
        pl.col("denominator").alias("reference_denominator"),
        pl.col("rate").alias("reference_rate"),
        pl.col("rate_lower").alias("reference_rate_lower"),
        pl.col("rate_upper").alias("reference_rate_upper"),
        pl.col("is_suppressed").alias("reference_is_suppressed"),
    )
    overall_rows = controlled.filter(pl.col("breakdown") == "overall").select(
        *_KEYS, pl.col("rate").alias("overall_rate"), pl.col("is_suppressed").alias("overall_is_suppressed")
    )
    parts = pl.col("group").str.to_lowercase().str.split(SEPARATOR)
    is_missing_group = parts.list.eval(pl.element().is_in(list(NOT_COMPARED_GROUPS))).list.any()
    is_reference = (pl.col("group") == pl.col("reference_group")) & ~is_benchmarked
    compared = (
        controlled.join(reference_frame, on="breakdown", how="left")
        .with_columns(pl.when(~is_missing_group).then(pl.col("reference_group")).alias("reference_group"))
        .join(reference_rows, on=[*_KEYS, "imd_vintage", "breakdown", "reference_group"], how="left")
        .join(overall_rows, on=_KEYS, how="left")
    )
    pairwise = (
        pl.col("reference_group").is_not_null()
        & ~is_benchmarked
        & ~is_reference
        & ~pl.col("is_suppressed")
        & ~pl.col("reference_is_suppressed").fill_null(True)
    )
    benchmark = (
        pl.col("reference_group").is_not_null()
        & is_benchmarked
        & ~pl.col("is_suppressed")
        & ~pl.col("overall_is_suppressed").fill_null(True)
    )
    is_rate = pl.col("value_type") == "rate"
    # Proportions: Newcombe's hybrid score (method 10). Rates: the same construction (the method
    # of variance estimates recovery, Zou & Donner 2008, of which Newcombe's is the proportion
    # case) from each rate's own Byar/exact Poisson limits.
    difference = pl.col("rate") - pl.col("reference_rate")
    mover = [
        difference,
        difference - ((pl.col("rate") - pl.col("rate_lower")).pow(2)
                      + (pl.col("reference_rate_upper") - pl.col("reference_rate")).pow(2)).sqrt(),
        difference + ((pl.col("rate_upper") - pl.col("rate")).pow(2)
                      + (pl.col("reference_rate") - pl.col("reference_rate_lower")).pow(2)).sqrt(),
    ]
    newcombe = newcombe_columns("numerator", "denominator", "reference_numerator", "reference_denominator", confidence)
    gap_exprs = [pl.when(is_rate).then(m).otherwise(n) for m, n in zip(mover, newcombe)]
    compared = compared.with_columns(
        *[
            pl.when(pairwise).then(e).when(benchmark).then(bench).alias(name)
            for e, bench, name in zip(
                gap_exprs,
                [pl.col("rate") - pl.col("overall_rate"), pl.col("rate_lower") - pl.col("overall_rate"),
                 pl.col("rate_upper") - pl.col("overall_rate")],
                ["gap", "gap_lower", "gap_upper"],
            )
        ],
        # A zero reference rate has no ratio (not infinity).
        pl.when(pairwise & (pl.col("reference_rate") > 0)).then(pl.col("rate") / pl.col("reference_rate"))
        .when(benchmark & (pl.col("overall_rate") > 0)).then(pl.col("rate") / pl.col("overall_rate"))
        .alias("rate_ratio"),
        pl.when(pl.col("reference_group").is_null()).then(pl.lit(None, pl.String))
        .when(is_benchmarked).then(pl.lit("benchmark"))
        .when(is_rate).then(pl.lit("mover"))
        .otherwise(pl.lit("newcombe")).alias("comparison_method"),
    )

    # Direction-aware comparison: significant when the gap interval excludes 0.
    catalogue_rows = catalogue.select(
        pl.col("indicator_id").cast(pl.String),
        pl.col("indicator_version").cast(pl.Int32),
        pl.col("clinical_area").cast(pl.String),
        pl.col("direction").cast(pl.String),
    ).unique(subset=["indicator_id", "indicator_version"], keep="first")
    compared = compared.with_columns(pl.col("indicator_version").cast(pl.Int32)).join(
        catalogue_rows, on=["indicator_id", "indicator_version"], how="left"
    )
    uncatalogued = compared.filter(pl.col("direction").is_null()).select("indicator_id", "indicator_version").unique()
    if uncatalogued.height:
        raise ValueError(f"indicators not in the catalogue (id, version): {sorted(uncatalogued.rows())}")
    higher_is_better = pl.col("direction") == "higher_is_better"
    comparison = (
        pl.when(pl.col("is_suppressed") | pl.col("reference_group").is_null())
        .then(pl.lit("not compared"))
        .when(is_reference)
        .then(pl.lit("reference"))
        .when(pl.col("gap_lower").is_null() | pl.col("gap_upper").is_null())
        .then(pl.lit("not compared"))
        .when(pl.col("gap_lower") > 0)
        .then(pl.when(higher_is_better).then(pl.lit("better")).otherwise(pl.lit("worse")))
        .when(pl.col("gap_upper") < 0)
        .then(pl.when(higher_is_better).then(pl.lit("worse")).otherwise(pl.lit("better")))
        .otherwise(pl.lit("similar"))
    )
    order = {b: i for i, b in enumerate(emitted)}
    breakdown_order = pl.col("breakdown").replace_strict(order, default=len(order), return_dtype=pl.Int32)
    first_group = pl.col("group").str.split(SEPARATOR).list.first()
    return (
        compared.filter(pl.col("breakdown").is_in(emitted))
        .with_columns(comparison.alias("comparison"), pl.lit(profile.name).alias("disclosure_profile"))
        .sort(
            "reporting_month",
            "indicator_id",
            "indicator_version",
            "imd_vintage",
            breakdown_order,
            pl.col("group").str.contains(UNKNOWN),
            first_group.cast(pl.Int64, strict=False),
            "group",
            nulls_last=True,
        )
        .select([pl.col(c.name).cast(c.dtype) for c in GAP_TABLE.columns])
    )


# ---------------------------------------------------------------------------
# Slope and relative index of inequality from the published decile / quintile rows.
# ---------------------------------------------------------------------------

QUANTILE_TYPES = {"imd_decile": 10, "imd_quintile": 5}
_INDEX_KEYS = [*_KEYS, "imd_vintage", "quantile_type"]


def index_seed(base_seed: int, *parts: object) -> int:
    """Return the seed for one index: stable across runs and machines (CRC-32 of its key).

    Examples:
        >>> index_seed(20260, "2026-10-01", "smi_health_check", 1, "IMD2025", "imd_decile")
        95234967
    """
    import zlib

    key = "|".join(str(p) for p in parts).encode("utf-8")
    return (base_seed + zlib.crc32(key)) % 2**31


def build_inequality_table(
    gap_table: pl.DataFrame,
    *,
    base_seed: int = 20260,
    repetitions: int = 100000,
    confidence: float = 0.95,
    transform: bool = False,
) -> pl.DataFrame:
    """Return SII/RII per month x indicator x vintage x quantile type (the `INEQUALITY_TABLE` contract).

    Inputs are the published, disclosure-controlled rows: the rate of each national IMD
    decile or quintile ('unknown' left out), its controlled denominator as the population,
    and its 95% limits, from which `stats.inequality_table` takes each standard error on
    the analysis scale of the value type (logit for proportions, log for rates), as phe_sii
    does whether or not `transform` is set. The value type is the gap table's `value_type`
    column when it has one, else "proportion"; values are divided by the indicator's
    multiplier to the per-person scale and the SII is multiplied back by it, so the SII is
    on the scale of the indicator's rate (a proportion difference, or per 100,000). An index needs every quantile with a usable rate: a
    proportion of exactly 0 or 1 (or a rate of 0) has no value on that scale, so the row
    then says why it was not computed. `transform` applies to rates and proportions only. Each index's seed is derived from `base_seed` and its
    key, and recorded; `sii_polarity` says what the SII's sign means for the indicator.

    Examples:
        >>> import datetime as dt
        >>> m = dt.date(2026, 1, 1)
        >>> rows = pl.DataFrame({"reporting_month": [m] * 5, "indicator_id": ["x"] * 5, "indicator_version": [1] * 5,
        ...     "clinical_area": ["SMI"] * 5, "direction": ["higher_is_better"] * 5, "imd_vintage": ["IMD2025"] * 5,
        ...     "breakdown": ["imd_quintile"] * 5, "group": ["1", "2", "3", "4", "5"], "denominator": [100] * 5,
        ...     "rate": [0.5, 0.55, 0.6, 0.65, 0.7], "rate_lower": [0.4, 0.45, 0.5, 0.55, 0.6],
        ...     "rate_upper": [0.6, 0.65, 0.7, 0.75, 0.8], "disclosure_profile": ["none"] * 5},
        ...     schema_overrides={"indicator_version": pl.Int32})
        >>> out = build_inequality_table(rows, repetitions=1000)  # linear: 0.5 at rank 0.1 to 0.7 at 0.9
        >>> out.select("quantile_type", pl.col("sii").round(4), pl.col("rii").round(4), "status").rows()
        [('imd_quintile', 0.25, 1.5263, 'computed')]
        >>> out = build_inequality_table(rows.with_columns(pl.col("rate_lower").replace(0.6, 0.0)), repetitions=1000)
        >>> out["status"].item()
        'not computed: 1 of 5 quantiles has a limit at 0% or 100%, which the logit scale of the PHE method cannot take'
    """
    from pipelines.segmentation.schemas import INEQUALITY_TABLE
    from pipelines.segmentation.stats import inequality_table, sii_polarity

    if "value_type" not in gap_table.columns:  # a table from before units were published: proportions
        gap_table = gap_table.with_columns(pl.lit("proportion").alias("value_type"))
    if "multiplier" not in gap_table.columns:  # rates stored per person
        gap_table = gap_table.with_columns(pl.lit(1).alias("multiplier"))
    value_type = pl.col("value_type")
    quantile_rows = gap_table.filter(
        pl.col("breakdown").is_in(list(QUANTILE_TYPES)) & (pl.col("group") != UNKNOWN)
    ).with_columns(pl.col("breakdown").alias("quantile_type"), pl.col("group").cast(pl.Int32).alias("quantile"),
                   value_type.alias("value_type"))
    published = pl.col("rate").is_not_null() & (pl.col("denominator") > 0) & pl.col("rate_lower").is_not_null() \
        & pl.col("rate_upper").is_not_null()
    # The analysis scale's domain (stats.inequality_indices): logit needs (0, 1), log needs > 0.
    on_scale = (
        pl.when(pl.col("value_type") == "proportion").then((pl.col("rate_lower") > 0) & (pl.col("rate_upper") < 1))
        .when(pl.col("value_type") == "rate").then(pl.col("rate_lower") > 0)
        .otherwise(pl.lit(True))
    )
    quantile_rows = quantile_rows.with_columns(
        published.alias("_published"), (published & on_scale).alias("_usable"),
    )
    summary = (
        quantile_rows.group_by(_INDEX_KEYS)
        .agg(
            pl.col("clinical_area").first(),
            pl.col("direction").first(),
            pl.col("disclosure_profile").first(),
            pl.col("value_type").first(),
            pl.col("multiplier").first().cast(pl.Float64),
            pl.col("_usable").sum().cast(pl.Int32).alias("n_quantiles"),
            pl.col("_published").sum().cast(pl.Int32).alias("_published"),
            pl.col("denominator").filter(pl.col("_usable")).sum().cast(pl.Int64).alias("population"),
        )
        .with_columns(pl.col("quantile_type").replace_strict(QUANTILE_TYPES, return_dtype=pl.Int32).alias("_needed"))
    )
    seeds = [index_seed(base_seed, *key) for key in summary.select(_INDEX_KEYS).rows()]
    off_scale = pl.col("_published") - pl.col("n_quantiles")
    scale_words = pl.when(pl.col("value_type") == "rate").then(pl.lit("a limit at 0, which the log scale")) \
        .otherwise(pl.lit("a limit at 0% or 100%, which the logit scale"))
    summary = summary.with_columns(
        pl.Series("seed", seeds, dtype=pl.Int64),
        pl.when(pl.col("n_quantiles") == pl.col("_needed")).then(pl.lit("computed"))
        .when(pl.col("_published") < pl.col("_needed"))
        .then(pl.format("not computed: {} of {} quantiles have a published rate", "_published", "_needed"))
        .otherwise(pl.format("not computed: {} of {} quantiles {} {} of the PHE method cannot take", off_scale,
                             "_needed", pl.when(off_scale == 1).then(pl.lit("has")).otherwise(pl.lit("have")),
                             scale_words))
        .alias("status"),
    )
    # PHE transforms rates and proportions only; a 'normal' value is always fitted as it is.
    summary = summary.with_columns((pl.lit(transform) & (pl.col("value_type") != "normal")).alias("_transform"))
    complete = summary.filter(pl.col("status") == "computed").select(*_INDEX_KEYS, "seed", "_transform")
    # Values on the per-person scale (a proportion, or events per person) and the SII scaled by the
    # indicator's own multiplier, so `multiplier` in the table is the one the SII is expressed in
    # (1: a proportion difference; 100000: per 100,000), as phe_sii's `multiplier` argument.
    scale = pl.col("multiplier").cast(pl.Float64)
    inputs = quantile_rows.filter("_usable").join(complete, on=_INDEX_KEYS, how="inner").select(
        *_INDEX_KEYS, "quantile", pl.col("denominator").alias("population"), (pl.col("rate") / scale).alias("value"),
        (pl.col("rate_lower") / scale).alias("rate_lower"), (pl.col("rate_upper") / scale).alias("rate_upper"),
        "value_type", "multiplier", "seed", "_transform",
    )
    if inputs.height:
        indices = inequality_table(
            inputs, _INDEX_KEYS, standard_error=None, lower="rate_lower", upper="rate_upper",
            value_type=pl.col("value_type"), transform=pl.col("_transform"), multiplier=pl.col("multiplier"),
            confidence=confidence, repetitions=repetitions,
        )
    else:
        indices = pl.DataFrame(schema={**{k: quantile_rows.schema[k] for k in _INDEX_KEYS},
                                       **{c: pl.Float64 for c in ("sii", "sii_lower", "sii_upper", "rii", "rii_lower", "rii_upper")}})
    polarity = {d: sii_polarity(d, 1.0) for d in summary["direction"].unique().to_list()}
    return (
        summary.join(indices, on=_INDEX_KEYS, how="left")
        .with_columns(
            pl.col("_transform").alias("transform"),
            pl.lit(float(confidence)).alias("confidence"),
            pl.lit(repetitions, pl.Int64).alias("repetitions"),
            pl.col("direction").replace_strict(polarity, return_dtype=pl.String).alias("sii_polarity"),
        )
        .sort(_INDEX_KEYS)
        .select([pl.col(c.name).cast(c.dtype) for c in INEQUALITY_TABLE.columns])
    )
