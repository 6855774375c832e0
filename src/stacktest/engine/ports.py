"""Free loopback ports that no other stack on this machine is handed at the same time.

The kernel picks a free port (bind to port 0); a reservation file, created with
O_EXCL in a directory shared by every stacktest process of this user, makes sure
two stacks starting at the same moment never get the same one before either
server has bound it. Reservations expire after a while; by then the server
holds the port itself.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from pathlib import Path

RESERVATION_TTL = 300.0


def reservation_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"stacktest-ports-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _expired(path: Path, now: float) -> bool:
    try:
        return now - path.stat().st_mtime > RESERVATION_TTL
    except FileNotFoundError:
        return True


def allocate_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now and reserved for the caller."""
    directory = reservation_dir()
    now = time.time()
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        marker = directory / str(port)
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if _expired(marker, now):
                with contextlib.suppress(FileNotFoundError):
                    marker.unlink()
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        return port
    raise OSError("could not find a free loopback port after 200 attempts")


def release_ports(ports: list[int]) -> None:
    directory = reservation_dir()
    for port in ports:
        with contextlib.suppress(FileNotFoundError):
            (directory / str(port)).unlink()
    sweep(directory)


def sweep(directory: Path) -> None:
    """Drop expired reservations left by runners that were killed."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            if _expired(entry, now):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()


def in_use(port: int, host: str = "127.0.0.1") -> str | None:
    """None when ``host:port`` can be bound now; else who holds it, as well as /proc says."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return None
        except OSError:
            pass
    return _holder(port) or "a process stacktest cannot see (another user's?)"


def _holder(port: int) -> str | None:
    """``pid 1234 (postgres -D ...)`` listening on ``port``, read from /proc (Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    return f"pid {entry.name} ({argv.strip()[:120] or '?'})"
    return None
