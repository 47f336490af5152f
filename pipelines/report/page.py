"""The monthly HTML report: one self-contained page per published month, for people who never query.

Everything on the page comes from the warehouse after the month passed its gates: the
published tables (gap table, indicator catalogue, and any other published table), the
pinned reference tables (for the map), and counts of the month's data-quality outcomes,
which get the month's disclosure profile before they are shown. Sections that depend on
tables this pipeline version does not publish yet (SII/RII, SPC limits) say so instead of
showing anything invented: they are drawn from whichever published table carries the
columns they need (`SII_COLUMNS`, `SPC_COLUMNS`, the contracts of `published.inequality_table`
and `published.spc_series`), so a warehouse without them still gets a report.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from html import escape
from pathlib import Path

import duckdb
import polars as pl

from pipelines.report.charts import RateRow, SeriesPoint, Unit, count, percent, rate_chart, series_chart
from pipelines.segmentation import star
from pipelines.segmentation.disclosure import get_profile
from pipelines.segmentation.schemas import MATCH_METHODS

SII_COLUMNS = ("reporting_month", "indicator_id", "sii", "sii_lower", "sii_upper", "rii", "rii_lower", "rii_upper")
SPC_COLUMNS = ("reporting_month", "point_month", "indicator_id", "imd_vintage", "breakdown", "group", "rate", "mean",
               "lower_limit", "upper_limit", "point_type", "variation", "assurance", "n_points", "is_short_series")
OWN_TABLES = {"gap_table", "indicator_catalogue"}
MAX_GENERIC_ROWS = 200
SNOMED_STATEMENT = ("SNOMED CT and dm+d codes are used under the SNOMED CT UK Affiliate Licence; "
                    "users need their own entitlement (e.g. via NHS England TRUD).")
AREA_NAMES = {"severe_mental_illness": "Severe mental illness", "hypertension": "Hypertension case-finding and treatment",
              "chronic_respiratory_disease": "Chronic respiratory disease", "early_cancer_diagnosis": "Early cancer diagnosis",
              "maternity": "Maternity", "smoking_cessation": "Smoking cessation"}


def attach(warehouse, candidate_month: date | None = None) -> duckdb.DuckDBPyConnection:
    """Return an in-memory connection with the warehouse (a `Warehouse` or its file) attached
    read-only as `wh` through the warehouse door, and the published tables as views in schema
    `pub` (with `candidate_month`, as they will be once that month's gated candidates are
    published: see publication.published_views)."""
    from pipelines.publication import published_views
    from pipelines.warehouse import as_warehouse

    con = duckdb.connect()
    as_warehouse(warehouse).attach(con, star.SOURCE)
    published_views(con, star.SOURCE, candidate_month)
    return con


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Return published table -> columns, from the `pub` views (never the private layer)."""
    rows = con.execute("select table_name, column_name from information_schema.columns where table_catalog = 'memory' "
                       "and table_schema = 'pub' and table_name not like '\\_candidate\\_%' escape '\\' "
                       "order by table_name, ordinal_position").fetchall()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    return pl.from_arrow(con.sql(sql, params=params or []).to_arrow_table())


