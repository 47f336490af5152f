"""The independent parts of a suppression problem audited in forked processes hide the same cells.

`suppress(processes=)` shares the parts of at least PARALLEL_PART_SIZE counts out to forked
processes (the national roll-up's parts: one per group of indicators sharing populations).
The parts share no relation, order pair or unit, so the cells hidden must be exactly those one
process hides, the hidden counts must stay free for an attacker who sees every part at once,
and a child that fails must fail the call in the parent (never carry on in the caller's code).
"""

from __future__ import annotations

import os
import time

import pytest

from pipelines.segmentation import disclosure
from pipelines.segmentation.disclosure import NHS_SUPPRESS_ROUND5, CountProblem, suppress
from pipelines.segmentation.month_disclosure import _area_scopes
from tests.spec.test_scoped_suppression import assert_nothing_narrowed, national_problem

SEEDS = (11, 12, 13, 14)


def several_parts() -> CountProblem:
    """Four national releases (areas renamed apart) in one problem: four independent parts."""
    combined = CountProblem(keys=[], values=[])
    for seed in SEEDS:
        problem, sums, linked = national_problem(seed)
        problem.keys = [(f"s{seed}:{key[0]}", *key[1:]) for key in problem.keys]
        sums = [(f"s{seed}:{total}", [f"s{seed}:{p}" for p in parts]) for total, parts in sums]
        _area_scopes(problem, sums, linked)
        offset, units = len(combined.keys), len(combined.units)
        combined.keys += problem.keys
        combined.values += problem.values
        combined.relations += [([m + offset for m in members], coefficients) for members, coefficients in problem.relations]
        combined.units += [[m + offset for m in members] for members in problem.units]
        combined.unit_keys += problem.unit_keys
        combined.unit_priority += problem.unit_priority
        combined.implies.update({u + units: [x + units for x in implied] for u, implied in problem.implies.items()})
        combined.scope_sets.update({name: {m + offset for m in members} for name, members in problem.scope_sets.items()})
        combined.scope_chain.update({v + offset: chain for v, chain in problem.scope_chain.items()})
    return combined


@pytest.fixture
def small_parts_fork(monkeypatch):
    # The test's parts are a few hundred counts: let them count as large (forked, and reporting progress).
    monkeypatch.setattr(disclosure, "PARALLEL_PART_SIZE", 50)
    monkeypatch.setattr(disclosure, "PROGRESS_PART_SIZE", 50)
    monkeypatch.setattr(disclosure, "PROGRESS_EVERY", 0.0)


def test_forked_parts_hide_what_one_process_hides(small_parts_fork):
    problem = several_parts()
    assert len(disclosure._components(problem)) == len(SEEDS)
    alone = suppress(problem, NHS_SUPPRESS_ROUND5)
    lines: list[str] = []
    forked = suppress(problem, NHS_SUPPRESS_ROUND5, processes=2, progress=lines.append)
    assert forked.hidden_units == alone.hidden_units
    assert (forked.n_lp_solves, forked.n_complements, forked.n_models, forked.largest_model, forked.smallest_model) == (
        alone.n_lp_solves, alone.n_complements, alone.n_models, alone.largest_model, alone.smallest_model)
    assert alone.n_complements > 0
    # The children's progress reached the parent: a start and an end line for each part, and
    # lines while its counts are audited one by one.
    assert sum("LP solves in" in line for line in lines) == len(SEEDS)
    assert sum(line.startswith("suppression: part") for line in lines) == len(SEEDS)
    assert any("left to audit" in line for line in lines)
    # Every part protected against a reader of all of them at once.
    assert_nothing_narrowed(problem, forked.hidden_units)


def _children(pid: int) -> set[int]:
    """The live (not zombie) child processes of `pid`, from Linux's /proc."""
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as children:
            found |= {int(c) for c in children.read().split()}
    return {c for c in found if not _ended(c)}


def _break_the_audit(monkeypatch, in_child, in_parent) -> int:
    """Make every single LP of the audit call `in_child()` first in a part process, `in_parent()`
    in the calling one (either may sleep or raise); return the calling process's pid."""
    parent = os.getpid()
    real = disclosure._Component.extreme

    def broken(self, variable, sign):
        (in_child if os.getpid() != parent else in_parent)()
        return real(self, variable, sign)

    monkeypatch.setattr(disclosure._Component, "extreme", broken)
    return parent


