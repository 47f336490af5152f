"""Inline SVG charts for the monthly report: rates with intervals, and series over months.

Drawn as plain SVG text so the report is one self-contained file that opens offline and
prints crisply, with no plotting library and no script. Every chart has a <title> for
screen readers and tooltips, and the report puts the same figures in a table beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from html import escape

WIDTH = 780
LABEL_WIDTH = 320
VALUE_WIDTH = 150
ROW_HEIGHT = 24
TOP = 28
INK, MUTED, ACCENT, REFERENCE, TARGET = "#1d2731", "#6b7785", "#c0392b", "#2c6e9b", "#2e8b57"


@dataclass(frozen=True)
class RateRow:
    """One group's published figures for a dot-and-interval chart."""

    label: str
    rate: float | None
    lower: float | None
    upper: float | None
    numerator: int | None
    denominator: int | None
    is_reference: bool = False
    is_highlight: bool = False
    is_low_reliability: bool = False


@dataclass(frozen=True)
class Unit:
    """How an indicator's published rates read: a proportion shown as a percentage, or a rate per N."""

    value_type: str = "proportion"
    multiplier: int = 1

    @property
    def is_rate(self) -> bool:
        return self.value_type == "rate"

    def text(self, value: float | None, digits: int = 1) -> str:
        """Return a value in this unit ('suppressed' when not published).

        Examples:
            >>> Unit().text(0.591), Unit("rate", 100000).text(5930.8), Unit("rate", 100000).text(None)
            ('59.1%', '5,930.8 per 100,000', 'suppressed')
        """
        if value is None:
            return "suppressed"
        if self.is_rate:
            return f"{value:,.{digits}f} per {self.multiplier:,}"
        return percent(value, digits)

    def tick(self, value: float) -> str:
        """Return an axis label: '50%' for a proportion, a bare number for a rate (the axis says per what)."""
        return f"{value:,.0f}" if self.is_rate else percent(value, 0)

    def difference(self, value: float) -> str:
        """Return a gap in this unit: percentage points for a proportion, 'per N' for a rate.

        Examples:
            >>> Unit().difference(-0.078), Unit("rate", 100000).difference(-94.9)
            ('-7.8 percentage points', '-94.9 per 100,000')
        """
        if self.is_rate:
            return f"{value:+,.1f} per {self.multiplier:,}"
        return f"{100 * value:+.1f} percentage points"


def percent(value: float | None, digits: int = 1) -> str:
    """Return a proportion as a percentage, or 'suppressed' when it is not published.

    Examples:
        >>> percent(0.6234), percent(None)
        ('62.3%', 'suppressed')
    """
    return "suppressed" if value is None else f"{100 * value:.{digits}f}%"


def count(value: int | None) -> str:
    """Return a published count with thousands separators, or a dash when suppressed.

    Examples:
        >>> count(12345), count(None)
        ('12,345', '–')
    """
    return "–" if value is None else f"{value:,}"


def _x(value: float, plot_width: float, top: float = 1.0) -> float:
    return LABEL_WIDTH + max(0.0, min(1.0, value / top)) * plot_width


