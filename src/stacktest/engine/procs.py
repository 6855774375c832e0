"""Process hygiene: tags on every child, group signals, and a sweep for strays.

Every service process runs in its own session (so its process group is its
own), and carries ``STACKTEST_RUN_ID`` and ``STACKTEST_RUN_DIR`` in its
environment, inherited by everything it starts. Stopping signals the group;
reaping finds tagged processes through /proc even if they left the group.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TAG_RUN_ID = "STACKTEST_RUN_ID"
TAG_RUN_DIR = "STACKTEST_RUN_DIR"
TAG_SERVICE = "STACKTEST_SERVICE"


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def tagged(**tags: str) -> Iterator[int]:
    """Pids of live processes whose environment holds every ``KEY=value`` given."""
    if not Path("/proc/self/environ").exists():
        return
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        env = _environ(int(entry))
        if env and all(env.get(key) == value for key, value in tags.items()):
            yield int(entry)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(alive(pid) for pid in _group_members(pgid)) or not Path("/proc").exists()


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry))
    return members


#: Linux (and most Unixes but macOS) show processes in /proc; elsewhere ``ps`` answers.
HAS_PROC = Path("/proc/self/stat").exists()


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot; without /proc, seconds since the
    epoch from ``ps``): with the pid, a unique identity.

    Environment tags are not enough on their own: servers that rewrite their process
    title (valkey, redis) overwrite the memory /proc/PID/environ shows.
    """
    if not HAS_PROC:
        started = _ps_started(pid)
        return None if started is None else int(started)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _ps_started(pid: int) -> float | None:
    """A process's start (seconds since the epoch, to the second) from ``ps -o lstart``."""
    import subprocess

    try:
        done = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True,
                              text=True, timeout=5, check=False, env={"LC_ALL": "C"})  # fmt: skip
        return time.mktime(time.strptime(done.stdout.strip(), "%a %b %d %H:%M:%S %Y"))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def started_between(pid: int, earliest: float, latest: float, slack: float = 0.2) -> bool:
    """Whether live process ``pid`` started between two wall-clock times (seconds since
    the epoch, each widened by ``slack``): who it is, even after it rewrote its title and
    environment. Without /proc (macOS), whether it is alive."""
    if not HAS_PROC:  # ps: to the second
        started_at = _ps_started(pid)
        ok = started_at is not None and earliest - 1 - slack <= started_at <= latest + slack
        return ok and alive(pid)
    ticks = start_ticks(pid)
    if ticks is None:
        return False
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    started = time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    return earliest - slack <= started <= latest + slack and alive(pid)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_tagged(**tags: str) -> list[int]:
    """SIGKILL every live process carrying the tags; returns their pids."""
    killed = []
    for pid in tagged(**tags):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def terminate_group(pgid: int, sig: int, grace: float) -> None:
    """Blocking: ``sig`` to the group, wait up to ``grace``, then SIGKILL (for reaping)."""
    signal_group(pgid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.02)
    signal_group(pgid, signal.SIGKILL)


def block_signals_in_this_thread() -> None:
    """Leave the process's signals (Ctrl-C, SIGTERM) to the other threads, the main one.

    A process-directed signal may land on any thread that does not block it; Python then
    runs the handler in the main thread only when that thread next runs Python code, so a
    main thread in ``time.sleep(60)`` would sleep on. Background threads that start no
    processes (a child would inherit the mask) call this first thing.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


def without_signals(target: Callable[..., object]) -> Callable[..., None]:
    """``target`` run in a thread that blocks every signal (see above)."""

    def run(*args: object) -> None:
        block_signals_in_this_thread()
        target(*args)

    return run


def quiet_executor(name: str) -> concurrent.futures.ThreadPoolExecutor:
    """A default executor for a background event loop whose threads block signals."""
    return concurrent.futures.ThreadPoolExecutor(
        thread_name_prefix=name, initializer=block_signals_in_this_thread
    )
