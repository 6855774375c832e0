"""The records of a running stack: its state, each instance's process and history.

Every part of the engine (launch, supervise, graph, teardown, process faults) reads
and updates these records; none of them keeps a copy. :class:`Journal` is how a part
says what it did: an event in ``events.jsonl`` (and to the owner's listener), and a
fresh ``state.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stacktest.engine.rundir import RunDir
from stacktest.providers.base import Instance, Provider
from stacktest.spec.model import Condition


class StackState(enum.StrEnum):
    CREATED = "created"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


#: In which stack states each public operation is allowed.
ALLOWED = {
    "start": {StackState.CREATED},
    "stop": {StackState.STARTING, StackState.READY, StackState.FAILED, StackState.STOPPING},
    "restart": {StackState.READY},
    "reset": {StackState.READY},
    "fault": {StackState.READY},
}


@dataclass
class Running:
    """An instance at run time: its process and what has happened to it."""

    instance: Instance
    provider: Provider
    state: str = "pending"
    proc: asyncio.subprocess.Process | None = None
    exit_task: asyncio.Future[int] | None = None
    monitor: asyncio.Task[None] | None = None
    started_at: float | None = None
    ready_at: float | None = None
    exit_code: int | None = None
    restarts: int = 0
    #: Exits nobody asked for (crashes, kills from outside) since the stack started.
    crashes: int = 0
    #: Set before an exit we cause (stop, kill): it is not a crash, no restart applies.
    stopping: bool = False
    private_dir: str | None = None
    start_ticks: int | None = None

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        """Its process was started and has not exited (it may be paused)."""
        return self.proc is not None and self.exit_task is not None and not self.exit_task.done()


@dataclass
class Gates:
    """What a service's dependents wait for (``depends_on`` conditions), and its end."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    healthy: asyncio.Event = field(default_factory=asyncio.Event)
    completed: asyncio.Event = field(default_factory=asyncio.Event)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def for_condition(self, condition: Condition) -> asyncio.Event:
        return {
            Condition.STARTED: self.started,
            Condition.HEALTHY: self.healthy,
            Condition.COMPLETED: self.completed,
        }[condition]


class Instances:
    """Every instance of the stack, by instance name and by service, in start order."""

    def __init__(self) -> None:
        self.by_name: dict[str, Running] = {}
        self.by_service: dict[str, list[Running]] = {}
        self.gates: dict[str, Gates] = {}

    def add(self, service: str, runs: list[Running]) -> None:
        self.by_service[service] = runs
        self.gates[service] = Gates()
        for run in runs:
            self.by_name[run.name] = run

    def __iter__(self) -> Iterator[Running]:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    def lookup(self, service: str | None = None) -> list[Running]:
        """A service's instances (``"worker"``), one instance (``"worker.2"``), or all."""
        if service is None:
            return list(self.by_name.values())
        if service in self.by_service:
            return list(self.by_service[service])
        if service in self.by_name:
            return [self.by_name[service]]
        known = ", ".join(self.by_service) or "none"
        raise KeyError(f"no service {service!r} in this stack (services: {known})")

    def live_groups(self) -> dict[str, int]:
        """``{instance: process group}`` of the instances running now (for the sampler)."""
        return {
            run.name: run.provider.resource_root(run.instance, run.proc.pid)
            for run in self
            if run.alive and run.proc is not None
        }


EventListener = Callable[[str, str, dict[str, Any]], None]


class Journal:
    """Where the engine's parts record what happened: events and the state file."""

    def __init__(
        self,
        run_dir: RunDir,
        state: Callable[[], dict[str, Any]],
        listener: EventListener | None = None,
    ) -> None:
        self._run_dir = run_dir
        self._state = state
        self._listener = listener

    def emit(self, who: str, what: str, **detail: Any) -> None:
        """One event: ``who`` is an instance, an edge (``api->db``) or ``stack``."""
        with contextlib.suppress(OSError):
            self._run_dir.event(who, what, **detail)
        if self._listener is not None:
            self._listener(who, what, detail)

    def write_state(self) -> None:
        """Rewrite ``state.json`` from the records as they are now."""
        with contextlib.suppress(OSError):
            self._run_dir.write_state(self._state())
