"""DAX measures of the generated Power BI model, derived from the columns each fact has.

Each fact table of the star holds *published* rows: one row is one published figure, so
a measure never adds rows up. A value measure shows the figure when exactly one row is in
view and is blank otherwise (summing rates, or a Core20 row with its complement, would make
a number nobody published); `Rows in view` and `Selection check` say why a cell is blank.

Rates are formatted per indicator from `dim_indicator[multiplier]`: 1 shows a percentage,
anything else "per N" (e.g. per 100,000). Whether the stored rate is still a fraction (to be
multiplied for display) or already on its multiplier's scale is decided when the model is
written (`project.rate_storage`) and fixed in the DAX, so one model is always right for the
snapshot it was written into. Gaps between proportions are shown in percentage points.

Counts that disclosure control hid are null in the star; the text measures say
"suppressed" for them and never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

# NHS "Making Data Count" icon conventions: blue improvement, orange concern, purple neutral
# (special cause where neither direction is better), grey common cause; assurance P (pass),
# F (fail), ? (inconsistent). Drawn as small SVG data URIs so they need no network.
_MDC = {"improvement": "%23289DE0", "concern": "%23ED8B00", "neutral": "%23672D91", "common": "%23A6A6A6"}


def _icon(colour: str, letter: str) -> str:
    return ("data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 40 40'>"
            f"<circle cx='20' cy='20' r='18' fill='white' stroke='{colour}' stroke-width='4'/>"
            f"<text x='20' y='27' font-family='Arial' font-size='20' font-weight='bold' fill='{colour}' "
            f"text-anchor='middle'>{letter}</text></svg>")


VARIATION_ICONS = {
    "common_cause": (_icon(_MDC["common"], "~"), "Common cause variation"),
    "special_cause_improvement": (_icon(_MDC["improvement"], "I"), "Special cause: improvement"),
    "special_cause_concern": (_icon(_MDC["concern"], "C"), "Special cause: concern"),
    "special_cause_neutral_high": (_icon(_MDC["neutral"], "H"), "Special cause: neutral, higher"),
    "special_cause_neutral_low": (_icon(_MDC["neutral"], "L"), "Special cause: neutral, lower"),
}
ASSURANCE_ICONS = {
    "consistent_pass": (_icon(_MDC["improvement"], "P"), "Consistently meets the target"),
    "consistent_fail": (_icon(_MDC["concern"], "F"), "Consistently misses the target"),
    "inconsistent": (_icon(_MDC["common"], "?"), "May or may not meet the target"),
}


@dataclass(frozen=True)
class Measure:
    """One DAX measure: name, expression, format, folder, description, hidden or not."""

    name: str
    expression: str
    description: str
    folder: str
    format_string: str | None = None
    format_expression: str | None = None
    data_category: str | None = None
    hidden: bool = False


def ref(table: str, column: str) -> str:
    """Return a DAX column reference.

    Examples:
        >>> ref("fact_gap_table", "rate")
        "'fact_gap_table'[rate]"
    """
    return "'" + table.replace("'", "''") + "'[" + column + "]"


def _dax_text(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _one_row(table: str, body: str) -> str:
    return f"IF (\n    COUNTROWS ( '{table}' ) = 1,\n    {body}\n)"


def reliability_flags(columns: dict[str, str]) -> list[tuple[str, bool]]:
    """Return (column, value that means "read with care") for a fact's reliability flags.

    A boolean column whose name says unreliable / low reliability flags a row when true;
    one named `is_reliable` flags it when false. Other columns are not guessed at.

    Examples:
        >>> reliability_flags({"is_low_reliability": "BOOLEAN", "is_reliable": "BOOLEAN", "rate": "DOUBLE"})
        [('is_low_reliability', True), ('is_reliable', False)]
    """
    flags = []
    for name, dtype in columns.items():
        if dtype != "BOOLEAN":
            continue
        if "unreliab" in name or "low_reliab" in name:
            flags.append((name, True))
        elif name in ("is_reliable", "is_reliable_rate"):
            flags.append((name, False))
    return flags


def rate_measures(table: str, columns: dict[str, str], *, fraction: bool) -> list[Measure]:
    """Return the measures of a fact of published rates (the gap table, the SPC series).

    Arguments:
        table: the fact table.
        columns: its column -> DuckDB type.
        fraction: whether its `rate` is stored as a fraction of the denominator (shown
            multiplied by the indicator's multiplier) rather than on the multiplier's scale.
    """
    out: list[Measure] = []
    has = set(columns)
    multiplier = (f"COALESCE ( MAXX ( '{table}', RELATED ( 'dim_indicator'[multiplier] ) ), 1 )"
                  if "indicator_key" in has else "1")
    out.append(Measure(f"{_label(table)} multiplier", _one_row(table, multiplier),
                       "The indicator's multiplier for the one row in view (1 = a proportion).", "Helpers", "0", hidden=True))
    m = f"[{_label(table)} multiplier]"
    out.append(Measure(f"{_label(table)} rate format", _one_row(
        table, f"IF ( {m} = 1, \"0.0%\", \"#,0.0 \"\"per \" & FORMAT ( {m}, \"#,0\" ) & \"\"\"\" )"),
        "Format of this row's rate: a percentage for proportions, 'per N' otherwise.", "Helpers", hidden=True))
    out.append(Measure(f"{_label(table)} gap format", _one_row(
        table, f"IF ( {m} = 1, \"+0.0 \"\"pp\"\";-0.0 \"\"pp\"\";0.0 \"\"pp\"\"\", "
               f"\"+#,0.0 \"\"per \" & FORMAT ( {m}, \"#,0\" ) & \"\"\";-#,0.0 \"\"per \" & FORMAT ( {m}, \"#,0\" ) "
               f"& \"\"\";0.0\" )"),
        "Format of this row's gap: percentage points for proportions, 'per N' otherwise.", "Helpers", hidden=True))
    factor = m if fraction else "1"
    rate_format = f"[{_label(table)} rate format]"
    gap_format = f"[{_label(table)} gap format]"
    rows = f"{_label(table)} rows in view"
    out.append(Measure(rows, f"COUNTROWS ( '{table}' )",
                       "Published rows in the current filter; value measures show a figure only when this is 1.",
                       "Checks", "#,0"))
    value_columns = [("rate", "Rate", "The published rate"), ("rate_lower", "Rate lower 95%", "Lower 95% limit of the rate"),
                     ("rate_upper", "Rate upper 95%", "Upper 95% limit of the rate"), ("mean", "Mean", "XmR centre line"),
                     ("lower_limit", "Lower process limit", "XmR lower natural process limit"),
                     ("upper_limit", "Upper process limit", "XmR upper natural process limit")]
    prefix = "" if table == "fact_gap_table" else f"{_label(table)} "
    for column, name, about in value_columns:
        if column in has:
            out.append(Measure(prefix + name, _one_row(table, f"SELECTEDVALUE ( {ref(table, column)} ) * {factor}"),
                               f"{about}, on the indicator's display scale (percentage or per N); blank unless one "
                               "published row is in view.", "Rates", format_expression=rate_format))
    gap_factor = f"IF ( {m} = 1, 100, {factor} )"
    for column, name, about in [("gap", "Gap", "Gap to the reference group"), ("gap_lower", "Gap lower 95%", "Lower 95% limit of the gap"),
                                ("gap_upper", "Gap upper 95%", "Upper 95% limit of the gap")]:
        if column in has:
            out.append(Measure(prefix + name, _one_row(table, f"SELECTEDVALUE ( {ref(table, column)} ) * {gap_factor}"),
                               f"{about}: percentage points for proportions, 'per N' for rates; blank unless one "
                               "published row is in view.", "Gaps", format_expression=gap_format))
    if "rate_ratio" in has:
        out.append(Measure(prefix + "Rate ratio", _one_row(table, f"SELECTEDVALUE ( {ref(table, 'rate_ratio')} )"),
                           "Rate divided by the reference group's rate.", "Gaps", "0.00"))
    flags = reliability_flags(columns)
    careful = " || ".join(f"SELECTEDVALUE ( {ref(table, c)} ) = {'TRUE' if v else 'FALSE'} ()" for c, v in flags) or "FALSE ()"
    suppressed = f"SELECTEDVALUE ( {ref(table, 'is_suppressed')} ) = TRUE ()" if "is_suppressed" in has else "FALSE ()"
    for column, name in (("numerator", "Numerator (shown)"), ("denominator", "Denominator (shown)")):
        if column in has:
            out.append(Measure(prefix + name, _one_row(
                table, f"VAR _n = SELECTEDVALUE ( {ref(table, column)} )\n    RETURN IF ( ISBLANK ( _n ), "
                       f"IF ( {suppressed}, \"suppressed\", \"not available\" ), FORMAT ( _n, \"#,0\" ) )"),
                f"The published {column} as text: 'suppressed' where disclosure control hid it (never 0).", "Shown as text"))
    if "rate" in has:
        out.append(Measure(prefix + "Rate (shown)", _one_row(
            table,
            f"VAR _rate = [{prefix}Rate]\n{_interval_vars(prefix + 'Rate', rate_format, has, 'rate')}"
            f"    VAR _care = IF ( {careful}, \" - read with care: small numbers\", \"\" )\n"
            f"    RETURN IF ( {suppressed}, \"suppressed\", IF ( ISBLANK ( _rate ), \"not available\", "
            f"FORMAT ( _rate, _fmt ) & _interval & _care ) )"),
            "The rate with its 95% interval as text, 'suppressed' where disclosure control hid the row"
            + (", flagged when computed from small rounded counts." if flags else "."), "Shown as text"))
    if flags:
        out.append(Measure(prefix + "Reliability", _one_row(
            table, f"IF ( {careful}, \"read with care: computed from small rounded counts\", \"\" )"),
            "Says when the row's rate was computed from rounded counts of a small group (not an exact point).", "Shown as text"))
    if "gap" in has:
        comparison = f"SELECTEDVALUE ( {ref(table, 'comparison')} )" if "comparison" in has else "\"\""
        out.append(Measure(prefix + "Gap (shown)", _one_row(
            table,
            f"VAR _gap = [{prefix}Gap]\n{_interval_vars(prefix + 'Gap', gap_format, has, 'gap')}"
            f"    RETURN IF ( {suppressed}, \"suppressed\", IF ( ISBLANK ( _gap ), \"not compared\", "
            f"FORMAT ( _gap, _fmt ) & _interval & IF ( ISBLANK ( {comparison} ), \"\", \": \" & {comparison} ) ) )"),
            "The gap to the reference group with its 95% interval and the direction-aware comparison, as text.", "Shown as text"))
    out.append(Measure(prefix + "Selection check", (
        f"VAR _rows = COUNTROWS ( '{table}' )\nRETURN IF ( _rows > 1, FORMAT ( _rows, \"#,0\" ) & \" published rows are in view: filter one "
        "month, one IMD vintage, one indicator and one group to see a figure\", \"\" )"),
        "Explains a blank figure: more than one published row is in the current filter.", "Checks"))
    if "variation" in has:
        out += _icon_measures(table, "variation", "Variation", VARIATION_ICONS,
                              "NHS Making Data Count variation icon of the series (its latest point)")
    if "assurance" in has:
        out += _icon_measures(table, "assurance", "Assurance", ASSURANCE_ICONS,
                              "NHS Making Data Count assurance icon of the series against the indicator's target")
    return out


def _interval_vars(measure: str, format_measure: str, has: set[str], column: str) -> str:
    """Return DAX VAR lines `_fmt` and `_interval` (" (95% CI a to b)") for a value measure and its limits."""
    lower = f"[{measure} lower 95%]" if f"{column}_lower" in has else "BLANK ()"
    upper = f"[{measure} upper 95%]" if f"{column}_upper" in has else "BLANK ()"
    return (f"    VAR _fmt = {format_measure}\n"
            f"    VAR _interval = IF ( ISBLANK ( {lower} ), \"\", \" (95% CI \" & FORMAT ( {lower}, _fmt ) & \" to \" "
            f"& FORMAT ( {upper}, _fmt ) & \")\" )\n")


def _icon_measures(table: str, column: str, label: str, icons: dict, about: str) -> list[Measure]:
    value = f"SELECTEDVALUE ( {ref(table, column)} )"
    images = ",\n        ".join(f"{_dax_text(k)}, {_dax_text(v[0])}" for k, v in icons.items())
    words = ",\n        ".join(f"{_dax_text(k)}, {_dax_text(v[1])}" for k, v in icons.items())
    return [
        Measure(f"{label} icon", f"SWITCH (\n    {value},\n        {images},\n    BLANK ()\n)",
                f"{about}, as an image for a table or matrix (set the column's image size in the visual).", "SPC icons",
                data_category="ImageUrl"),
        Measure(f"{label} (shown)", f"SWITCH (\n    {value},\n        {words},\n    \"no verdict\"\n)",
                f"{about}, in words ('no verdict' when the series is too short or has several values in view).", "SPC icons"),
    ]


def inequality_measures(table: str, columns: dict[str, str]) -> list[Measure]:
    """Return the SII / RII measures of the published inequality table."""
    has = set(columns)
    if not {"sii", "rii"} <= has:
        return []
    multiplier = f"SELECTEDVALUE ( {ref(table, 'multiplier')} )" if "multiplier" in has else "1"
    out = [Measure("SII format", _one_row(table, (
        f"VAR _m = {multiplier}\n    RETURN IF ( ISBLANK ( _m ) || _m = 1, \"+0.0 \"\"pp\"\";-0.0 \"\"pp\"\";0.0 \"\"pp\"\"\", "
        f"\"+#,0.0 \"\"per \" & FORMAT ( _m, \"#,0\" ) & \"\"\";-#,0.0 \"\"per \" & FORMAT ( _m, \"#,0\" ) & \"\"\";0.0\" )")),
        "Format of the SII: percentage points when it is a difference of proportions, 'per N' otherwise.", "Helpers", hidden=True)]
    scale = f"IF ( ISBLANK ( {multiplier} ) || {multiplier} = 1, 100, 1 )"
    for column, name in (("sii", "SII"), ("sii_lower", "SII lower"), ("sii_upper", "SII upper")):
        if column in has:
            out.append(Measure(name, _one_row(table, f"SELECTEDVALUE ( {ref(table, column)} ) * {scale}"),
                               "Slope index of inequality: fitted value at the least deprived end minus the most deprived "
                               "end (stored on the indicator's multiplier; proportions shown in percentage points).",
                               "Inequality", format_expression="[SII format]"))
    for column, name in (("rii", "RII"), ("rii_lower", "RII lower"), ("rii_upper", "RII upper")):
        if column in has:
            out.append(Measure(name, _one_row(table, f"SELECTEDVALUE ( {ref(table, column)} )"),
                               "Relative index of inequality: fitted value at the least deprived end / the most deprived end.",
                               "Inequality", "0.00"))
    direction = f"SELECTEDVALUE ( {ref(table, 'direction')} )" if "direction" in has else "BLANK ()"
    status = f"SELECTEDVALUE ( {ref(table, 'status')} )" if "status" in has else "\"not computed\""
    level = f"FORMAT ( SELECTEDVALUE ( {ref(table, 'confidence')} ), \"0%\" )" if "confidence" in has else "\"95%\""
    lower = "[SII lower]" if "sii_lower" in has else "BLANK ()"
    upper = "[SII upper]" if "sii_upper" in has else "BLANK ()"
    out.append(Measure("SII (shown)", _one_row(table, (
        f"VAR _sii = [SII]\n    VAR _fmt = [SII format]\n    VAR _lo = {lower}\n    VAR _hi = {upper}\n"
        f"    VAR _clear = NOT ISBLANK ( _lo ) && ( _lo > 0 || _hi < 0 )\n"
        f"    VAR _side = IF ( _sii > 0, \"higher in the least deprived\", \"higher in the most deprived\" )\n"
        f"    VAR _worse = IF ( ( _sii > 0 ) = ( {direction} = \"higher_is_better\" ), \"the most deprived are worse off\", "
        f"\"the least deprived are worse off\" )\n"
        f"    RETURN IF ( ISBLANK ( _sii ), {status}, FORMAT ( ABS ( _sii ), SUBSTITUTE ( _fmt, \"+\", \"\" ) ) & \" \" & _side "
        f"& \" (\" & {level} & \" CI \" & FORMAT ( _lo, _fmt ) & \" to \" & FORMAT ( _hi, _fmt ) & \"): \" "
        f"& IF ( _clear, _worse, \"no clear gradient\" ) )")),
        "The SII in words: which end is higher, its interval, and - given the indicator's direction - who is worse off.",
        "Inequality"))
    return out


def _label(table: str) -> str:
    """Return a short readable prefix for a fact's helper measures.

    Examples:
        >>> _label("fact_spc_series")
        'SPC'
    """
    return {"fact_gap_table": "Gap table", "fact_spc_series": "SPC", "fact_inequality_table": "Inequality"}.get(
        table, table.removeprefix("fact_").replace("_", " ").capitalize())
