"""CPU and memory of every service, sampled once a second into ``resources.jsonl``.

Each instance's process tree is walked from its leader (every instance is its own
process group), so a service's figure includes what it started: Postgres backends, a
shell's children. CPU is user + system time of the live members plus what
the group leader has reaped (``cutime`` + ``cstime``: Postgres' exited backends), so it
only goes down when an instance is restarted. Linux only; elsewhere nothing is written.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _children(pid: int) -> list[int]:
    """Direct children of a process (from every thread's ``children`` list)."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                found += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return found


def _stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def sample(groups: dict[str, int]) -> dict[str, tuple[float, float]]:
    """``{instance: (cpu seconds, rss MB)}`` for the given ``{instance: pgid}``.

    Each instance's process tree is walked from its leader (a few reads, not a pass over
    all of ``/proc``: the sampler shares a process, and its GIL, with load generators);
    descendants that left the group (daemons) are not counted.
    """
    out = {}
    for name, leader in groups.items():
        fields = _stat(leader)
        if fields is None:
            continue
        ticks = sum(int(f) for f in fields[11:15])  # utime stime + reaped cutime cstime
        pages = int(fields[21])
        pending = _children(leader)
        seen = {leader}
        while pending:
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            child = _stat(pid)
            if child is None or int(child[2]) != leader:  # gone, or left the group
                continue
            ticks += int(child[11]) + int(child[12])
            pages += int(child[21])
            pending += _children(pid)
        out[name] = (round(ticks / TICK, 3), round(pages * PAGE / 2**20, 1))
    return out


class ResourceSampler:
    """Appends a line per instance and sample to ``path`` until cancelled."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval

    async def run(self, groups: Callable[[], dict[str, int]]) -> None:
        if not Path("/proc/self/stat").exists():
            return
        while True:
            current = groups()
            if current:
                found = sample(current)  # a few /proc reads: under a millisecond
                now = time.time()
                lines = [
                    json.dumps({"t": now, "service": name, "cpu_s": c, "rss_mb": r})
                    for name, (c, r) in found.items()
                ]
                if lines:
                    with open(self.path, "a") as fh:
                        fh.write("\n".join(lines) + "\n")
            await asyncio.sleep(self.interval)
