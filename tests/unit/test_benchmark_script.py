"""The benchmark's machinery: it must report a month that dies, not crash, and touch only its README block.

No timing is asserted (speed is measured by `make bench`, never tested); these check that a
child killed by a signal or stopped at the memory cap is described as such, that the
process-tree memory is read, and that `--update-readme` replaces exactly the marked block.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"
spec = importlib.util.spec_from_file_location("core20_benchmark", SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
sys.modules["core20_benchmark"] = benchmark
spec.loader.exec_module(benchmark)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux /proc")


def test_tree_rss_counts_this_process():
    assert benchmark.tree_rss(os.getpid()) > 10 * 2**20


def test_a_child_that_exits_badly_is_reported_with_its_code(tmp_path):
    run = benchmark.measure([sys.executable, "-c", "import sys; print('x', file=sys.stderr); sys.exit(3)"],
                            env=dict(os.environ), log_prefix=tmp_path / "bad", cap_bytes=2**40)
    assert (run.ok, run.returncode, run.outcome()) == (False, 3, "exit code 3")
    assert benchmark.tail(run.stderr) == "x"


def test_a_child_killed_by_a_signal_is_named(tmp_path):
    run = benchmark.measure([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                            env=dict(os.environ), log_prefix=tmp_path / "killed", cap_bytes=2**40)
    assert run.signal_name == "SIGKILL" and not run.stopped_by_cap
    assert run.outcome().startswith("killed by SIGKILL")


def test_a_child_past_the_memory_cap_is_stopped_and_its_peak_kept(tmp_path):
    grow = "import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n    time.sleep(0.05)\n"
    run = benchmark.measure([sys.executable, "-c", grow], env=dict(os.environ), log_prefix=tmp_path / "grow",
                            cap_bytes=400 * 2**20, interval=0.05)
    assert run.stopped_by_cap and run.signal_name == "SIGKILL"
    assert run.outcome() == "stopped by the benchmark: memory cap reached"
    assert run.peak >= 400 * 2**20
    assert run.peak_between(run.started_at, run.started_at + run.wall_seconds) == run.peak_bytes


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{benchmark.BEGIN}\nold figures\n{benchmark.END}\n\nafter\n")
    benchmark.update_readme("| new | table |\n", readme)
    assert readme.read_text() == f"# title\n\nbefore\n\n{benchmark.BEGIN}\n| new | table |\n{benchmark.END}\n\nafter\n"
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        benchmark.update_readme("x\n", tmp_path / "plain.md")


def test_the_projects_readme_has_the_block():
    text = (SCRIPT.parents[1] / "README.md").read_text()
    assert text.count(benchmark.BEGIN) == 1 and text.count(benchmark.END) == 1
    assert text.index(benchmark.BEGIN) < text.index(benchmark.END)


def test_a_month_that_died_is_described_in_the_report():
    month = benchmark.Measured(command=["core20", "run"], returncode=-9, signal_name="SIGKILL", stopped_by_cap=True,
                               wall_seconds=30.0, peak_bytes=18 * 2**30)
    run = benchmark.RunRecord(run_seconds=25.0, status="started", steps=[
        benchmark.Step("staging_extract", 20.0, "success", 9 * 2**30),
        benchmark.Step("population__patient_deprivation", None, "died", 18 * 2**30),
    ])
    died = benchmark.SizeResult(5_000_000, n_events=125_000_000, month=month, run=run, floor_seconds=[4.0, 5.0, 6.0])
    text = benchmark.markdown([died], command="make bench", reference_seconds=None, started=benchmark.dt.datetime(2026, 12, 6),
                              load=(1.0, 1.0, 1.0), available=20 * 2**30, commit="abc")
    assert "**stopped by the benchmark: memory cap reached** in step `population/patient_deprivation` at 18.00 GiB" in text
    assert "| population/patient_deprivation | **died here** | 18.00 GiB |" in text
    assert "25.0 s until it stopped" in text
    assert "| **month / floor** | — |" in text  # no ratio for a month that did not finish


def test_the_report_says_whether_the_suites_were_validated_before_the_months():
    result = benchmark.SizeResult(1_000_000, n_events=27_000_000, floor_seconds=[0.6])
    common = dict(command="make bench", reference_seconds=5.0, started=benchmark.dt.datetime(2026, 12, 7),
                  load=(1.0, 1.0, 1.0), available=20 * 2**30, commit="abc")
    warmed = benchmark.markdown([result], warmup_seconds=21.0, **common)
    assert "a 2,000-patient month (21.0 s with its extract) validated the expectation suites with GX" in warmed
    cold = benchmark.markdown([result], warmup_seconds=None, **common)
    assert "No warm-up month ran: the first size's month includes validating the expectation suites with GX." in cold
    assert "2,000-patient month" not in cold
