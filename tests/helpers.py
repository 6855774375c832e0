"""Helpers the integration tests share: the CLI in a subprocess, a foreground `up`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PY = sys.executable


def run_stacktest(
    *args: str, cwd: Path, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m stacktest ARGS`` in ``cwd``, output captured, wide and without colours."""
    return subprocess.run(
        [PY, "-m", "stacktest", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
    )


@contextlib.contextmanager
def foreground_up(project: Path, timeout: float = 60) -> Iterator[subprocess.Popen[str]]:
    """``stacktest up`` in the foreground, yielded once it says the stack is ready; killed
    (if still running) and its pipe closed afterwards, whatever the test did."""
    proc = subprocess.Popen(
        [PY, "-m", "stacktest", "up"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            if "ready in" in line:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"`stacktest up` was not ready within {timeout:g}s")
        else:
            raise AssertionError("`stacktest up` ended before it was ready")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == pid and b"stacktest.engine.watchdog" not in cmdline:
                found.append(int(entry))
    return found


def kill_owner_at_spawn(project: Path, nth: int, timeout: float = 30) -> list[int]:
    """Start ``stacktest up`` and SIGKILL it the instant its ``nth`` service process
    appears (forked, maybe not yet exec'd); the pids of the processes it had started."""
    proc = subprocess.Popen([PY, "-m", "stacktest", "up"], cwd=project,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for child in _children(proc.pid):
                if child not in seen:
                    seen.append(child)
            if len(seen) >= nth:
                break
        proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return seen


def leftovers(run_dir: Path) -> list[str]:
    """Live processes of a run directory: started in it (their cwd), tagged with it, or
    naming it on their command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        base = Path("/proc") / entry
        try:
            cwd = os.readlink(base / "cwd")
            cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (base / "environ").read_bytes().decode(errors="replace")
            state = (base / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z" or "stacktest.engine.watchdog" in cmdline:
            continue
        if cwd.startswith(str(run_dir)) or str(run_dir) in cmdline or str(run_dir) in environ:
            found.append(f"{entry} {cmdline[:120]}")
    return found


def listening_addresses(pids: list[int]) -> list[str]:
    """``host:port`` of every TCP socket listening in these processes or their process
    groups (read from /proc: the kernel's view, not what a config file says)."""
    groups = set(pids)
    members = set(pids)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat[2]) in groups:
                members.add(int(entry))
    inodes: set[str] = set()
    for pid in members:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                address, port = fields[1].split(":")
                found.append(f"{_address(address, width)}:{int(port, 16)}")
    return sorted(found)


def _address(hex_address: str, width: int) -> str:
    """/proc/net/tcp's little-endian hex address, readable."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    if width == 8:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return f"[{ipaddress.IPv6Address(words)}]"
