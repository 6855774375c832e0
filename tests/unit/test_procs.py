"""A process's identity (pid and start time), with /proc and, as on macOS, without it."""

from __future__ import annotations

import subprocess
import time

import pytest

from stacktest.engine import procs


@pytest.mark.parametrize("has_proc", [True, False], ids=["/proc", "ps"])
def test_a_process_is_known_by_when_it_started(has_proc: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs, "HAS_PROC", has_proc)
    before = time.time()
    child = subprocess.Popen(["sleep", "30"])
    try:
        after = time.time()
        assert procs.start_ticks(child.pid) is not None
        assert procs.start_ticks(child.pid) == procs.start_ticks(child.pid)  # stable
        assert procs.started_between(child.pid, before, after)
        # a process that started before the window (pid reuse) is someone else
        assert not procs.started_between(child.pid, after + 5, after + 10)
    finally:
        child.kill()
        child.wait()
    assert not procs.started_between(child.pid, before, after)  # gone