def _has(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return star._has(con, schema, table)


def area_name(area: str | None) -> str:
    """Return a readable clinical-area name.

    Examples:
        >>> area_name("severe_mental_illness"), area_name("cyp_asthma")
        ('Severe mental illness', 'Cyp asthma')
    """
    return AREA_NAMES.get(area or "", (area or "other").replace("_", " ").capitalize())


def _rows(frame: pl.DataFrame, breakdown: str, *, highlight: str | None = None) -> list[RateRow]:
    part = frame.filter(pl.col("breakdown") == breakdown)
    if part.is_empty():
        return []
    labels = {g: star.group_label(breakdown, g) for g in part["group"].to_list()}

    def order(group: str) -> tuple:
        return (group == "unknown", not group.isdigit(), int(group) if group.isdigit() else 0, group)

    rows = []
    for record in sorted(part.iter_rows(named=True), key=lambda r: order(r["group"])):
        rows.append(RateRow(labels[record["group"]], record["rate"], record["rate_lower"], record["rate_upper"],
                            record["numerator"], record["denominator"],
                            is_reference=record["group"] == record["reference_group"], is_highlight=record["group"] == highlight,
                            is_low_reliability=bool(record.get("is_low_reliability"))))
    return rows


def unit_of(frame: pl.DataFrame) -> Unit:
    """Return the unit of an indicator's published rows (a proportion when the table has no unit columns)."""
    if "value_type" not in frame.columns or frame.is_empty():
        return Unit()
    return Unit(frame["value_type"][0] or "proportion", int(frame["multiplier"][0] or 1))


def _figures_table(rows: list[RateRow], unit: Unit = Unit()) -> str:
    body = "".join(f"<tr><td>{escape(r.label)}</td><td>{count(r.numerator)}</td><td>{count(r.denominator)}</td>"
                   f"<td>{'about ' if r.is_low_reliability else ''}{unit.text(r.rate)}</td>"
                   f"<td>{unit.text(r.lower)} to {unit.text(r.upper)}</td></tr>" for r in rows)
    return ("<details><summary>Figures</summary><table><thead><tr><th>group</th><th>numerator</th><th>denominator</th>"
            f"<th>rate</th><th>95% interval</th></tr></thead><tbody>{body}</tbody></table>"
            '<p class="note">"about": the rate comes from small counts rounded by the disclosure profile; read it as a range.</p>'
            "</details>")


def gap_sentence(frame: pl.DataFrame) -> str:
    """Return the Core20-vs-rest gap in words, in the indicator's unit, from the published Core20 row.

    Examples:
        >>> f = pl.DataFrame({"breakdown": ["core20"], "group": ["core20"], "gap": [-0.078], "gap_lower": [-0.118],
        ...                   "gap_upper": [-0.038], "comparison": ["worse"]})
        >>> gap_sentence(f)
        'Core20 minus the rest: -7.8 percentage points (95% CI -11.8 percentage points to -3.8 percentage points): Core20 is <strong>worse</strong>.'
        >>> gap_sentence(f.with_columns(pl.lit("rate").alias("value_type"), pl.lit(100000).alias("multiplier"),
        ...                             gap=pl.lit(-94.9), gap_lower=pl.lit(-1760.2), gap_upper=pl.lit(1778.5)))
        'Core20 minus the rest: -94.9 per 100,000 (95% CI -1,760.2 per 100,000 to +1,778.5 per 100,000): Core20 is <strong>worse</strong>.'
    """
    row = frame.filter((pl.col("breakdown") == "core20") & (pl.col("group") == "core20"))
    if row.is_empty() or row["gap"][0] is None:
        return "The gap between Core20 and the rest cannot be shown this month (suppressed or not computed)."
    r = row.row(0, named=True)
    unit = unit_of(row)
    return (f"Core20 minus the rest: {unit.difference(r['gap'])} (95% CI {unit.difference(r['gap_lower'])} to "
            f"{unit.difference(r['gap_upper'])}): Core20 is <strong>{escape(r['comparison'] or 'not compared')}</strong>.")


def _spc_table(tables: dict[str, list[str]]) -> str | None:
    return next((t for t, cols in tables.items() if set(SPC_COLUMNS) <= set(cols)), None)


def _sii_table(tables: dict[str, list[str]]) -> str | None:
    return next((t for t, cols in tables.items() if set(SII_COLUMNS) <= set(cols)), None)


def _spc_words(value: str | None) -> str:
    return (value or "not assessed").replace("_", " ")


def _trend(con: duckdb.DuckDBPyConnection, indicator: str, vintage: str, month: date, spc: str | None,
           unit: Unit = Unit()) -> str:
    frame = _frame(con, """
        select reporting_month, breakdown, "group", rate, rate_lower, rate_upper from pub.gap_table
        where indicator_id = $1 and imd_vintage = $2 and reporting_month <= $3
          and ((breakdown = 'overall') or (breakdown = 'core20' and "group" in ('core20', 'rest')))
        order by reporting_month""", [indicator, vintage, month])
    points = pl.DataFrame()
    if spc is not None:
        points = _frame(con, f"""
            select point_month, rate, mean, lower_limit, upper_limit, point_type, variation, assurance, n_points, is_short_series
            from pub.{star.q(spc)} where reporting_month = $1 and indicator_id = $2 and imd_vintage = $3
              and breakdown = 'overall' order by point_month""", [month, indicator, vintage])
    flags = {r["point_month"]: r["point_type"] for r in points.iter_rows(named=True)
             if r["point_type"] and r["point_type"] != "common_cause"}
    series = {}
    for label, (breakdown, group) in (("All patients", ("overall", "all")), ("Core20", ("core20", "core20")), ("Rest", ("core20", "rest"))):
        part = frame.filter((pl.col("breakdown") == breakdown) & (pl.col("group") == group))
        series[label] = [SeriesPoint(r["reporting_month"], r["rate"], r["rate_lower"], r["rate_upper"],
                                     flags.get(r["reporting_month"]) if label == "All patients" else None)
                         for r in part.iter_rows(named=True)]
    lines = {}
    if not points.is_empty():
        for column, label in (("mean", "SPC mean"), ("lower_limit", "lower limit"), ("upper_limit", "upper limit")):
            lines[label] = [(r["point_month"], r[column]) for r in points.iter_rows(named=True)]
    chart = series_chart(series, title=f"{indicator}: rate by month", lines=lines, unit=unit)
    if points.is_empty():
        words = ('<p class="note">No SPC chart is published for this indicator this month; the chart shows each '
                 "month's rate with its 95% interval.</p>")
    else:
        last = points.row(-1, named=True)
        words = (f'<p class="spc">SPC (all patients, {last["n_points"]} months): variation <strong>{escape(_spc_words(last["variation"]))}'
                 f'</strong>; assurance against the target <strong>{escape(_spc_words(last["assurance"]))}</strong>. '
                 "Dashed lines: mean and natural process limits; orange rings: special-cause points."
                 + (" Fewer than 12 months: read the limits with care." if last["is_short_series"] else "") + "</p>")
    n_months = len({p.month for pts in series.values() for p in pts})
    note = "" if n_months > 1 else '<p class="note">Only one month is published so far; the trend fills in month by month.</p>'
    return chart + words + note


def sii_text(row: dict) -> str:
    """Return an SII/RII row in words (percentage points for proportions).

    Examples:
        >>> sii_text({"sii": 0.12, "sii_lower": 0.05, "sii_upper": 0.2, "rii": 1.3, "rii_lower": 1.1, "rii_upper": 1.5,
        ...           "value_type": "proportion", "multiplier": 1.0, "status": "computed"})
        'SII +12.0 percentage points (95% CI +5.0 to +20.0); RII 1.30 (1.10 to 1.50)'
        >>> sii_text({"sii": None, "status": "not computed: 2 of 5 quantiles have a published rate"})
        'not computed: 2 of 5 quantiles have a published rate'
        >>> sii_text({"sii": -250.0, "sii_lower": -600.0, "sii_upper": 90.0, "rii": 0.9, "value_type": "rate",
        ...           "multiplier": 100000.0, "status": "computed"})
        'SII -250.0 per 100,000 (95% CI -600.0 to +90.0); RII 0.90'
    """
    if row.get("sii") is None:
        return row.get("status") or "not computed"
    multiplier = row.get("multiplier") or 1
    scale, unit = ((100, " percentage points") if row.get("value_type") != "rate"
                   else (1, f" per {int(multiplier):,}"))
    sii = f"SII {scale * row['sii']:+.1f}{unit}"
    if row.get("sii_lower") is not None:
        sii += f" (95% CI {scale * row['sii_lower']:+.1f} to {scale * row['sii_upper']:+.1f})"
    rii = f"RII {row['rii']:.2f}" if row.get("rii") is not None else "RII not computed"
    if row.get("rii") is not None and row.get("rii_lower") is not None:
        rii += f" ({row['rii_lower']:.2f} to {row['rii_upper']:.2f})"
    return f"{sii}; {rii}"


def _sii_rows(con, table: str | None, month: date, vintage: str) -> pl.DataFrame:
    if table is None:
        return pl.DataFrame()
    columns = _tables(con)[table]
    wanted = [c for c in ("indicator_id", "quantile_type", "sii", "sii_lower", "sii_upper", "rii", "rii_lower", "rii_upper",
                          "value_type", "multiplier", "status", "repetitions", "seed") if c in columns]
    vintage_filter = " and imd_vintage = $2" if "imd_vintage" in columns else ""
    return _frame(con, f"select {', '.join(star.q(c) for c in wanted)} from pub.{star.q(table)} "
                       f"where reporting_month = $1{vintage_filter} order by 1, 2", [month, vintage] if vintage_filter else [month])


def _indicator_article(con, info: dict, gaps: pl.DataFrame, vintage: str, month: date, spc, sii: pl.DataFrame) -> str:
    frame = gaps.filter(pl.col("indicator_id") == info["indicator_id"])
    quintile_sii = sii.filter((pl.col("indicator_id") == info["indicator_id"]) & (pl.col("quantile_type") == "imd_quintile")) \
        if not sii.is_empty() else sii
    sii_line = (f'<p class="sii">Social gradient across the quintiles: {escape(sii_text(quintile_sii.row(0, named=True)))}.</p>'
                if not quintile_sii.is_empty() else "")
    unit = unit_of(frame)
    core = _rows(frame, "core20", highlight="core20")
    quintiles = _rows(frame, "imd_quintile", highlight="1")
    ethnicity = _rows(frame, "ethnicity_broad")
    target = info.get("target")
    direction = "higher is better" if info.get("direction") == "higher_is_better" else "lower is better"
    missing = info.get("unavailable_components") or []
    caveat = (f'<p class="caveat">Not every component can be computed: {escape("; ".join(missing))}.</p>' if missing else "")
    parts = [f'<article class="indicator" id="indicator-{escape(info["indicator_id"])}">',
             f'<h3>{escape(info.get("title") or info["indicator_id"])}</h3>',
             f'<p class="meta">Indicator <code>{escape(info["indicator_id"])}</code>, definition version {info["indicator_version"]}'
             f' · {direction}{f" · target {percent(target, 0)}" if target is not None else ""} · IMD vintage {escape(vintage)}</p>',
             caveat,
             "<h4>Core20 compared with the rest of the population</h4>", f"<p>{gap_sentence(frame)}</p>",
             rate_chart(core, title=f"{info['indicator_id']}: Core20 vs rest", target=target, unit=unit),
             _figures_table(core, unit),
             "<h4>By national IMD quintile</h4>",
             rate_chart(quintiles, title=f"{info['indicator_id']}: by IMD quintile", target=target, unit=unit), sii_line,
             _figures_table(quintiles, unit),
             "<h4>By ethnic group</h4>",
             rate_chart(ethnicity, title=f"{info['indicator_id']}: by ethnic group", target=target, unit=unit) if ethnicity
             else '<p class="note">No ethnicity breakdown published.</p>', _figures_table(ethnicity, unit),
             "<h4>Over time</h4>", _trend(con, info["indicator_id"], vintage, month, spc, unit), "</article>"]
    return "".join(parts)


def _unavailable_list(unavailable: pl.DataFrame) -> str:
    """Return the list of indicators not available this month, with why (empty when none)."""
    if unavailable.is_empty():
        return ""
    items = "".join(f'<li><strong>{escape(row["title"] or row["indicator_id"])}</strong>: '
                    f'{escape(row["not_available_reason"] or "not available")}</li>'
                    for row in unavailable.iter_rows(named=True))
    return (f'<h3>Not available this month ({unavailable.height})</h3><p class="note">These indicators are reported as '
            f'not available, not as zero:</p><ul class="unavailable">{items}</ul>')


def _generic_table(con, table: str, month: date, *, whole_extract: bool = False) -> str:
    columns = _tables(con)[table]
    where = "where reporting_month = $1" if "reporting_month" in columns else ""
    params = [month] if where else []
    if whole_extract and "practice_code" in columns:
        # Per-practice rows are for Power BI; the report shows the whole extract ('ALL').
        where += (" and " if where else "where ") + "upper(practice_code) = 'ALL'"
    total = con.sql(f"select count(*) from pub.{star.q(table)} {where}", params=params).fetchall()[0][0]
    frame = _frame(con, f"select * from pub.{star.q(table)} {where} limit {MAX_GENERIC_ROWS}", params)
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>" for row in frame.iter_rows())
    shown = f"all {total} rows" if total <= MAX_GENERIC_ROWS else f"the first {MAX_GENERIC_ROWS} of {total} rows"
    return (f'<div class="generic" data-table="{escape(table)}"><h4><code>published.{escape(table)}</code></h4>'
            f'<p class="note">Showing {shown} for this month.</p><div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div></div>")


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _sii_section(sii: pl.DataFrame, table: str | None, titles: dict[str, str]) -> str:
    intro = ("<p>The slope index of inequality (SII) is the modelled difference in the rate between the least and the most "
             "deprived ends of the population, using every deprivation group weighted by its size (positive: higher in the "
             "least deprived); the relative index (RII) is the same as a ratio. A value near 0 (SII) or 1 (RII) means little "
             "social gradient. An index needs a published rate in every quantile, so small groups can prevent it.</p>")
    if table is None:
        return (intro + '<p class="pending">Not published by this version of the pipeline: no published table carries '
                f"the columns {', '.join(SII_COLUMNS[2:])}. This section fills in automatically once one does.</p>")
    if sii.is_empty():
        return intro + f'<p class="note">No rows in <code>published.{escape(table)}</code> for this month.</p>'
    body = "".join(f"<tr><td>{escape(titles.get(r['indicator_id'], r['indicator_id']))}</td><td>{escape(r['quantile_type'].replace('imd_', 'IMD '))}</td>"
                   f"<td>{escape(sii_text(r))}</td></tr>" for r in sii.iter_rows(named=True))
    draws = sii.filter(pl.col("sii").is_not_null())
    method = (f" Intervals by simulation ({draws['repetitions'][0]:,} draws, seed {draws['seed'][0]})."
              if "repetitions" in sii.columns and not draws.is_empty() else "")
    return (intro + f'<table class="sii"><thead><tr><th>indicator</th><th>quantiles</th><th>SII and RII</th></tr></thead>'
            f'<tbody>{body}</tbody></table><p class="note">From <code>published.{escape(table)}</code>.{method}</p>')


def _spc_section(spc: str | None) -> str:
    intro = ("<p>Statistical process control (NHS \"Making Data Count\" XmR charts) separates ordinary month-to-month "
             "variation from special-cause change: points outside the natural process limits, long runs on one side of "
             "the mean, or steady trends. Each indicator's \"Over time\" chart above draws them for all patients.</p>")
    if spc is None:
        return (intro + '<p class="pending">SPC limits are not published by this version of the pipeline; the '
                "\"Over time\" charts show each month's published rate with its 95% interval only.</p>")
    return intro + f'<p class="note">From <code>published.{escape(spc)}</code>.</p>'


def data_quality(con, month: date, vintage: str, profile_name: str, gaps: pl.DataFrame | None = None) -> tuple[str, dict]:
    """Return the data-quality section and its figures, from published (disclosure-controlled) tables only.

    The counts are those of `published.deprivation_quality` for the whole extract (protected
    with the gap table), and the demographic recording comes from the published gap-table rows
    of each indicator ('unknown', 'Not stated' and 'Not known' groups): the report never counts the private
    layer itself, so it cannot show a number the tables hide.
    """
    profile = get_profile(profile_name)
    parts, figures = [], {}
    tables = _tables(con)
    if "deprivation_quality" in tables:
        row = _frame(con, "select * from pub.deprivation_quality where reporting_month = $1 and imd_vintage = $2 "
                          "and practice_code = 'ALL'", [month, vintage])
        if row.height:
            r = row.row(0, named=True)
            figures["n_patients"], figures["match_rate"] = r["n_patients"], r["match_rate"]
            figures["methods"] = {m: r[f"n_{m}"] for m in MATCH_METHODS if r.get(f"n_{m}") != 0}
            total = r["n_patients"]
            body = "".join(f"<tr><td>{escape(m.replace('_', ' '))}</td><td>{count(n)}</td>"
                           f"<td>{percent(n / total if n is not None and total else None)}</td></tr>"
                           for m, n in figures["methods"].items())
            parts.append(f"<h4>How each patient's {escape(vintage)} decile was found</h4><table class=\"dq\"><thead><tr><th>method</th>"
                         f"<th>patients</th><th>share</th></tr></thead><tbody>{body}</tbody></table>"
                         f'<p class="note">Match rate: {percent(r["match_rate"])} = patients with a national decile / patients '
                         'with an address IMD can apply to (every registered patient except blank postcodes and addresses '
                         'outside England), the definition the run summary and <code>core20 quality</code> use. '
                         '"outside England" addresses get no decile by design (the IMD covers England only); '
                         '"blank", "invalid postcode" and "unmatched" are data problems to raise with the supplier.</p>')
    if gaps is not None and gaps.height:
        recording = gaps.filter(pl.col("breakdown").is_in(["ethnicity_broad", "sex", "age_band", "overall"])
                                & pl.col("group").is_in(["all", "unknown", "Not stated", "Not known"]))
        lines = []
        for (indicator,), rows in sorted(recording.group_by("indicator_id"), key=lambda kv: kv[0]):
            def shown(breakdown: str, group: str):
                found = rows.filter((pl.col("breakdown") == breakdown) & (pl.col("group") == group))
                return (found["denominator"][0], bool(found["is_suppressed"][0])) if found.height else (0, False)
            total, _ = shown("overall", "all")
            cells = []
            for breakdown, group in (("ethnicity_broad", "Not stated"), ("ethnicity_broad", "Not known"), ("ethnicity_broad", "unknown"),
                                     ("sex", "unknown"), ("age_band", "unknown")):
                n, hidden = shown(breakdown, group)
                share = None if hidden or n is None or not total else n / total
                cells.append(f"<td>{count(None if hidden else n)}</td><td>{percent(share)}</td>")
            lines.append(f"<tr><td>{escape(indicator)}</td>{''.join(cells)}</tr>")
        parts.append("<h4>Demographic recording</h4><p>NHS England asks for unknown and not-stated demographics to be "
                     "reported; both are shown separately, for each indicator's denominator, from the published gap table.</p>"
                     "<div class=\"scroll\"><table class=\"dq\"><thead><tr><th>indicator</th><th colspan=2>ethnicity not stated</th>"
                     "<th colspan=2>ethnicity not known (coded)</th>"
                     "<th colspan=2>no ethnicity code</th><th colspan=2>sex unknown</th><th colspan=2>age unknown</th></tr></thead>"
                     f"<tbody>{''.join(lines)}</tbody></table></div>")
    quality = [t for t in tables if "quality" in t]
    parts += [_generic_table(con, t, month, whole_extract=True) for t in quality]
    parts.append(f'<p class="note">Counts have the {escape(profile_name)} disclosure profile applied ({escape(profile.description)})</p>')
    return "".join(parts), figures


STYLE = """
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;color:#1d2731;max-width:980px;margin:0 auto;padding:0 20px 40px;line-height:1.45}
header{border-bottom:4px solid #005eb8;padding:18px 0 10px;margin-bottom:10px}header h1{margin:0;font-size:1.7em;color:#005eb8}
header p{margin:4px 0;color:#4c6272}nav ol{columns:2;font-size:.95em}h2{color:#005eb8;border-bottom:1px solid #d8dde0;padding-bottom:4px;margin-top:34px}
h3{margin-top:26px}h4{margin:18px 0 6px}.meta{color:#4c6272;font-size:.92em}.note{color:#4c6272;font-size:.9em}
.pending{background:#fff4e5;border-left:4px solid #ffb81c;padding:8px 12px}.caveat{background:#fdf2f2;border-left:4px solid #c0392b;padding:6px 10px}
.summary{display:flex;gap:14px;flex-wrap:wrap}.summary div{background:#f0f4f5;padding:10px 14px;border-radius:4px;min-width:180px}
.summary strong{display:block;font-size:1.5em;color:#005eb8}table{border-collapse:collapse;font-size:.88em;margin:6px 0}
td,th{border:1px solid #d8dde0;padding:3px 7px;text-align:left}th{background:#f0f4f5}.scroll{overflow-x:auto}
article.indicator{border-top:2px solid #e8edee;margin-top:18px}svg{max-width:100%;height:auto;display:block}
footer{margin-top:40px;font-size:.85em;color:#4c6272;border-top:1px solid #d8dde0;padding-top:10px}
@media print{nav{display:none}details{display:block}}
"""


def build_report(warehouse, month: date, reference_dir: Path, *, candidate: bool = False) -> tuple[str, dict]:
    """Return the month's report as one HTML document, and a summary of what it contains.

    Arguments:
        warehouse: the `Warehouse` or its file (read through the warehouse door, read-only).
        month: first day of the reporting month (it must be published).
        reference_dir: the pinned reference directory (for the map's boundaries and centroids).
        candidate: build from the month's gated candidates (before publication, for the
            disclosure audit) instead of the published tables.
    """
    from pipelines.report.mapping import ics_map
    from pipelines.warehouse import as_warehouse
    from reference_data.loader import attribution_statements

    warehouse = as_warehouse(warehouse)
    con = attach(warehouse, month if candidate else None)
    try:
        tables = _tables(con)
        if "gap_table" not in tables:
            raise ValueError(f"the warehouse {warehouse.file()} has no published.gap_table: run and publish a month first")
        settings = con.sql("select imd_vintage, any_value(disclosure_profile) from pub.gap_table "
                           "where reporting_month = $1 and breakdown = 'overall' group by 1", params=[month]).fetchall()
        if not settings:
            raise ValueError(f"{month:%Y-%m} is not published in {warehouse.file()}: nothing to report")
        vintage, profile_name = settings[0]
        icbs = dict(con.sql(star.extract_icbs(con)).fetchall())
        icb_code = icbs.get(month)
        icb_name = (con.sql("select any_value(icb24_name) from wh.reference.lsoa21_geography where icb24_code_nhs = $1",
                            params=[icb_code]).fetchall()[0][0] if icb_code and _has(con, "reference", "lsoa21_geography") else None)
        catalogue = _frame(con, "select * from pub.indicator_catalogue where reporting_month = $1 order by clinical_area, indicator_id",
                           [month]) if "indicator_catalogue" in tables else pl.DataFrame()
        # Indicators the month could not compute (no codelist, or a linked feed absent) are
        # listed with the reason, never drawn as empty charts or zero rates.
        unavailable = catalogue.filter(~pl.col("is_available")) if "is_available" in catalogue.columns else pl.DataFrame()
        if not unavailable.is_empty():
            catalogue = catalogue.filter(pl.col("is_available"))
        gaps = _frame(con, "select * from pub.gap_table where reporting_month = $1 and imd_vintage = $2", [month, vintage])
        # Practices are organisations, not patients: the published quality table lists them.
        practice_codes = [r[0] for r in con.sql("select distinct practice_code from pub.deprivation_quality "
                                                "where reporting_month = $1 and practice_code <> 'ALL' order by 1",
                                                params=[month]).fetchall()] if "deprivation_quality" in tables else []
        the_map = ics_map(con, reference_dir, icb_code=icb_code, vintage=vintage, practice_codes=practice_codes) if icb_code else None
        spc, sii_table = _spc_table(tables), _sii_table(tables)
        sii = _sii_rows(con, sii_table, month, vintage)
        areas: dict[str, list[dict]] = {}
        for info in catalogue.iter_rows(named=True):
            areas.setdefault(info["clinical_area"], []).append(info)
        area_html = "".join(
            f'<section class="clinical-area" id="area-{escape(area)}"><h2>{escape(area_name(area))}</h2>'
            + "".join(_indicator_article(con, info, gaps, vintage, month, spc, sii) for info in infos) + "</section>"
            for area, infos in areas.items())
        dq_html, dq_figures = data_quality(con, month, vintage, profile_name, gaps)
        consumed = OWN_TABLES | {t for t in (spc, sii_table) if t} | {t for t in tables if "quality" in t}
        others = [t for t in tables if t not in consumed]
        others_html = "".join(_generic_table(con, t, month) for t in others)
        titles = dict(zip(catalogue["indicator_id"].to_list(), catalogue["title"].to_list())) if len(catalogue) else {}
        sii_html = _sii_section(sii, sii_table, titles)
    finally:
        con.close()

    place = f"{icb_name} ({icb_code})" if icb_name else (icb_code or "the ICS")
    matched = dq_figures.get("match_rate")
    shown_n = dq_figures.get("n_patients")
    map_html = ("<p>No map: the ICB of this month's practices could not be determined.</p>" if the_map is None else
                f"{the_map.svg}<p class=\"note\">{the_map.n_lsoas} LSOAs ({the_map.boundary_vintage.replace('_', ' ')}, "
                f"matching the {escape(vintage)} deciles), {the_map.n_core20} of them Core20 (outlined in orange). "
                f"{the_map.n_practices} GP practices in this month's extract are marked at their postcode's centroid"
                f"{f'; {the_map.n_practices_unplaced} could not be placed' if the_map.n_practices_unplaced else ''}.</p>")
    attribution = "".join(f"<li>{escape(s)}</li>" for s in [*attribution_statements(), SNOMED_STATEMENT])
    toc = [("summary", "Summary"), ("map", "Map: deprivation across the ICS")] + \
        [(f"area-{a}", area_name(a)) for a in areas] + \
        [("inequality-indices", "Inequality indices (SII/RII)"), ("spc", "Variation over time (SPC)"),
         ("data-quality", "Data quality")] + ([("other-tables", "Other published tables")] if others else []) + \
        [("about", "About these figures and attribution")]
    html_text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Core20PLUS5 report: {escape(place)}, {month:%B %Y}</title><style>{STYLE}</style></head>
<body>
<header><h1>Core20PLUS5 health inequalities report</h1>
<p><strong>{escape(place)}</strong> · reporting month <strong>{month:%B %Y}</strong> · deprivation: national {escape(vintage)} deciles</p></header>
<nav aria-label="contents"><ol>{''.join(f'<li><a href="#{escape(i)}">{escape(t)}</a></li>' for i, t in toc)}</ol></nav>
<section id="summary"><h2>Summary</h2>
<p>This report shows how care differs for the people NHS England's Core20PLUS5 approach focuses on. <strong>Core20</strong> means
people living in the most deprived 20% of neighbourhoods in England (national Index of Multiple Deprivation deciles 1 and 2,
never re-ranked within the ICS). Each chart shows a rate with its 95% confidence interval (the line): where the intervals of
two groups do not overlap much, the difference is unlikely to be chance. Small numbers are suppressed to protect privacy.</p>
<div class="summary"><div><strong>{count(shown_n)}</strong>registered patients</div>
<div><strong>{percent(matched)}</strong>match rate: patients with a national decile, of those with an address IMD can apply to</div>
<div><strong>{len(catalogue)}</strong>indicators published</div></div>{_unavailable_list(unavailable)}</section>
<section id="map"><h2>Map: deprivation across the ICS</h2>
<p>Each neighbourhood (LSOA) is shaded by its national deprivation decile: darkest is most deprived. Core20 neighbourhoods are
outlined in orange; white dots are GP practices.</p>{map_html}</section>
{area_html}
<section id="inequality-indices"><h2>Inequality indices (SII/RII)</h2>{sii_html}</section>
<section id="spc"><h2>Variation over time (SPC)</h2>{_spc_section(spc)}</section>
<section id="data-quality"><h2>Data quality</h2>{dq_html}</section>
{f'<section id="other-tables"><h2>Other published tables</h2>{others_html}</section>' if others else ''}
<section id="about"><h2>About these figures and attribution</h2>
<p>Figures come from the published tables of the core20plus5 pipeline for {month:%B %Y}, after its data-quality gates passed.
Disclosure control: <code>{escape(profile_name)}</code>, applied to counts before any rate, interval or gap was computed.
Intervals are Wilson score intervals (95%) for proportions, Byar's method (exact Poisson under 10 events) for
rates per 100,000; gaps use Newcombe's method for proportions and the same construction (MOVER) from the rates' own limits for
rates. A rate drawn as a shaded range without a dot comes from small counts rounded by the disclosure profile. Definition versions and hashes are in the indicator
catalogue. Generated {datetime.now(timezone.utc):%d %B %Y %H:%M} UTC.</p>
<h3>Reference data attribution</h3><ul class="attribution">{attribution}</ul></section>
<footer>core20plus5 · self-contained report: no data leave this file and it needs no network to open.</footer>
</body></html>
"""
    summary = {"month": month.isoformat(), "icb_code": icb_code, "imd_vintage": vintage, "indicators": len(catalogue),
               "clinical_areas": list(areas), "map_lsoas": the_map.n_lsoas if the_map else 0,
               "map_practices": the_map.n_practices if the_map else 0, "other_tables": others}
    return html_text, summary


def report_path(directory: Path, month: date) -> Path:
    """Return where a month's report is written.

    Examples:
        >>> report_path(Path("data/reports"), date(2026, 10, 1)).name
        'core20plus5_report_2026-10.html'
    """
    return directory / f"core20plus5_report_{month:%Y-%m}.html"


def write_report(warehouse, month: date, reference_dir: Path, directory: Path, *, candidate: bool = False,
                 target: Path | None = None) -> tuple[Path, dict]:
    """Write the month's report atomically (a complete file appears, or the old one stays); return its path and summary."""
    text, summary = build_report(warehouse, month, reference_dir, candidate=candidate)
    directory.mkdir(parents=True, exist_ok=True)
    target = target or report_path(directory, month)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)
    return target, summary
