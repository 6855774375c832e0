"""Faults on processes: kill, terminate, stop, start, pause, resume, and undoing them.

A killed, terminated or stopped instance is *held down*: it stays down (no restart
policy applies, the plugin does not blame the test) until it is started again or the
stack is healed. A paused instance is SIGSTOPped: it keeps its sockets and answers
nothing. The stack's state checks are the caller's (``AsyncStack``); this module acts.
"""

from __future__ import annotations

import asyncio
import signal

from stacktest.engine import procs, teardown
from stacktest.engine.instances import Instances, Journal, Running
from stacktest.engine.supervise import Supervisor


class ProcessFaults:
    def __init__(self, instances: Instances, supervisor: Supervisor, journal: Journal) -> None:
        self.instances = instances
        self.supervisor = supervisor
        self.journal = journal
        #: Instances a fault stopped or killed, so heal() knows what to bring back.
        self.held_down: set[str] = set()

    @property
    def paused(self) -> list[str]:
        return sorted(run.name for run in self.instances if run.state == "paused")

    async def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        """``sig`` to each instance's process group; SIGKILL after stop_timeout."""

        async def halt(run: Running) -> None:
            self.held_down.add(run.name)
            await teardown.signal_instance(run, sig, self.journal)

        await asyncio.gather(*(halt(run) for run in self._alive(service)))

    async def stop(self, service: str) -> None:
        """Stop gracefully (its stop_signal, then SIGKILL after stop_timeout)."""
        runs = self.instances.lookup(service)
        await asyncio.gather(*(teardown.stop_instance(run, self.journal) for run in runs))
        self.held_down.update(run.name for run in runs)
        for run in runs:
            self.journal.emit(run.name, "fault: stopped")
        self.journal.write_state()

    async def start(self, service: str) -> None:
        """Start the instances that are not running, and wait until they are ready."""

        async def start(run: Running) -> None:
            await self.supervisor.bring_up(run)
            self.held_down.discard(run.name)

        runs = [run for run in self.instances.lookup(service) if not run.alive]
        await asyncio.gather(*(start(run) for run in runs))

    async def pause(self, service: str) -> None:
        for run in self._alive(service):
            assert run.proc is not None
            await run.provider.on_signal(run.instance, signal.SIGSTOP)
            procs.signal_group(run.proc.pid, signal.SIGSTOP)
            run.state = "paused"
            self.journal.emit(run.name, "fault: paused")
        self.journal.write_state()

    async def resume(self, service: str) -> None:
        for run in self.instances.lookup(service):
            if run.state == "paused" and run.proc is not None:
                await run.provider.on_signal(run.instance, signal.SIGCONT)
                procs.signal_group(run.proc.pid, signal.SIGCONT)
                run.state = "ready" if run.instance.spec.has_health else "running"
                self.journal.emit(run.name, "fault: resumed")
        self.journal.write_state()

    async def heal(self) -> list[str]:
        """Resume what is paused, start what a fault stopped; what was undone, in words."""
        healed = []
        for name in self.paused:
            await self.resume(name)
            healed.append(f"{name} resumed")
        for name in sorted(self.held_down):
            await self.start(name)
            healed.append(f"{name} started")
        return healed

    def _alive(self, service: str) -> list[Running]:
        return [run for run in self.instances.lookup(service) if run.alive]
