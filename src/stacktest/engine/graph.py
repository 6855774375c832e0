"""Order: starting along the dependency graph, and stopping against it.

Start: each service starts as soon as its own dependencies meet their condition
(``started``, ``healthy``, ``completed``); independent services start at once. The
first failure stops the start, and the error reported is its cause, not the
knock-on ``DependencyFailed`` of the services that waited for it.

Stop: a service stops once everything that depends on it has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from stacktest.engine.instances import Instances, Running
from stacktest.engine.supervise import Supervisor
from stacktest.errors import DependencyFailed, StackError
from stacktest.spec.model import Condition, StackSpec


async def start_graph(
    spec: StackSpec,
    instances: Instances,
    supervisor: Supervisor,
    startup_failure: asyncio.Future[StackError],
) -> None:
    """Every service up, in dependency order; raise the root cause of a failure.

    ``startup_failure`` is set by the supervisor when an instance that was already
    ready exits while the rest is still starting.
    """
    main = asyncio.ensure_future(_start_all(spec, instances, supervisor))
    waiters: list[asyncio.Future[Any]] = [main, startup_failure]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if startup_failure.done():
        if not main.done():
            main.cancel()
            with contextlib.suppress(BaseException):
                await main
        raise startup_failure.result()
    try:
        main.result()
    except BaseExceptionGroup as group:
        raise root_cause(group) from None


async def _start_all(spec: StackSpec, instances: Instances, supervisor: Supervisor) -> None:
    async def start_service(name: str) -> None:
        gates = instances.gates[name]
        try:
            for dep in spec.services[name].depends_on:
                await _wait_for(instances, name, dep.service, dep.condition)
            runs = instances.by_service[name]
            await asyncio.gather(*(supervisor.launch(run) for run in runs))
            gates.started.set()
            await asyncio.gather(*(supervisor.wait_ready(run) for run in runs))
            gates.healthy.set()
        except BaseException:
            gates.failed.set()
            raise

    async with asyncio.TaskGroup() as tg:
        for name in instances.by_service:
            tg.create_task(start_service(name))


async def _wait_for(
    instances: Instances, service: str, dependency: str, condition: Condition
) -> None:
    gates = instances.gates[dependency]
    wanted = gates.for_condition(condition)
    waits = [asyncio.ensure_future(wanted.wait()), asyncio.ensure_future(gates.failed.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
    if not wanted.is_set():
        raise DependencyFailed(service, dependency)


async def stop_graph(
    spec: StackSpec, instances: Instances, stop: Callable[[Running], Awaitable[Any]]
) -> None:
    """``stop`` every instance, each service after all of its dependents."""
    dependents: dict[str, set[str]] = {name: set() for name in instances.by_service}
    for name in instances.by_service:
        for dep in spec.services[name].depends_on:
            dependents[dep.service].add(name)

    async def stop_service(name: str) -> None:
        for other in dependents[name]:
            await instances.gates[other].stopped.wait()
        try:
            await asyncio.gather(*(stop(run) for run in instances.by_service[name]))
        finally:
            instances.gates[name].stopped.set()

    await asyncio.gather(*(stop_service(name) for name in instances.by_service))


def restart_order(spec: StackSpec, service: str) -> list[str]:
    """The services to restart after ``service`` was restarted: each that depends on it
    with ``restart = true``, then theirs, and so on; each once, a service after the
    ones it depends on."""
    chosen: set[str] = set()
    frontier = [service]
    while frontier:
        current = frontier.pop()
        for name, other in spec.services.items():
            wanted = any(d.service == current and d.restart for d in other.depends_on)
            if wanted and name not in chosen and name != service:
                chosen.add(name)
                frontier.append(name)
    return [name for name in spec.start_order() if name in chosen]


def root_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that caused a failed start, not the knock-on DependencyFailed ones."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, StackError) and not isinstance(exc, DependencyFailed):
            return exc
    return leaves[0] if leaves else group
