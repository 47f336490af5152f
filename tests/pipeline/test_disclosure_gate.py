"""The disclosure audit blocks a month whose outputs would leak, and leaves every published output as it was.

Each test injects one kind of leak into a candidate (after secondary suppression, as a bug
would) and runs September on top of a published October: the gate must refuse, naming the
surface and the rule (never a value), and the published tables, the serving folder and the
reports must stay byte-identical. The clean month passes the same audit, and `core20
disclosure-audit` finds nothing on what it published.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline_helpers import core20_in_process, published_state


def _files(*folders: Path) -> dict[str, str]:
    """Return relative path -> sha256 of every file (hidden building folders included) under the folders."""
    state = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() or path.is_symlink():
                target = path.resolve() if path.is_symlink() else path
                state[str(path.relative_to(folder.parent))] = hashlib.sha256(
                    target.read_bytes() if target.is_file() else str(target).encode()).hexdigest()
    return state


@pytest.fixture
def outputs(tmp_path, base_warehouse, clean_extracts):
    """A published October (warehouse, serving folder, reports) and September's extract beside it."""
    warehouse = tmp_path / "w.duckdb"
    shutil.copy(base_warehouse, warehouse)
    serving, reports = tmp_path / "serving", tmp_path / "reports"
    code, output = core20_in_process("run", "--extract", str(clean_extracts), "--month", "2026-10", "--warehouse",
                                     str(warehouse), "--serving", str(serving), "--reports", str(reports))
    assert code == 0, output
    return warehouse, serving, reports, clean_extracts


def _run_september(outputs) -> tuple[int, str]:
    warehouse, serving, reports, extracts = outputs
    return core20_in_process("run", "--extract", str(extracts), "--month", "2026-09", "--warehouse", str(warehouse),
                             "--serving", str(serving), "--reports", str(reports))


def _leak_gap_row(kind: str):
    """Return a wrapper of month_disclosure.protect_month that breaks one published gap-table row."""
    from pipelines.segmentation import month_disclosure

    original = month_disclosure.protect_month

    def leaky(*args, **kwargs):
        controlled, quality, stats = original(*args, **kwargs)
        if kind == "small_count":
            row = pl.col("denominator").is_not_null() & (pl.col("breakdown") == "practice")
            first = controlled.with_row_index("_i").filter(row)["_i"][0]
            controlled = controlled.with_row_index("_i").with_columns(
                pl.when(pl.col("_i") == first).then(pl.lit(3, pl.Int64)).otherwise(pl.col("numerator")).alias("numerator")
            ).drop("_i")
        elif kind == "zero_over_hidden":
            first = controlled.with_row_index("_i").filter(pl.col("denominator").is_null())["_i"][0]
            controlled = controlled.with_row_index("_i").with_columns(
                pl.when(pl.col("_i") == first).then(pl.lit(0, pl.Int64)).otherwise(pl.col("numerator")).alias("numerator")
            ).drop("_i")
        elif kind == "half_shown_row":
            first = controlled.with_row_index("_i").filter(pl.col("denominator").is_null())["_i"][0]
            controlled = controlled.with_row_index("_i").with_columns(
                pl.when(pl.col("_i") == first).then(pl.lit(40, pl.Int64)).otherwise(pl.col("numerator")).alias("numerator")
            ).drop("_i")
        return controlled, quality, stats

    return leaky


DISCLOSURE_GATE = "audit/disclosure:disclosure_rules blocked"


@pytest.mark.parametrize("kind, rule, surface, gate", [
    # A small count in the gap table is stopped twice over: the table's own suite forbids
    # 1-7 (audit.gap_table.json), and with that suite blind to it the disclosure audit still is.
    ("small_count", "disclosure control: no count the profile hides", "expect_column_values_to_not_be_in_set",
     "gate audit/gap_table:published_invariants blocked"),
    ("small_count_past_the_table_gate", "small_count", "published.gap_table (candidate)", DISCLOSURE_GATE),
    ("zero_over_hidden", "half_shown_row", "published.gap_table (candidate)", DISCLOSURE_GATE),
    ("half_shown_row", "half_shown_row", "published.gap_table (candidate)", DISCLOSURE_GATE),
    ("unrounded_quality", "unrounded_count", "published.data_quality (candidate)", DISCLOSURE_GATE),
    ("report_cell", "small_count", "core20plus5_report_2026-09.html (candidate)", DISCLOSURE_GATE),
])
def test_each_kind_of_leak_blocks_the_month_and_nothing_published_changes(outputs, monkeypatch, kind, rule, surface, gate):
    warehouse, serving, reports, _ = outputs
    before_tables, before_files = published_state(warehouse), _files(serving, reports)
    if kind in ("small_count", "small_count_past_the_table_gate", "zero_over_hidden", "half_shown_row"):
        from pipelines.segmentation import gaps

        monkeypatch.setattr(gaps, "protect_month", _leak_gap_row("small_count" if kind.startswith("small") else kind))
        if kind == "small_count_past_the_table_gate":
            import assets.gaps

            # The table's suite is told no count is unpublishable (a suite that missed the leak).
            monkeypatch.setattr(assets.gaps, "unpublishable_counts", lambda profile: [-1])
    elif kind == "unrounded_quality":
        from pipelines import quality

        # The gates' history published as recorded: exact counts (e.g. 1,998 patients), as before issue 12.
        monkeypatch.setattr(quality, "controlled_rows", lambda rows, profile: rows.filter(
            pl.col("kind").is_in(["expectation", "quarantine_share"])))
    elif kind == "report_cell":
        from pipelines.report import page

        original = page.build_report

        def leaky(*args, **kwargs):
            html, summary = original(*args, **kwargs)
            return html.replace("</body>", "<table><tr><th>patients</th></tr><tr><td>3</td></tr></table></body>"), summary

        monkeypatch.setattr(page, "build_report", leaky)
    code, output = _run_september(outputs)
    assert code == 2, output
    assert gate in output and rule in output and surface in output, output
    assert published_state(warehouse) == before_tables  # every published table, byte for byte
    assert _files(serving, reports) == before_files  # serving snapshots, pointer and reports, byte for byte


def test_a_clean_month_passes_and_the_command_finds_no_breach_in_what_it_published(outputs):
    warehouse, serving, reports, _ = outputs
    code, output = _run_september(outputs)
    assert code == 0, output
    code, output = core20_in_process("disclosure-audit", "--warehouse", str(warehouse), "--serving", str(serving),
                                     "--reports", str(reports))
    assert code == 0, output
    assert "no breach" in output and "2 report(s)" in output


def test_the_command_names_surface_and_rule_of_a_leak_already_published(outputs, tmp_path):
    warehouse, serving, reports, _ = outputs
    report = next(reports.glob("core20plus5_report_*.html"))
    report.write_text(report.read_text(encoding="utf-8").replace("</body>", "<p>Core20 (4/7)</p></body>"), encoding="utf-8")
    code, output = core20_in_process("disclosure-audit", "--warehouse", str(warehouse), "--serving", str(serving),
                                     "--reports", str(reports))
    assert code == 2, output
    assert f"{report.name}: small_count" in output
