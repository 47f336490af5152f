"""The monthly HTML report, rendered by headless Chromium as a reader would open it."""

import datetime as dt
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import duckdb
import pytest

from pipelines.report.page import build_report, report_path
from reference_data.loader import attribution_statements, resolve_reference_dir
from pipeline_helpers import core20, generate_months, patient_values

MONTHS = ("2026-08", "2026-09")
# Headless Chromium as root on a machine with no display and a closed network (see README):
# no sandbox, no GPU, and none of the background connections the network would refuse.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def chromium() -> str:
    found = os.environ.get("CORE20_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("headless Chromium is needed for the report test: `make test` installs Debian's chromium, "
                    "or set CORE20_CHROMIUM to a Chromium/Chrome binary")
    return found


def render(page: Path, *mode: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *mode, page.as_uri()],
                              capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    # Seed 302: both months have patients in every indicator's denominator (4,000 patients at
    # one or two practices hold about two CYP with diabetes), so that the SII/RII section can
    # show a row per indicator; checked here so that the premise cannot change unnoticed.
    generate_months(root / "extracts", MONTHS, n_patients=4000, seed=302)
    for month in MONTHS:
        truth = json.loads((root / "extracts" / month / "ground_truth.json").read_text())
        assert min(entry["all_patients"]["n_denominator"] for entry in truth["indicators"].values()) > 0, month
    warehouse, reports = root / "warehouse.duckdb", root / "reports"
    code, output = core20("run", "--extract", str(root / "extracts"), "--warehouse", str(warehouse),
                          "--serving", str(root / "serving"), "--reports", str(reports), "--from", MONTHS[0], "--to", MONTHS[1])
    assert code == 0, output
    return root, warehouse, reports, output


def test_every_published_month_gets_its_report_and_the_cli_says_where(reported):
    root, _, reports, output = reported
    for month in MONTHS:
        page = report_path(reports, dt.date.fromisoformat(f"{month}-01"))
        assert page.exists() and f"reports/monthly_report: {page}" in output


def test_chromium_renders_the_report_with_its_sections_charts_and_map(reported):
    _, warehouse, reports, _ = reported
    page = report_path(reports, dt.date(2026, 9, 1))
    done = render(page, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for section in ("summary", "map", "area-hypertension", "area-severe_mental_illness", "inequality-indices", "spc",
                    "data-quality", "about"):
        assert f'id="{section}"' in dom, section
    # The map: every LSOA of the ICS on the 2021 boundaries (the IoD 2025 vintage), shaded by decile.
    with duckdb.connect(str(warehouse), read_only=True) as con:
        n_lsoas, n_core20 = con.execute("""
            select count(*), count(*) filter (where i.imd2025_decile <= 2)
            from reference.lsoa21_geography g join reference.imd2025_lsoa21 i using (lsoa21_code)
            where g.icb24_code_nhs = 'QT1'""").fetchall()[0]
        n_practices = con.execute("select count(distinct practice_code) from population.patient_attributes "
                                  "where reporting_month = date '2026-09-01'").fetchall()[0][0]
    assert n_lsoas > 500
    assert len(re.findall(r'<path class="lsoa"', dom)) == n_lsoas
    assert len(re.findall(r'<path class="lsoa" data-decile="[12]"', dom)) == n_core20 > 0
    assert dom.count('<path class="core20"') == 1
    assert 0 < len(re.findall(r'<circle class="practice"', dom)) <= n_practices
    # One article per available indicator; those the month could not compute are listed with why.
    with duckdb.connect(str(warehouse), read_only=True) as con:
        available, unavailable = (
            [r[0] for r in con.execute("select indicator_id from published.indicator_catalogue where reporting_month = "
                                       f"date '2026-09-01' and {'' if flag else 'not '}is_available").fetchall()]
            for flag in (True, False))
    assert dom.count('class="indicator"') == len(available) >= 2 and len(unavailable) > 0
    listed = dom.split('class="unavailable"')[1].split("</ul>")[0]
    assert listed.count("<li>") == len(unavailable)
    # Per indicator: Core20 vs rest, IMD quintiles and ethnicity charts, and a trend over both months.
    for indicator in ("smi_health_check", "hypertension_treated_to_target"):
        article = dom.split(f'id="indicator-{indicator}"')[1].split("</article>")[0]
        assert len(re.findall(r'<svg class="chart"', article)) == 3, indicator
        assert len(re.findall(r'<svg class="chart trend"[^>]*data-months="2"', article)) == 1, indicator
        # SPC limits drawn on the trend with the variation and assurance in words.
        assert article.count('class="spc"') == 1 and article.count(">SPC mean</text>") == 1, indicator
    assert "IMD quintile 1 (most deprived)" in dom and "Core20 (national IMD deciles 1-2)" in dom
    # SII/RII come from their published table: a row per indicator and quantile type.
    sii = dom.split('id="inequality-indices"')[1].split("</section>")[0]
    assert sii.count("<tr><td>") == 2 * len(available) and 'class="pending"' not in sii
    for statement in attribution_statements():
        assert statement.replace("©", "&copy;") in dom or statement in dom
    # Self-contained: nothing is fetched when the page opens.
    assert not re.search(r'(src|href)="https?:', dom) and "url(http" not in dom


def test_a_screenshot_of_the_report_is_a_real_picture(reported, tmp_path):
    _, _, reports, _ = reported
    shot = tmp_path / "report.png"
    done = render(report_path(reports, dt.date(2026, 9, 1)), f"--screenshot={shot}", "--window-size=1100,2400")
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1100, 2400)
    assert len(data) > 100_000, "a blank page compresses to a few kilobytes; the map and charts do not"


