"""Monthly partitions: one partition per reporting month, keyed by its first day."""

from datetime import date

import dagster as dg

# Reporting months start at April 2020 (the Core20PLUS5 era begins 2021; earlier months allow
# baselines). A partition key is the month's first day, e.g. "2026-10-01".
MONTHLY = dg.MonthlyPartitionsDefinition(start_date="2020-04-01", end_offset=0)


def month_key(month: date) -> str:
    """Return the partition key of the month containing `month`."""
    return date(month.year, month.month, 1).isoformat()


def parse_month(text: str) -> date:
    """Return the first day of a month given as YYYY-MM (or YYYY-MM-DD).

    Raises ValueError with the accepted form when `text` is not a month.
    """
    try:
        parts = text.strip().split("-")
        return date(int(parts[0]), int(parts[1]), 1)
    except (ValueError, IndexError):
        raise ValueError(f"'{text}' is not a month: expected YYYY-MM, e.g. 2026-10") from None


def month_of(context) -> date:
    """Return the first day of a Dagster run's partition month (`context.partition_key` 'YYYY-MM-01')."""
    return MONTHLY.time_window_for_partition_key(context.partition_key).start.date()
