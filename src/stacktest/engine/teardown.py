"""Ending instances: a graceful stop, a signal from a fault, and waiting until the whole
process group is gone.

Every end marks the instance as ``stopping`` before the first signal, so the
supervisor knows the exit was asked for (no crash, no restart). Every end waits for
the group, not just its leader: a server started again at once must not meet its
predecessor's children (Postgres refuses to start while a killed postmaster's
backends still hold its shared memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from stacktest.engine import procs
from stacktest.engine.instances import Journal, Running


async def stop_instance(run: Running, journal: Journal) -> None:
    """Its ``stop_signal``, SIGKILL after its ``stop_timeout``; state ``stopped``."""
    run.stopping = True
    if run.proc is None or run.exit_task is None:
        run.state = "stopped" if run.state != "pending" else run.state
        return
    if not run.exit_task.done():
        run.state = "stopping"
        journal.write_state()  # readers of state.json must not take the coming exit for a crash
    await _end_group(run, run.instance.spec.stop_signal, journal)
    run.state = "stopped"
    journal.emit(run.name, "stopped", code=run.exit_code)


async def signal_instance(run: Running, sig: int, journal: Journal) -> bool:
    """A fault: ``sig`` to a running instance (SIGKILL after its stop_timeout if it
    outlives a softer signal). False if it was not running."""
    if not run.alive:
        return False
    run.stopping = True  # an exit we caused: not a crash, no restart policy
    run.state = "stopping"
    journal.write_state()
    journal.emit(run.name, f"fault: {signal.Signals(sig).name}")
    await _end_group(run, sig, journal)
    run.state = "killed" if sig == signal.SIGKILL else "stopped"
    journal.write_state()
    return True


async def _end_group(run: Running, sig: int, journal: Journal) -> None:
    proc, exit_task = run.proc, run.exit_task
    assert proc is not None and exit_task is not None
    if not exit_task.done():
        with contextlib.suppress(Exception):  # (the engine's side of a container; best effort)
            await run.provider.on_signal(run.instance, signal.SIGCONT)
            await run.provider.on_signal(run.instance, sig)
        procs.signal_group(proc.pid, sig)
        procs.signal_group(proc.pid, signal.SIGCONT)  # a paused process must run to stop
        timeout = run.instance.spec.stop_timeout
        await asyncio.wait([exit_task], timeout=timeout)
        if not exit_task.done():
            journal.emit(run.name, "killed", after=timeout)
            procs.signal_group(proc.pid, signal.SIGKILL)
            await exit_task
    procs.signal_group(proc.pid, signal.SIGKILL)  # members of the group that outlived it
    await group_gone(proc.pid)
    run.exit_code = exit_task.result()


async def group_gone(pgid: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until every member of a SIGKILLed group is gone."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(procs.group_alive, pgid) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
