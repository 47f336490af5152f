"""`core20 imd` never leaves its partial output (patient rows) behind.

A kill that Python can see (SIGTERM, SIGHUP, Ctrl-C) removes the partial file at once; a
SIGKILL cannot be caught, so the next run in the same folder sweeps what a dead process
left. Files of a process that is still running are never touched.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.segmentation.imd_lookup import PARTIAL_MARK, _partial_output, _Terminated, sweep_partial_outputs

REPO = Path(__file__).resolve().parents[2]


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(f".*{PARTIAL_MARK}*"))


def test_partial_output_is_private_beside_the_output_and_removed_after_use(tmp_path):
    target = tmp_path / "out.csv"
    with _partial_output(target) as temporary:
        assert temporary.parent == tmp_path and temporary.exists()
        assert stat.S_IMODE(temporary.stat().st_mode) == 0o600
        assert str(os.getpid()) in temporary.name
    assert partials(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_termination_signal_while_writing_removes_the_partial_file_and_restores_the_handler(tmp_path, signum):
    before = signal.getsignal(signum)
    with pytest.raises(_Terminated):
        with _partial_output(tmp_path / "out.csv") as temporary:
            temporary.write_text("patient_id,postcode\n")
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises before this ends
    assert partials(tmp_path) == []
    assert signal.getsignal(signum) == before


def test_sigkill_leaves_a_file_that_the_next_run_sweeps_but_a_live_writer_is_left_alone(tmp_path):
    script = (
        "import sys, time\nfrom pathlib import Path\n"
        "from pipelines.segmentation.imd_lookup import _partial_output\n"
        "with _partial_output(Path(sys.argv[1])) as t:\n"
        "    t.write_text('x')\n    print('ready', flush=True)\n    time.sleep(60)\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"out{i}.csv")], cwd=REPO,
                                stdout=subprocess.PIPE, text=True) for i in range(2)]
    try:
        for writer in writers:
            assert writer.stdout.readline().strip() == "ready"
        assert len(partials(tmp_path)) == 2
        writers[0].kill()
        writers[0].wait()
        assert len(partials(tmp_path)) == 2  # SIGKILL: nothing could clean up
        assert sweep_partial_outputs(tmp_path) == 1
        left = partials(tmp_path)
        assert len(left) == 1 and f"{PARTIAL_MARK}{writers[1].pid}." in left[0].name
        (tmp_path / "unrelated.csv").write_text("kept")
        (tmp_path / ".hidden").write_text("kept")
        assert sweep_partial_outputs(tmp_path) == 0
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
    assert sweep_partial_outputs(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "unrelated.csv"]