def test_the_report_carries_no_patient_values(reported):
    root, _, reports, _ = reported
    text = report_path(reports, dt.date(2026, 9, 1)).read_text(encoding="utf-8")
    for value in patient_values(root / "extracts" / "2026-09", n=300):
        assert value not in text


def test_without_inequality_or_spc_tables_those_sections_say_so_instead_of_showing_numbers(reported, tmp_path):
    _, warehouse, _, _ = reported
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("drop table published.inequality_table")
        con.execute("drop table published.spc_series")
    html, summary = build_report(copy, dt.date(2026, 9, 1), resolve_reference_dir())
    assert html.count('class="pending"') == 2
    assert "SPC mean" not in html and 'class="sii"' not in html
    with duckdb.connect(str(copy), read_only=True) as con:
        n_available = con.execute("select count(*) from published.indicator_catalogue where reporting_month = "
                                  "date '2026-09-01' and is_available").fetchall()[0][0]
    assert summary["indicators"] == n_available >= 2


def _layout(page: Path) -> dict:
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "report_height.py"
    spec = importlib.util.spec_from_file_location("core20_report_height", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.layout(page)


def test_the_report_reads_summary_first_then_areas_then_data_quality(reported):
    _, warehouse, reports, _ = reported
    page = report_path(reports, dt.date(2026, 9, 1))
    layout = _layout(page)
    order = [name for name, _, _ in layout["sections"]]
    assert order[:2] == ["header", "summary"]
    areas = [i for i, name in enumerate(order) if name.startswith("area-")]
    assert areas and order.index("map") < areas[0] and areas[-1] < order.index("data-quality") < order.index("about")
    # The summary is one screen: it ends within 1,300 px of the top of the page at 1100 px wide.
    top, height = next((t, h) for name, t, h in layout["sections"] if name == "summary")
    assert top + height <= 1300, layout["sections"]
    # No raw table dumps: the data-quality section is a summary, not hundreds of rows.
    quality = next(h for name, _, h in layout["sections"] if name == "data-quality")
    assert quality < 3000, layout["sections"]
    html = page.read_text(encoding="utf-8")
    summary = html.split('<section id="summary">')[1].split("</section>")[0]
    # One headline row per clinical area, its Core20 and ethnicity gaps in words.
    with duckdb.connect(str(warehouse), read_only=True) as con:
        n_areas = con.execute("select count(distinct clinical_area) from published.indicator_catalogue "
                              "where reporting_month = date '2026-09-01' and is_available").fetchall()[0][0]
    headline = summary.split('<table class="headline">')[1].split("</table>")[0]
    assert headline.count("<tr class=\"tone-") == n_areas
    assert all(("significant" in row or "not compared" in row.lower() or "Not compared" in row)
               for row in headline.split("<tr class=")[1:])
    assert "CYP asthma" in html and "Cyp " not in html
    assert 'class="generic"' not in html and "ERROR" not in html
    assert "checks passed" in html
    assert html.count("SNOMED CT UK Affiliate Licence") == 1
    # The map: Sub-ICB locations and named local authorities, outlined from the LSOA boundaries.
    with duckdb.connect(str(warehouse), read_only=True) as con:
        n_sub_icbs, places = con.execute("select count(distinct sicbl24_code_nhs), list(distinct lad24_name) "
                                         "from reference.lsoa21_geography where icb24_code_nhs = 'QT1'").fetchall()[0]
    assert html.count('<path class="subicb"') == n_sub_icbs >= 2
    for place in places:
        assert f'paint-order="stroke">{place}</text>' in html
    # The per-Sub-ICB filter offers each location.
    assert html.count('<option value="') == n_sub_icbs + 1 and 'id="subicb-filter"' in html
