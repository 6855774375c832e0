"""Supervision: every launched process is followed to its end, and its exit judged.

An exit we caused (a stop, a fault) is nobody's concern. Otherwise: exit 0 of a
service without a health check is ``completed`` (a job; dependents waiting for
``completed`` go on); any other exit is a crash, counted. A crash while the stack
starts fails the start; once the stack is ready, ``restart = "on-failure"`` starts
it again after a backoff (0.1 s doubling to 5 s), at most ``max_restarts`` times;
``restart = "always"`` does the same for any exit, 0 included (Compose's ``always``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from stacktest.engine import teardown
from stacktest.engine.instances import Instances, Journal, Running, StackState
from stacktest.engine.launch import Launcher
from stacktest.engine.rundir import log_tail
from stacktest.errors import ServiceExited, StackError
from stacktest.spec.model import Condition, StackSpec


class Supervisor:
    """Brings instances up (launch, watch, wait ready) and judges their exits."""

    def __init__(
        self,
        spec: StackSpec,
        instances: Instances,
        launcher: Launcher,
        journal: Journal,
        stack_state: Callable[[], StackState],
        on_startup_crash: Callable[[StackError], None],
    ) -> None:
        self.spec = spec
        self.instances = instances
        self.launcher = launcher
        self.journal = journal
        self._stack_state = stack_state
        self._on_startup_crash = on_startup_crash

    async def launch(self, run: Running) -> None:
        """Start the process and follow it; return once it runs (not yet ready)."""
        await self.launcher.launch(run)
        assert run.exit_task is not None
        run.monitor = asyncio.ensure_future(self._watch(run, run.exit_task))

    async def wait_ready(self, run: Running) -> None:
        service = run.instance.spec.name
        await self.launcher.wait_ready(run, completion_awaited=self._completion_awaited(service))

    async def bring_up(self, run: Running) -> None:
        await self.launch(run)
        await self.wait_ready(run)

    async def restart(self, run: Running, *, fresh: bool = False) -> None:
        """Stop and start one instance, keeping its port and password; ``fresh``: its data
        is thrown away first."""
        self.journal.emit(run.name, "reset requested" if fresh else "restart requested")
        await teardown.stop_instance(run, self.journal)
        if fresh:
            await run.provider.discard_data(run.instance)
        run.restarts += 1
        await self.bring_up(run)

    def _completion_awaited(self, service: str) -> bool:
        return any(
            dep.service == service and dep.condition is Condition.COMPLETED
            for spec in self.spec.services.values()
            for dep in spec.depends_on
        )

    async def _watch(self, run: Running, exit_task: asyncio.Future[int]) -> None:
        """Follow one process to its end and decide what its exit means."""
        code = await exit_task
        if run.exit_task is not exit_task or run.stopping:
            return
        instance = run.instance
        run.exit_code = code
        name = instance.spec.name
        policy = instance.spec.restart
        if code == 0 and not instance.spec.has_health and policy != "always":
            run.state = "completed"
            self.journal.emit(run.name, "completed")
            if all(r.exit_code == 0 for r in self.instances.by_service[name]):
                self.instances.gates[name].completed.set()
            self.journal.write_state()
            return
        run.state = f"exited ({code})"
        run.crashes += 1
        self.journal.emit(run.name, "exited", code=code)
        self.journal.write_state()
        stack_state = self._stack_state()
        if stack_state is StackState.STARTING:
            if run.ready_at is None:
                return  # wait_ready reports this one itself
            self._on_startup_crash(
                ServiceExited(
                    run.name,
                    code,
                    log_tail=log_tail(instance.log_path),
                    log_path=instance.log_path,
                    hint="it was ready, then exited while the rest of the stack was starting",
                )
            )
            return
        wanted = policy == "always" or (policy == "on-failure" and code != 0)
        if stack_state is StackState.READY and wanted and run.restarts < instance.spec.max_restarts:
            await asyncio.sleep(min(0.1 * 2**run.restarts, 5.0))
            if run.stopping or self._stack_state() is not StackState.READY:
                return
            run.restarts += 1
            self.journal.emit(run.name, "restarting", attempt=run.restarts)
            try:
                await self.bring_up(run)
            except StackError as exc:
                run.state = "failed"
                self.journal.emit(run.name, "failed", error=str(exc))
                self.journal.write_state()
