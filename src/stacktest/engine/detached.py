"""A stack owned by a background runner (``stacktest up -d``): starting one, stopping one.

The runner is ``python -m stacktest up --quiet`` in a session of its own: the owner
of the run (lock, watchdog, supervision, fault proxies, control socket) until it is
asked to stop. :func:`start_detached` returns when the runner reports the stack
ready; :func:`stop_running` stops the stack of a run directory whoever owns it, and
reaps what a dead owner left. The CLI (``up -d``, ``down``, ``test``) and the pytest
plugin (``--stack-keep``) both use them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from stacktest.engine.control import request
from stacktest.engine.rundir import RunDir
from stacktest.errors import StackError, StackStateError
from stacktest.spec.model import StackSpec


def start_detached(
    spec: StackSpec, *, on_progress: Callable[[list[str]], None] | None = None
) -> dict[str, Any]:
    """Start the stack in a background runner (``stacktest up -d``); return its ready state.

    Raises StackStateError if a stack already runs from the run directory, StackError
    with the runner's own report if it fails to start.
    """
    run_dir = RunDir(spec.run_dir)
    if run_dir.owner_alive():
        state = run_dir.read_state() or {}
        raise StackStateError(
            f"a stack is already running from {spec.run_dir} (owner pid "
            f"{state.get('owner_pid', '?')})\n  hint: `stacktest status` to see it, "
            "`stacktest down` to stop it"
        )
    run_dir.create()
    runner_log = spec.run_dir / "runner.log"
    with open(runner_log, "wb") as log:
        runner = subprocess.Popen(
            [sys.executable, "-m", "stacktest", "up", "--quiet", *_file_args(spec)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    # the runner enforces every service's own start_timeout; this only guards against a
    # runner that hangs before it gets that far
    deadline = time.monotonic() + 60 + sum(s.start_timeout for s in spec.services.values())
    while True:
        state = run_dir.read_state() or {}
        mine = state.get("owner_pid") == runner.pid
        if mine and on_progress is not None:
            on_progress(
                [
                    name
                    for name, info in state.get("instances", {}).items()
                    if info.get("state") in ("pending", "starting", "started")
                ]
            )
        if mine and state.get("state") == "ready":
            return state
        code = runner.poll()
        if code is None and time.monotonic() > deadline:
            runner.kill()
            code = runner.wait()
        if code is not None or (mine and state.get("state") in ("failed", "stopped")):
            runner.wait()
            error = state.get("error") if mine else None
            if not error:
                error = runner_log.read_text(errors="replace").strip()
            raise StackError(error or f"the background runner exited with code {code}")
        time.sleep(0.02)


def _file_args(spec: StackSpec) -> list[str]:
    """The runner reads exactly the files this spec came from, with the same profiles."""
    args = []
    for file in spec.files or (spec.source,):
        args += ["--file", str(file)]
    for profile in spec.profiles:
        args += ["--profile", profile]
    if spec.remap_ports:
        args.append("--remap-ports")
    return args


def _wait_released(run_dir: RunDir, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not run_dir.owner_alive():
            return True
        time.sleep(0.02)
    return not run_dir.owner_alive()


def stop_running(run_dir: RunDir, timeout: float) -> str:
    """Stop the stack of a run directory, whoever owns it; reap if the owner is gone."""
    state = run_dir.read_state()
    if state is None:
        return f"nothing to stop: no stack has run from {run_dir.path}"
    count = len(state.get("instances", {}))
    if run_dir.owner_alive():
        owner = int(state.get("owner_pid") or 0)
        reply = request(state, {"op": "shutdown"}, timeout=5)
        if not (reply.get("ok") and _wait_released(run_dir, timeout)):
            if owner and owner != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(owner, signal.SIGTERM)
            if not _wait_released(run_dir, timeout) and owner and owner != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(owner, signal.SIGKILL)
                _wait_released(run_dir, 5)
    try:
        run_dir.acquire()
    except StackError:
        return "the stack's owner is still running and did not stop; try again or kill it"
    try:
        reaped = run_dir.reap()
    finally:
        run_dir.release()
    if reaped:
        return f"stopped; reaped leftovers: {', '.join(reaped)}"
    if state.get("state") == "stopped":
        return "the stack was already stopped"
    return f"stopped {count} service instance(s)"
