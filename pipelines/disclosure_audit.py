"""The disclosure audit: every published surface checked against the disclosure profile's rules.

It reads only what readers get (tables in the published layout, the serving snapshot's
Parquet files and DuckDB database, the report's HTML, the run summary's text and what
`core20 quality` prints) and knows the profile. It reports the surface (table or file) and
the rule broken, and how many times, never a value. Rules (DOMAIN.md section 6; for
the suppressing profiles, whose promise is that no count of 1-7 is ever shown):

- `small_count`: a count of 1 to the profile's threshold;
- `unrounded_count`: a count the profile can never publish (e.g. 12 under round-to-5);
- `half_shown_row`: a gap-table row showing its numerator or its denominator but not both;
- `statistic_over_hidden`: a rate, interval, gap or ratio on a row whose counts are hidden
  (0 over a hidden denominator included);
- `printed_none`: a missing value printed as 'None' or 'nan' instead of 'suppressed'.

The same function is the blocking gate before publication (`assets/disclosure.py`, on the
month's candidates: tables, report, serving snapshot, summary) and the `core20
disclosure-audit` command (on what is published).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import polars as pl

from pipelines.segmentation.disclosure import DisclosureProfile, get_profile

COUNT_COLUMNS = re.compile(r"^(numerator|denominator|population|n|n_total|n_(?!quantiles$|points$)[a-z0-9_]+|patients)$")
STATISTIC_COLUMNS = ("rate", "rate_lower", "rate_upper", "gap", "gap_lower", "gap_upper", "rate_ratio",
                     # published.age_standardised_rates: crude figures beside the DSRs
                     "crude_rate", "crude_rate_lower", "crude_rate_upper", "crude_gap", "crude_gap_lower", "crude_gap_upper",
                     "dsr", "dsr_lower", "dsr_upper", "dsr_gap", "dsr_gap_lower", "dsr_gap_upper")
NUMBER = r"\d[\d,]*"


@dataclass(frozen=True)
class Violation:
    """One rule broken on one surface, and how many times (no values)."""

    surface: str
    rule: str
    n: int

    def __str__(self) -> str:
        return f"{self.surface}: {self.rule} ({self.n} time(s))"


def _publishable(profile: DisclosureProfile, values: pl.Series) -> pl.Series:
    """Return, per value, whether the profile can publish it (it maps some count onto it).

    Only the counts within two rounding bases of each distinct value can map onto it, so only
    those are tried (a history's largest count can be in the millions).
    """
    width = 2 * max(profile.base, 1)
    distinct = pl.DataFrame({"v": values.unique()}, schema={"v": pl.Int64})
    candidates = (distinct.with_columns(pl.int_ranges(pl.col("v") - width, pl.col("v") + width + 1).alias("n"))
                  .explode("n").filter(pl.col("n") >= 0))
    shown = candidates.filter(profile.control("n") == pl.col("v"))["v"].unique()
    return values.is_in(shown.implode())


def _suppresses(profile: DisclosureProfile) -> bool:
    return profile.small_count_action in ("suppress", "redact") and profile.small_count_threshold > 0


def _check_counts(surface: str, values, profile: DisclosureProfile) -> list[Violation]:
    """Return the count rules broken by `values` (a list or an integer Series of shown counts)."""
    found = []
    values = values.cast(pl.Int64) if isinstance(values, pl.Series) else pl.Series("v", list(values), dtype=pl.Int64)
    values = values.drop_nulls()
    if values.is_empty():
        return found
    small = values.is_between(1, profile.small_count_threshold) if _suppresses(profile) else values.is_null()
    if small.any():
        found.append(Violation(surface, "small_count", int(small.sum())))
    if profile.rounding != "none":
        bad = int((~_publishable(profile, values) & ~small).sum())
        if bad:
            found.append(Violation(surface, "unrounded_count", bad))
    return found


def audit_table(surface: str, frame: pl.DataFrame, profile: DisclosureProfile) -> list[Violation]:
    """Return the rules a table in the published layout breaks.

    Rows that name their disclosure profile (`disclosure_profile`) are held to that profile,
    each group of rows to its own (a history whose months were published under different
    profiles); rows naming none, or 'none' (private checks only, never publishable), are held
    to `profile`, the profile of the month being audited.
    """
    found: list[Violation] = []
    if frame.is_empty():
        return found
    counts = [c for c in frame.columns if COUNT_COLUMNS.match(c) and frame.schema[c].is_integer()]
    if counts:
        if "disclosure_profile" in frame.columns:
            named = pl.col("disclosure_profile").fill_null("none")
            groups = [(get_profile(name) if name != "none" else profile, part)
                      for (name,), part in frame.group_by(named.alias("_profile"), maintain_order=True)]
        else:
            groups = [(profile, frame)]
        by_profile: dict[str, tuple[DisclosureProfile, list[pl.Series]]] = {}
        for rule, part in groups:
            by_profile.setdefault(rule.name, (rule, []))[1].extend(part[c].drop_nulls().cast(pl.Int64) for c in counts)
        tally: dict[str, int] = {}
        for rule, values in by_profile.values():
            for v in _check_counts(surface, pl.concat(values), rule):
                tally[v.rule] = tally.get(v.rule, 0) + v.n
        found += [Violation(surface, rule, n) for rule, n in tally.items()]
    if {"numerator", "denominator"} <= set(frame.columns):
        half = frame.filter(pl.col("numerator").is_null() ^ pl.col("denominator").is_null()).height
        if half:
            found.append(Violation(surface, "half_shown_row", half))
        hidden = pl.col("denominator").is_null() | pl.col("numerator").is_null()
        if "is_suppressed" in frame.columns:
            hidden = hidden | pl.col("is_suppressed").fill_null(False)
        statistics = [c for c in STATISTIC_COLUMNS if c in frame.columns]
        if statistics:
            shown = frame.filter(hidden & pl.any_horizontal([pl.col(c).is_not_null() for c in statistics])).height
            if shown:
                found.append(Violation(surface, "statistic_over_hidden", shown))
    return found


class _Tables(HTMLParser):
    """Collect every HTML table's header cells and rows of cell text, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[list[str], list[list[str]]]] = []
        self.text: list[str] = []
        self._stack: list[tuple[list[str], list[list[str]]]] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._is_header = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._stack.append(([], []))
        elif tag == "tr" and self._stack:
            self._row = []
        elif tag in ("td", "th") and self._stack:
            self._cell, self._is_header = [], tag == "th"

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._stack:
            text = "".join(self._cell).strip()
            if self._is_header:
                self._stack[-1][0].append(text)
            elif self._row is not None:
                self._row.append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None and self._stack:
            if self._row:
                self._stack[-1][1].append(self._row)
            self._row = None
        elif tag == "table" and self._stack:
            self.tables.append(self._stack.pop())

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _numbers(text: str) -> list[int]:
    return [int(x.replace(",", "")) for x in re.findall(NUMBER, text)]


def audit_text(surface: str, text: str, profile: DisclosureProfile) -> list[Violation]:
    """Return the rules a printed text (run summary, `core20 quality`) breaks.

    Counts are read where the text states them: '(a/b)' fractions, 'N registered patients'
    and 'quarantined rows: N patients, M events'.
    """
    found: list[Violation] = []
    values: list[int] = []
    for a, b in re.findall(rf"\(({NUMBER})/({NUMBER})\)", text):
        values += _numbers(a) + _numbers(b)
    for pattern in (rf"({NUMBER}) registered patients", rf"quarantined rows: ({NUMBER}) patients, ({NUMBER}) events"):
        for match in re.findall(pattern, text):
            for part in (match if isinstance(match, tuple) else (match,)):
                values += _numbers(part)
    found += _check_counts(surface, values, profile)
    none = len(re.findall(r"\bNone\b|\bnan\b|\bNaN\b", text))
    if none:
        found.append(Violation(surface, "printed_none", none))
    return found


def audit_html(surface: str, html: str, profile: DisclosureProfile) -> list[Violation]:
    """Return the rules an HTML report breaks: its tables' count columns and the counts its text states."""
    parser = _Tables()
    parser.feed(html)
    values: list[int] = []
    for header, rows in parser.tables:
        columns = [i for i, h in enumerate(header) if COUNT_COLUMNS.match(h.strip().lower().replace(" ", "_"))]
        for row in rows:
            for i in columns:
                if i < len(row) and re.fullmatch(NUMBER, row[i]):
                    values += _numbers(row[i])
    found = _check_counts(surface, values, profile)
    text = " ".join(parser.text)
    found += [v for v in audit_text(surface, text, profile) if v.rule != "printed_none"]
    # 'None'/'nan' as a whole cell or value (words like 'Maternity' are fine).
    none = sum(1 for _, rows in parser.tables for row in rows for cell in row if cell in ("None", "nan", "NaN"))
    none += len(re.findall(r"\(None/|/None\)|\bNone\b(?=[^<]*</t[dh]>)", html))
    if none:
        found.append(Violation(surface, "printed_none", none))
    return found


def audit_snapshot(folder: Path, profile: DisclosureProfile) -> list[Violation]:
    """Return the rules a serving snapshot breaks: every Parquet file and every table of its DuckDB file."""
    import duckdb

    found: list[Violation] = []
    for path in sorted((folder / "parquet").rglob("*.parquet")):
        found += audit_table(str(path.relative_to(folder.parent)), pl.read_parquet(path), profile)
    database = folder / "core20plus5.duckdb"
    if database.exists():
        con = duckdb.connect(str(database), read_only=True)
        try:
            tables = con.execute("select table_schema, table_name from information_schema.tables "
                                 "where table_schema in ('star', 'published') order by 1, 2").fetchall()
            for schema, table in tables:
                frame = pl.from_arrow(con.sql(f'select * from "{schema}"."{table}"').to_arrow_table())
                found += audit_table(f"{folder.name}/core20plus5.duckdb:{schema}.{table}", frame, profile)
        finally:
            con.close()
    return found


def audit_published(warehouse: Path, serving_root: Path | None, reports_dir: Path | None,
                    month=None, *, schema: str = "published") -> tuple[list[Violation], dict]:
    """Return every rule broken by what is published now, and what was read (the command's work).

    `schema="national"` audits a national release (pipelines/national/rollup.py): its
    tables, with every area's rows, and its serving snapshots. It has no run summary, data-
    quality history or report of its own (each ICB month's were audited when it ran).
    """
    import duckdb

    from pipelines import runner
    from pipelines.cli import quality_text
    from pipelines.publication import published_views
    from pipelines.segmentation import star
    from pipelines.warehouse import as_warehouse

    found: list[Violation] = []
    read = {"tables": 0, "snapshots": 0, "reports": 0, "texts": 0}
    con = duckdb.connect()
    try:
        as_warehouse(warehouse).attach(con, star.SOURCE)
        names = published_views(con, star.SOURCE, schema=schema)
        months = [r[0] for r in con.execute("select distinct reporting_month from pub.gap_table order by 1").fetchall()] \
            if "gap_table" in names else []
        months = [m for m in months if month is None or m == month]
        profile = get_profile(runner_profile(con, months))
        for name in names:
            where = "" if month is None else f" where reporting_month = DATE '{month.isoformat()}'"
            frame = pl.from_arrow(con.sql(f'select * from pub."{name}"{where}').to_arrow_table())
            found += audit_table(f"{schema}.{name}", frame, profile)
            read["tables"] += 1
        for m in months if schema == "published" else []:
            summary = runner.summary_text(runner.summary_from(con, m, "pub"))
            found += audit_text(f"run summary {m:%Y-%m}", summary, profile)
            read["texts"] += 1
    finally:
        con.close()
    if schema == "published":
        found += audit_text("core20 quality", quality_text(warehouse, month), profile)
        read["texts"] += 1
    if serving_root is not None and (serving_root / "snapshots").exists():
        for folder in sorted(p for p in (serving_root / "snapshots").iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += audit_snapshot(folder, profile)
            read["snapshots"] += 1
    if reports_dir is not None and reports_dir.exists():
        for path in sorted(reports_dir.glob("core20plus5_report_*.html")):
            if month is not None and not path.name.endswith(f"{month:%Y-%m}.html"):
                continue
            found += audit_html(path.name, path.read_text(encoding="utf-8"), profile)
            read["reports"] += 1
    return found, read


def runner_profile(con, months) -> str:
    """Return the disclosure profile the gap table names for these months (the default when none).

    Only the given months count: a history published under another profile must not decide
    how this month's surfaces are audited. Months under different profiles (an audit of the
    whole history): the NHS rule when one of them uses it, else the first by name; tables are
    still audited row by row under each row's own profile (`audit_table`).
    """
    from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5

    months = list(months)
    if not months:
        return NHS_SUPPRESS_ROUND5.name
    found = con.execute("select distinct disclosure_profile from pub.gap_table where list_contains(?, reporting_month) "
                        "order by 1", [months]).fetchall()
    names = [r[0] for r in found if r[0] and r[0] != "none"]
    if NHS_SUPPRESS_ROUND5.name in names or not names:
        return NHS_SUPPRESS_ROUND5.name
    return names[0]


def audit_candidates(warehouse: Path, month, snapshot: Path, report: Path) -> tuple[list[Violation], dict]:
    """Return every rule broken by the month's candidate outputs: what publishing would release.

    Reads the candidate tables (as they will be published: publication.published_views), the
    candidate serving snapshot, the candidate report, the run summary and `core20 quality` text
    the month would print.
    """
    import duckdb

    from pipelines import runner
    from pipelines.cli import quality_text
    from pipelines.publication import published_views
    from pipelines.segmentation import star
    from pipelines.warehouse import as_warehouse

    found: list[Violation] = []
    con = duckdb.connect()
    try:
        as_warehouse(warehouse).attach(con, star.SOURCE)
        names = published_views(con, star.SOURCE, month)
        profile = get_profile(runner_profile(con, [month]))
        for name in names:
            frame = pl.from_arrow(con.sql(f'select * from pub."{name}" where reporting_month = $1',
                                          params=[month]).to_arrow_table())
            found += audit_table(f"published.{name} (candidate)", frame, profile)
        summary = runner.summary_text(runner.summary_from(con, month, "pub"))
    finally:
        con.close()
    found += audit_text("run summary (candidate)", summary, profile)
    found += audit_text("core20 quality", quality_text(warehouse, month), profile)
    found += audit_snapshot(snapshot, profile)
    found += audit_html(f"{report.name} (candidate)", report.read_text(encoding="utf-8"), profile)
    return found, {"profile": profile.name, "tables": len(names)}
