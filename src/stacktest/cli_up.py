"""``stacktest up`` in the foreground (and as the detached runner), ``down``, control calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from stacktest.engine.rundir import RunDir
from stacktest.engine.runtime import AsyncStack
from stacktest.errors import StackError, StackStateError
from stacktest.spec.model import StackSpec


def run_foreground(spec: StackSpec, *, quiet: bool) -> int:
    """Start the stack, keep it up until Ctrl-C / SIGTERM / `stacktest down`, stop it."""
    return asyncio.run(_foreground(spec, quiet=quiet))


async def _foreground(spec: StackSpec, *, quiet: bool) -> int:
    console = Console(highlight=False, force_terminal=False if quiet else None)
    waiting: set[str] = set()
    status = None if quiet else console.status("starting services...")

    def on_event(service: str, what: str, detail: dict[str, Any]) -> None:
        if what == "starting":
            waiting.add(service)
        elif what in ("ready", "exited", "stopped", "completed"):
            waiting.discard(service)
        if quiet:
            extra = " ".join(f"{k}={v}" for k, v in detail.items())
            print(f"{time.strftime('%H:%M:%S')} {service}: {what} {extra}".rstrip(), flush=True)
        elif status is not None:
            status.update(f"starting: {', '.join(sorted(waiting)) or '...'}")

    stack = AsyncStack(spec, on_event=on_event, stop_on_shutdown=False)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    phase = {"starting": True}

    def on_signal() -> None:
        if phase["starting"]:
            main_task.cancel()
        else:
            stack.shutdown_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    if status is not None:
        status.start()
    try:
        await stack.start()
    except asyncio.CancelledError:
        if status is not None:
            status.stop()
        console.print("interrupted: every service started so far was stopped")
        return 130
    except StackError as exc:
        if status is not None:
            status.stop()
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 1
    finally:
        phase["starting"] = False
    if status is not None:
        status.stop()
    from stacktest.cli import _status_table

    state = stack.run_dir.read_state() or {}
    took = (stack.ready_at or 0) - (stack.started_at or 0)
    if not quiet:
        if stack.reaped:
            console.print(f"reaped leftovers of a previous run: {', '.join(stack.reaped)}")
        console.print(_status_table(state))
        console.print(
            f"[green]ready[/] in {took:.2f}s. Ctrl-C to stop; "
            "`stacktest logs -f` to follow the output."
        )
    else:
        print(f"ready in {took:.2f}s", flush=True)
    await stack.shutdown_requested.wait()
    if not quiet:
        console.print("stopping...")
    await stack.stop()
    if not quiet:
        console.print("stopped")
    return 0


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
            [sys.executable, "-m", "stacktest", "up", "--quiet", "--file", str(spec.source)],
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


def control(state: dict[str, Any], request: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Send one request to the owner of a running stack and return its reply."""
    path = state.get("control")
    if not path:
        return {"ok": False, "error": "the running stack has no control socket"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
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
        reply = control(state, {"op": "shutdown"}, timeout=5)
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
