"""Single readiness attempts: TCP connect, HTTP status, command exit code, log regex.

Each returns quickly (bounded by its own timeout) and never waits for a second
attempt; polling and deadlines belong to the engine.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit


async def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def http_status(url: str, timeout: float = 1.0) -> int | None:
    """GET ``url`` and return the status code (None if no answer)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        import httpx

        try:
            async with httpx.AsyncClient(verify=False, timeout=timeout) as client:
                return (await client.get(url)).status_code
        except httpx.HTTPError:
            return None
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
            "User-Agent: stacktest\r\n\r\n".encode()
        )
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
    fields = line.split()
    if len(fields) >= 2 and fields[0].startswith(b"HTTP/") and fields[1].isdigit():
        return int(fields[1])
    return None


async def command_ok(
    argv: list[str], env: Mapping[str, str], cwd: Path | None, timeout: float = 1.0
) -> bool:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        return await asyncio.wait_for(proc.wait(), timeout) == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False


class LogWatch:
    """Finds a regex in a growing log file, reading only what is new each time."""

    def __init__(self, path: Path, pattern: str) -> None:
        self.path = path
        self.pattern = re.compile(pattern)
        self.offset = 0
        self.pending = ""

    def found(self) -> bool:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return False
        self.offset += len(chunk)
        text = self.pending + chunk.decode(errors="replace")
        lines = text.split("\n")
        self.pending = lines.pop()
        return any(self.pattern.search(line) for line in [*lines, self.pending])
