"""History from one extract: a cumulative extract runs each earlier month "as at" its month end.

A new ICS has one extract, cut this month, holding every registration (with start and end
dates) and every coded event to date. `core20 run --from --to` on it runs each earlier month
as the extract cut on that month's last day would have shown it. The test cuts such extracts
by hand (patients registered by the day, events and feed rows dated up to it, `extract.json`
naming the month) and requires the published tables of an as-at month to equal those of the
same month run from its cut extract. The after-month-end rule applies to a month's own
extract only: the cumulative extract's later events must not block earlier months.
"""

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from pipeline_helpers import core20
from pipelines.segmentation.extract import month_end
from pipelines.segmentation.feeds import FEEDS
from pipelines.warehouse import connect

OWN_MONTH = "2026-10"
BACKFILL = [f"{y}-{m:02d}" for y, m in [(2025, 11), (2025, 12)] + [(2026, m) for m in range(1, 11)]]
CUT_MONTHS = ("2025-11", "2026-05")  # the backfill's first month (whole history equal) and a middle one
PUBLISHED = ("gap_table", "inequality_table", "indicator_catalogue", "deprivation_quality", "data_quality", "spc_series")


def cut_extract(cumulative: Path, out: Path, month: str) -> None:
    """Write the extract a supplier would have cut on `month`'s last day from a later cumulative one."""
    day = month_end(dt.date.fromisoformat(f"{month}-01"))
    out.mkdir(parents=True)
    keep = {"patients.parquet": "registration_start_date", "events.parquet": "event_date",
            **{f"{name}.parquet": feed.date_column for name, feed in FEEDS.items()}}
    for path in cumulative.glob("*.parquet"):
        column = keep[path.name]
        frame = pl.read_parquet(path)
        # A row whose date is missing stays: its rule judges it in both runs.
        frame.filter((pl.col(column) <= day) | pl.col(column).is_null()).write_parquet(out / path.name)
    manifest = json.loads((cumulative / "extract.json").read_text())
    manifest.update(reporting_month=f"{month}-01", reference_date=day.isoformat())
    (out / "extract.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    from pipelines.synthetic import generate_extract

    root = tmp_path_factory.mktemp("history")
    cumulative = root / "cumulative"
    generate_extract(cumulative, reporting_month=dt.date.fromisoformat(f"{OWN_MONTH}-01"), n_patients=3000, seed=1616)
    backfill = root / "backfill" / "warehouse.duckdb"
    code, output = core20("run", "--extract", str(cumulative), "--from", BACKFILL[0], "--to", BACKFILL[-1],
                          "--warehouse", str(backfill))
    cut = root / "cut" / "warehouse.duckdb"
    cut_outputs = []
    for month in CUT_MONTHS:
        cut_extract(cumulative, root / "cuts" / month, month)
        cut_outputs.append(core20("run", "--extract", str(root / "cuts" / month), "--warehouse", str(cut)))
    return {"code": code, "output": output, "backfill": backfill, "cut": cut, "cut_outputs": cut_outputs, "root": root}


def _table(warehouse: Path, table: str, month: str) -> pl.DataFrame:
    with connect(warehouse, read_only=True) as con:
        frame = pl.from_arrow(con.execute(f"select * from published.{table} where reporting_month = ?",
                                          [dt.date.fromisoformat(f"{month}-01")]).to_arrow_table())
    return frame.sort(frame.columns, nulls_last=True)


def test_a_twelve_month_backfill_from_one_extract_publishes_twelve_months(history):
    assert history["code"] == 0, history["output"][-3000:]
    assert "run as at each month's end from the cumulative 2026-10 extract" in history["output"]
    with connect(history["backfill"], read_only=True) as con:
        months = [r[0].isoformat()[:7] for r in con.execute(
            "select distinct reporting_month from published.gap_table order by 1").fetchall()]
        # A 12-month rolling indicator charts every month (monthly_with_caveat, the default),
        # with the caveat on the series.
        points = con.execute(
            "select count(distinct point_month), any_value(series_basis), any_value(series_note) "
            "from published.spc_series where reporting_month = ? and indicator_id = 'hypertension_treated_to_target' "
            "and breakdown = 'overall'", [dt.date(2026, 10, 1)]).fetchall()[0]
    assert months == BACKFILL
    assert points[0] == 12 and points[1] == "monthly_overlapping"
    assert "limits are narrower" in points[2]
    report = (history["backfill"].parent / "warehouse-reports" / "core20plus5_report_2026-10.html").read_text()
    assert "limits are narrower" in report  # the caveat is stated on the chart


@pytest.mark.parametrize("month", CUT_MONTHS)
def test_an_as_at_month_equals_the_month_run_from_an_extract_cut_on_its_last_day(history, month):
    for code, output in history["cut_outputs"]:
        assert code == 0, output[-3000:]
    # The first month of the backfill has no earlier history, so even its SPC series (and the
    # gate results on it) must match; a later month's series holds the earlier backfilled
    # points, which the lone cut run lacks.
    first = month == CUT_MONTHS[0]
    tables = PUBLISHED if first else PUBLISHED[:-1]
    for table in tables:
        as_at, cut = _table(history["backfill"], table, month), _table(history["cut"], table, month)
        if table == "data_quality" and not first:
            as_at, cut = (frame.filter(pl.col("asset") != "audit/spc_series") for frame in (as_at, cut))
        assert as_at.height > 0, table
        assert as_at.equals(cut), f"published.{table} for {month} differs between as-at and cut extract"


def test_an_extract_cut_before_the_month_cannot_give_it(history):
    code, output = core20("run", "--extract", str(history["root"] / "cuts" / CUT_MONTHS[0]), "--month", "2026-01",
                          "--warehouse", str(history["root"] / "refused" / "warehouse.duckdb"))
    assert code == 1
    assert "is the extract for 2025-11: it was cut before 2026-01 ended" in output
