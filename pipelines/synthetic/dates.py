"""The reporting month's calendar as day numbers, and ages at a date (vectorised over numpy arrays)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from pipelines.synthetic.parameters import EPOCH, FLU_CAMPAIGN_START


def day_number(d: date) -> int:
    """Return the day number (days since 1970-01-01) of a date."""
    return (d - EPOCH).days


@dataclass(frozen=True)
class Calendar:
    """The reporting month's dates as day numbers (days since 1970-01-01)."""

    reporting_month: date
    reference_date: date  # R: last day of the reporting month
    window_start: date  # R - 12 months + 1 day: first day of the month 11 months earlier
    campaign_start: date  # 1 September of the flu campaign current at R

    @classmethod
    def of(cls, month: date) -> "Calendar":
        nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        r = nxt - timedelta(days=1)
        back = month.year * 12 + month.month - 1 - 11
        window = date(back // 12, back % 12 + 1, 1)
        start_month, start_day = FLU_CAMPAIGN_START
        campaign = date(r.year, start_month, start_day)
        campaign = campaign if campaign <= r else campaign.replace(year=r.year - 1)
        return cls(month, r, window, campaign)

    @property
    def r(self) -> int:
        return day_number(self.reference_date)

    @property
    def w0(self) -> int:
        return day_number(self.window_start)


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (year, month, day) arrays of day numbers."""
    d = days.astype("datetime64[D]")
    y = d.astype("datetime64[Y]")
    m = d.astype("datetime64[M]")
    return (
        y.astype(np.int64) + 1970,
        (m - y.astype("datetime64[M]")).astype(np.int64) + 1,
        (d - m.astype("datetime64[D]")).astype(np.int64) + 1,
    )


def age_at(dob: np.ndarray, ref_day: date) -> np.ndarray:
    """Return whole years of age at `ref_day` (the pipeline's rule: birthday reached or not)."""
    y, m, d = ymd(dob)
    before_birthday = (ref_day.month < m) | ((ref_day.month == m) & (ref_day.day < d))
    return (ref_day.year - y - before_birthday).astype(np.int64)


def default_reporting_month(today: date | None = None) -> date:
    """Return the first day of the last complete month before `today`.

    Arguments:
        today: the date to count back from (default: today's date).

    Returns:
        The first day of the previous calendar month.

    Examples:
        >>> default_reporting_month(date(2026, 3, 15))
        datetime.date(2026, 2, 1)
        >>> default_reporting_month(date(2026, 1, 1))
        datetime.date(2025, 12, 1)
    """
    today = today or date.today()
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


def months_back(reference_date: date, months: int) -> int:
    """Return the day number of R - `months` months + 1 day (month-end clamped), as the rules define."""
    total = reference_date.year * 12 + reference_date.month - 1 - months
    year, month = divmod(total, 12)
    month += 1
    day = min(reference_date.day, calendar.monthrange(year, month)[1])
    return day_number(date(year, month, day)) + 1
