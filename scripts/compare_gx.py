"""Time Great Expectations' own (pandas) engine next to the polars engine on a month's staged tables.

    flock /tmp/core20-heavy.lock .venv/bin/python scripts/compare_gx.py --warehouse W --month YYYY-MM

Run it on a warehouse that holds a large month (e.g. `scripts/benchmark.py --keep` leaves
one per size). The same suites run on the staged patients (all of them) and, as the
quarantine rules, on a 10% slice of the staged events: the figures show why the big tables
are gated by the polars engine. Timings are measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def compare_with_gx(warehouse: Path, month) -> None:
    """Print one table row per suite: rows, polars engine seconds, GX pandas engine seconds."""
    from pipelines import quality
    from pipelines.gates import Suite, validate
    from pipelines.warehouse import connect, read_table

    patient_suite, event_suite = quality.staging_suites(month)
    with connect(warehouse, read_only=True) as con:
        patients = read_table(con, "staging", "patients", partition_column="reporting_month", partition_value=month)
        events = read_table(con, "staging", "events", partition_column="reporting_month", partition_value=month)
    events = events.head(events.height // 10)
    print("| suite | rows | polars engine (s) | GX pandas engine (s) |\n|---|---:|---:|---:|")
    for name, suite, frame in (("staging.patients (all)", patient_suite, patients),
                               ("staging.events (as quarantine rules, 10% slice)", event_suite, events)):
        timings = []
        for engine in ("polars", "great_expectations"):
            started = time.perf_counter()
            validate(frame, Suite(suite.name, engine, suite.expectations))
            timings.append(time.perf_counter() - started)
        print(f"| {name} | {frame.height:,} | {timings[0]:.2f} | {timings[1]:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--month", required=True, help="reporting month YYYY-MM")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    from pipelines.partitions import parse_month

    compare_with_gx(args.warehouse, parse_month(args.month))
    return 0


if __name__ == "__main__":
    sys.exit(main())
