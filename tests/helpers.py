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