def _fail(message: str):
    def fail():
        raise ValueError(message)

    return fail


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from Linux's /proc")
def test_a_failing_child_fails_the_call_in_the_parent(small_parts_fork, monkeypatch):
    problem = several_parts()
    before = _children(os.getpid())
    waited: list = []
    # The parent takes parts too: it waits at its first LP while the child takes one.
    parent = _break_the_audit(monkeypatch, _fail("a part that cannot be audited"),
                              lambda: waited or waited.append(time.sleep(0.5)))
    with pytest.raises(RuntimeError, match="a part that cannot be audited"):
        suppress(problem, NHS_SUPPRESS_ROUND5, processes=2)
    # Only the parent came back here (a child that escaped would run the rest of the test),
    # and no part process is left.
    assert os.getpid() == parent
    assert _children(parent) == before


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from Linux's /proc")
def test_a_failure_in_the_parent_stops_the_part_processes(small_parts_fork, monkeypatch):
    """The calling process audits parts too: its own error ends the call, and the children with it."""
    problem = several_parts()
    before = _children(os.getpid())
    seen: list[set[int]] = []

    def in_parent():
        time.sleep(0.5)  # the child is at work by now
        seen.append(_children(parent) - before)
        raise ValueError("the parent's part cannot be audited")

    # A long part: the child is still at it when the parent fails.
    parent = _break_the_audit(monkeypatch, lambda: time.sleep(60), in_parent)
    with pytest.raises(ValueError, match="the parent's part cannot be audited"):
        suppress(problem, NHS_SUPPRESS_ROUND5, processes=2)
    assert len(seen[0]) == 1  # one child beside the parent (processes=2)
    assert _children(parent) == before


def test_the_roll_up_processes_setting(monkeypatch):
    from pipelines.national.rollup import PROCESSES_ENV, rollup_processes

    monkeypatch.setenv(PROCESSES_ENV, "3")
    assert rollup_processes() == 3 and rollup_processes(2) == 2
    monkeypatch.setenv(PROCESSES_ENV, "two")
    with pytest.raises(ValueError, match="CORE20_ROLLUP_PROCESSES"):
        rollup_processes()
    monkeypatch.delenv(PROCESSES_ENV)
    assert rollup_processes() == len(os.sched_getaffinity(0))


def _suppress_in_daemon(queue) -> None:
    disclosure.PARALLEL_PART_SIZE = 50
    problem = several_parts()
    try:
        result = suppress(problem, NHS_SUPPRESS_ROUND5, processes=2)
        queue.put(("ok", sorted(result.hidden_units)))
    except BaseException as error:  # reported to the test
        queue.put(("error", repr(error)))


def test_forks_inside_a_daemonic_worker_process():
    """A Celery prefork worker runs tasks in daemonic processes, which multiprocessing forbids to
    have children; the forked parts must still run there, and hide what one process hides.

    The daemon is spawned, not forked: this test process has run HiGHS, and a process forked
    after that inherits HiGHS's task scheduler without its threads (it would hang; `suppress`
    stops the scheduler before it forks for that reason, and a Celery worker's pool is forked
    from a main process that never solves an LP)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=_suppress_in_daemon, args=(queue,), daemon=True)
    worker.start()
    outcome = queue.get(timeout=300)
    worker.join(60)
    assert outcome[0] == "ok", outcome
    assert outcome[1] == sorted(suppress(several_parts(), NHS_SUPPRESS_ROUND5).hidden_units)


def _hang_in_children(folder: str) -> None:
    """In a spawned process: fork two part processes that each note their pid and never finish."""
    import time

    from pipelines.segmentation.disclosure import _PartWorkers

    for _part, _say in _PartWorkers(2, [0, 1]).start(None, lambda: None):
        with open(os.path.join(folder, str(os.getpid())), "w"):
            pass
        time.sleep(600)
    time.sleep(600)  # the parent, while its children work


def _ended(pid: int) -> bool:
    """Whether the process is gone or a zombie (a container's pid 1 may never reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from Linux's /proc")
def test_part_processes_end_when_their_parent_is_killed(tmp_path):
    """A parent killed outright (SIGKILL: the OOM killer, a worker's hard time limit) runs no
    clean-up: its part processes must end with it, not solve on for an hour unread."""
    import multiprocessing
    import signal
    import time

    parent = multiprocessing.get_context("spawn").Process(target=_hang_in_children, args=(str(tmp_path),))
    parent.start()
    deadline = time.monotonic() + 120
    while len(os.listdir(tmp_path)) < 2:
        assert time.monotonic() < deadline, "the part processes did not start"
        time.sleep(0.1)
    children = [int(name) for name in os.listdir(tmp_path)]
    assert not any(_ended(pid) for pid in children)
    os.kill(parent.pid, signal.SIGKILL)
    parent.join(30)
    deadline = time.monotonic() + 30
    while not all(_ended(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_ended(pid) for pid in children), "a part process outlived its killed parent"
