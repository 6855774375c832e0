"""The control socket: how other processes ask a stack's owner to act.

One JSON request per connection (``{"op": "restart", "service": "db"}``), one JSON
reply (``{"ok": true, ...}``). The owner serves it on a private (0600) unix socket
in the temp directory (the run directory's path may be longer than a socket path
can be); ``state.json`` says where. :func:`request` is the client the CLI,
:class:`~stacktest.attach.AttachedStack` and the pytest plugin share.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def socket_path(run_dir: Path) -> Path:
    """Where a run directory's owner serves its socket: known from the run directory alone,
    so whoever reaps a killed owner removes it even if the owner died before saying where."""
    digest = hashlib.sha256(str(Path(run_dir).absolute()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"st-{digest}.ctl"


class ControlServer:
    """Serves one stack's control socket; each request goes to ``handler``."""

    def __init__(self, run_dir: Path, handler: Handler) -> None:
        self.path = socket_path(run_dir)
        self._handler = handler
        self._server: asyncio.Server | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            reply = await self._handler(json.loads(line or b"{}"))
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(OSError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            writer.close()


def request(state: dict[str, Any], req: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Send one request to the owner of a running stack (its ``state.json`` says where)
    and return its reply; a failure to reach it is a reply too (``ok`` false)."""
    path = state.get("control")
    if not path:
        return {"ok": False, "error": "the running stack has no control socket"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(json.dumps(req).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            return {"ok": False, "error": f"the stack's owner did not answer ({exc})"}
    try:
        reply: dict[str, Any] = json.loads(data or b"{}")
    except json.JSONDecodeError:
        return {"ok": False, "error": "garbled answer from the stack's owner"}
    return reply