def _nice_top(value: float) -> float:
    """Return a round axis end at or above `value` (1, 2 or 5 times a power of ten)."""
    import math

    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def rate_chart(rows: list[RateRow], *, title: str, target: float | None = None, css_class: str = "chart",
               unit: Unit = Unit()) -> str:
    """Return an SVG dot-and-interval chart of rates with one row per group.

    Proportions are drawn on a 0-100% axis; rates per N on an axis from 0 to a round number
    above the highest limit, labelled 'per N' (never with a % sign). The reference group is
    drawn in blue and named "(reference)"; a highlighted group (e.g. Core20) in red;
    suppressed groups say so instead of showing a point. A row flagged `is_low_reliability`
    (a rate from small rounded counts) is drawn as a dashed interval with no point and its
    value is written as approximate. A dashed green line marks the target when there is one.

    Examples:
        >>> svg = rate_chart([RateRow("Core20", 0.5, 0.4, 0.6, 50, 100, is_highlight=True),
        ...                   RateRow("Rest", None, None, None, None, None, is_reference=True)], title="t")
        >>> svg.count("<circle"), "suppressed" in svg, 'data-groups="2"' in svg
        (1, True, True)
        >>> svg = rate_chart([RateRow("A", 5000.0, 4000.0, 6200.0, 60, 1200)], title="t", unit=Unit("rate", 100000))
        >>> import re
        >>> bool(re.search(r"\\d%(?! CI)", svg)), "per 100,000" in svg  # no value with a % sign
        (False, True)
    """
    plot_width = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = TOP + ROW_HEIGHT * len(rows) + 30
    top = 1.0 if not unit.is_rate else _nice_top(max([r.upper or r.rate or 0.0 for r in rows] + [0.0]))
    parts = [f'<svg class="{css_class}" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
             f'data-groups="{len(rows)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = _x(tick * top, plot_width, top)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{height - 24}" stroke="#e3e7eb"/>'
                     f'<text x="{x:.1f}" y="{height - 8}" font-size="11" text-anchor="middle" fill="{MUTED}">{unit.tick(tick * top)}</text>')
    if unit.is_rate:
        parts.append(f'<text x="{LABEL_WIDTH + plot_width:.1f}" y="{TOP - 14}" font-size="11" text-anchor="end" '
                     f'fill="{MUTED}">per {unit.multiplier:,}</text>')
    if target is not None and not unit.is_rate:
        x = _x(target, plot_width)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP - 10}" x2="{x:.1f}" y2="{height - 24}" stroke="{TARGET}" '
                     f'stroke-dasharray="5 3" stroke-width="1.5"/><text x="{x + 3:.1f}" y="{TOP - 14}" font-size="11" '
                     f'fill="{TARGET}">target {percent(target, 0)}</text>')
    for n, row in enumerate(rows):
        y = TOP + ROW_HEIGHT * n + ROW_HEIGHT / 2
        colour = REFERENCE if row.is_reference else ACCENT if row.is_highlight else INK
        label = row.label + (" (reference)" if row.is_reference else "")
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 4:.1f}" font-size="12.5" text-anchor="end" fill="{colour}">{escape(label)}</text>')
        if row.rate is None:
            parts.append(f'<text x="{LABEL_WIDTH + 6}" y="{y + 4:.1f}" font-size="12" fill="{MUTED}" font-style="italic">'
                         f'suppressed (small numbers)</text>')
            continue
        dash = ' stroke-dasharray="4 3"' if row.is_low_reliability else ""
        if row.lower is not None and row.upper is not None:
            parts.append(f'<line x1="{_x(row.lower, plot_width, top):.1f}" y1="{y:.1f}" x2="{_x(row.upper, plot_width, top):.1f}" '
                         f'y2="{y:.1f}" stroke="{colour}" stroke-width="2"{dash}/>')
        about = "about " if row.is_low_reliability else ""
        if row.is_low_reliability:
            # A rate from small rounded counts is a range, not a point (8/10 publishes as 10/10).
            parts.append(f'<rect x="{_x(row.lower or row.rate, plot_width, top):.1f}" y="{y - 4:.1f}" '
                         f'width="{max(1.0, _x(row.upper or row.rate, plot_width, top) - _x(row.lower or row.rate, plot_width, top)):.1f}" '
                         f'height="8" fill="{colour}" fill-opacity="0.15"><title>{escape(label)}: {about}{unit.text(row.rate)} '
                         f'(95% CI {unit.text(row.lower)} to {unit.text(row.upper)}), from small rounded counts '
                         f'{count(row.numerator)} of {count(row.denominator)}</title></rect>')
        else:
            parts.append(f'<circle cx="{_x(row.rate, plot_width, top):.1f}" cy="{y:.1f}" r="5" fill="{colour}">'
                         f'<title>{escape(label)}: {unit.text(row.rate)} (95% CI {unit.text(row.lower)} to {unit.text(row.upper)}), '
                         f'{count(row.numerator)} of {count(row.denominator)}</title></circle>')
        parts.append(f'<text x="{WIDTH - VALUE_WIDTH + 8}" y="{y + 4:.1f}" font-size="12" fill="{INK}">'
                     f'{about}{unit.text(row.rate, 0 if unit.is_rate else 1)} ({count(row.numerator)}/{count(row.denominator)})</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class SeriesPoint:
    """One month of a series: the rate and its interval."""

    month: date
    rate: float | None
    lower: float | None = None
    upper: float | None = None
    flag: str | None = None


def series_chart(series: dict[str, list[SeriesPoint]], *, title: str, lines: dict[str, list[tuple[date, float | None]]] | None = None,
                 css_class: str = "chart trend", unit: Unit = Unit()) -> str:
    """Return an SVG chart of rates over months: one coloured series per group, optional reference lines.

    Arguments:
        series: label -> points (a point with no rate is a gap in the line).
        title: the chart's accessible title.
        lines: label -> (month, value) for horizontal-ish reference lines such as an SPC
            mean and process limits, drawn dashed in grey.

    Examples:
        >>> pts = [SeriesPoint(date(2026, m, 1), 0.5 + m / 100, 0.45, 0.6) for m in (7, 8, 9)]
        >>> svg = series_chart({"All patients": pts}, title="t")
        >>> svg.count("<circle"), 'data-months="3"' in svg
        (3, True)
    """
    lines = lines or {}
    months = sorted({p.month for pts in series.values() for p in pts} | {m for pts in lines.values() for m, _ in pts})
    values = [v for pts in series.values() for p in pts for v in (p.rate, p.lower, p.upper) if v is not None]
    values += [v for pts in lines.values() for _, v in pts if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max(0.02, (high - low) * 0.15)
    if unit.is_rate:
        pad = max(1.0, (high - low) * 0.15)
        low, high = max(0.0, low - pad), high + pad
    else:
        low, high = max(0.0, low - pad), min(1.0, high + pad)
    left, right, top, bottom, height = 60, 150, 16, 34, 230
    plot_w, plot_h = WIDTH - left - right, height - top - bottom

    def x(month: date) -> float:
        index = months.index(month)
        return left + (plot_w * index / (len(months) - 1) if len(months) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low if high > low else 1))

    parts = [f'<svg class="{css_class}" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
             f'data-months="{len(months)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for k in range(5):
        value = low + (high - low) * k / 4
        parts.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{WIDTH - right}" y2="{y(value):.1f}" stroke="#e3e7eb"/>'
                     f'<text x="{left - 6}" y="{y(value) + 4:.1f}" font-size="11" text-anchor="end" fill="{MUTED}">{unit.tick(value)}</text>')
    step = max(1, len(months) // 8)
    for month in months[::step]:
        parts.append(f'<text x="{x(month):.1f}" y="{height - 12}" font-size="11" text-anchor="middle" fill="{MUTED}">{month:%b %y}</text>')
    for n, (label, points) in enumerate(lines.items()):
        drawn = [(m, v) for m, v in points if v is not None]
        if drawn:
            path = " ".join(f"{'M' if i == 0 else 'L'}{x(m):.1f},{y(v):.1f}" for i, (m, v) in enumerate(drawn))
            # Reference-line labels sit at the left end, above the line, clear of the series labels on the right.
            parts.append(f'<path d="{path}" fill="none" stroke="{MUTED}" stroke-dasharray="4 3"/>'
                         f'<text x="{left + 4}" y="{y(drawn[0][1]) - 3:.1f}" font-size="10" fill="{MUTED}">{escape(label)}</text>')
    palette = (INK, ACCENT, REFERENCE, TARGET)
    for n, (label, points) in enumerate(series.items()):
        colour = palette[n % len(palette)]
        shown = [p for p in points if p.rate is not None]
        for p in shown:
            if p.lower is not None and p.upper is not None:
                parts.append(f'<line x1="{x(p.month):.1f}" y1="{y(p.lower):.1f}" x2="{x(p.month):.1f}" y2="{y(p.upper):.1f}" '
                             f'stroke="{colour}" stroke-opacity="0.45" stroke-width="2"/>')
        if len(shown) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{x(p.month):.1f},{y(p.rate):.1f}" for i, p in enumerate(shown))
            parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in shown:
            if p.flag:
                # Special-cause points (SPC) get an orange ring, as Making Data Count charts colour them.
                parts.append(f'<circle class="special-cause" cx="{x(p.month):.1f}" cy="{y(p.rate):.1f}" r="7" fill="none" '
                             f'stroke="#ff6b00" stroke-width="2"/>')
            note = f" ({p.flag.replace('_', ' ')})" if p.flag else ""
            parts.append(f'<circle cx="{x(p.month):.1f}" cy="{y(p.rate):.1f}" r="3.5" fill="{colour}">'
                         f'<title>{escape(label)} {p.month:%b %Y}: {unit.text(p.rate)}{escape(note)}</title></circle>')
        if shown:
            parts.append(f'<text x="{WIDTH - right + 6}" y="{y(shown[-1].rate) + 4:.1f}" font-size="12" fill="{colour}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
