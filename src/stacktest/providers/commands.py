"""Running a server's tool to completion (initdb, an init script, a client): its output
captured, and its whole process group killed if the wait is cancelled (Ctrl-C, a start
deadline), so nothing it started is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path


async def run_captured(
    argv: list[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
    user: str | None = None, cwd: Path | None = None, stderr: bool = True,
) -> tuple[int, str]:  # fmt: skip
    """``(exit code, stdout and stderr together)``; ``env`` replaces the environment;
    ``stderr=False``: stdout only (the output is data, the warnings are dropped)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if stderr else asyncio.subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        user=user,
        start_new_session=True,
    )
    try:
        out, _ = await proc.communicate(stdin)
    except BaseException:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")
