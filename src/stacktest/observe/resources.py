"""CPU and memory of every service, sampled once a second into ``resources.jsonl``.

One pass over ``/proc`` per sample groups processes by process group (every service
instance is its own group), so a service's figure includes what it started: Postgres
backends, a shell's children. CPU is user + system time of the live members plus what
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


def sample(groups: dict[str, int]) -> dict[str, tuple[float, float]]:
    """``{instance: (cpu seconds, rss MB)}`` for the given ``{instance: pgid}``."""
    wanted = {pgid: name for name, pgid in groups.items()}
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        name = wanted.get(int(fields[2]))
        if name is None:
            continue
        ticks = int(fields[11]) + int(fields[12])
        if int(entry) == groups[name]:  # the leader: and what it reaped
            ticks += int(fields[13]) + int(fields[14])
        cpu[name] = cpu.get(name, 0.0) + ticks / TICK
        rss[name] = rss.get(name, 0.0) + int(fields[21]) * PAGE / 2**20
    return {name: (round(cpu[name], 3), round(rss[name], 1)) for name in cpu}


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
                found = await asyncio.to_thread(sample, current)
                now = time.time()
                lines = [
                    json.dumps({"t": now, "service": name, "cpu_s": c, "rss_mb": r})
                    for name, (c, r) in found.items()
                ]
                if lines:
                    with open(self.path, "a") as fh:
                        fh.write("\n".join(lines) + "\n")
            await asyncio.sleep(self.interval)
