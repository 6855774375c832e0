"""Running a stack: :class:`AsyncStack`, the one public face of the engine.

It owns a run directory for as long as the stack runs, and is a composition of
parts that each do one job:

- :mod:`~stacktest.engine.plan`: ports, passwords, proxies, rendered commands (pure);
- :mod:`~stacktest.engine.launch`: starting a process, waiting until it is ready;
- :mod:`~stacktest.engine.supervise`: what an exit means, restart policy;
- :mod:`~stacktest.engine.graph`: start along the dependency graph, stop against it;
- :mod:`~stacktest.engine.teardown`: ending instances, whole process groups;
- :mod:`~stacktest.engine.process_faults`: kill, pause, stop... and healing;
- :mod:`~stacktest.engine.control` and :mod:`~stacktest.engine.dispatch`: operations
  by name, from this process or another;
- :mod:`~stacktest.engine.instances`: the records all of them share.

Start: take the run directory's owner lock, reap what a dead owner left, start the
watchdog that reaps this run if this process dies without stopping it, plan, then
bring every service up along the graph. Stop goes in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from stacktest.engine import dispatch, graph, ports, procs, teardown
from stacktest.engine.control import ControlServer
from stacktest.engine.instances import (
    ALLOWED,
    EventListener,
    Instances,
    Journal,
    Running,
    StackState,
)
from stacktest.engine.launch import Launcher
from stacktest.engine.plan import Plan, plan_stack
from stacktest.engine.ports import allocate_port, release_ports
from stacktest.engine.process_faults import ProcessFaults
from stacktest.engine.rundir import RunDir
from stacktest.engine.supervise import Supervisor
from stacktest.engine.watchdog import Watchdog
from stacktest.errors import ServiceStartError, StackError, StackStateError
from stacktest.faults.plane import FaultPlane
from stacktest.observe.resources import ResourceSampler
from stacktest.spec.model import StackSpec

__all__ = ["AsyncStack", "Running", "StackState"]


class AsyncStack:
    """A stack run by this process, on the running event loop."""

    def __init__(
        self,
        spec: StackSpec,
        *,
        run_dir: Path | None = None,
        on_event: EventListener | None = None,
        stop_on_shutdown: bool = True,
    ) -> None:
        self.spec = spec
        self.run_dir = RunDir(run_dir or spec.run_dir)
        self.run_id = uuid.uuid4().hex
        self.digest = spec.digest()
        self.state = StackState.CREATED
        self.error: StackError | None = None
        self.reaped: list[str] = []
        self.started_at: float | None = None
        self.ready_at: float | None = None
        #: Set when `stacktest down` asks the owner to stop.
        self.shutdown_requested = asyncio.Event()
        self._stop_on_shutdown = stop_on_shutdown
        self._ports: list[int] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._plan: Plan | None = None
        self._startup_failure: asyncio.Future[StackError] | None = None
        self._instances = Instances()
        self._journal = Journal(self.run_dir, self._state_document, on_event)
        self._launcher = Launcher(self.run_id, self.run_dir, self._journal)
        self._supervisor = Supervisor(
            spec,
            self._instances,
            self._launcher,
            self._journal,
            stack_state=lambda: self.state,
            on_startup_crash=self._startup_crash,
        )
        self._process_faults = ProcessFaults(self._instances, self._supervisor, self._journal)
        self._control = ControlServer(self.run_dir.path, self._handle_control)
        #: One fault proxy per proxied dependency edge, and the Toxiproxy API over them.
        self.faults = FaultPlane(self._proxy_event)
        #: Reaps this run if this process dies without stopping it (engine/watchdog.py).
        self._watchdog = Watchdog(self.run_dir.path)
        #: Samples CPU and memory of the services into resources.jsonl while ready.
        self._sampler: asyncio.Future[None] | None = None

    @classmethod
    def from_file(cls, path: str | Path = "stack.toml", **kwargs: Any) -> AsyncStack:
        from stacktest.spec.load import load_stack

        return cls(load_stack(path), **kwargs)

    async def __aenter__(self) -> AsyncStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def instances(self, service: str | None = None) -> list[Running]:
        """A service's instances, one instance (``"worker.2"``), or all (KeyError if none)."""
        return self._instances.lookup(service)

    def check(self, operation: str) -> None:
        """Raise StackStateError unless ``operation`` is allowed in the current state."""
        if self.state not in ALLOWED[operation]:
            allowed = ", ".join(sorted(s.value for s in ALLOWED[operation]))
            raise StackStateError(
                f"cannot {operation} the stack while it is {self.state.value} "
                f"(allowed when: {allowed})"
            )

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Bring every service up, healthy; on failure stop everything and raise."""
        self.check("start")
        self.state = StackState.STARTING
        self.started_at = time.time()
        self.run_dir.acquire()
        try:
            self.reaped = await asyncio.to_thread(self.run_dir.reap)
            self._watchdog.start()  # from here on, the services end with this process
            self.run_dir.reset_for_new_run()
            for volume in self.spec.volumes:
                self.run_dir.volume_dir(volume).mkdir(parents=True, exist_ok=True, mode=0o700)
            for name in self.spec.tmpfs:
                self.run_dir.tmpfs_dir(name).mkdir(parents=True, exist_ok=True, mode=0o700)
            self._plan = plan_stack(self.spec, self.run_dir, self.run_id, self._allocate_port)
            self._check_pinned_ports()
            for service, planned in self._plan.services.items():
                provider = self._plan.providers[service]
                self._instances.add(service, [Running(i, provider) for i in planned])
            for edge in self._plan.edges.values():
                self.faults.add_edge(
                    edge.client, edge.server, edge.listen, edge.upstream, edge.upstream_unix
                )
            for run in self._instances:
                run.private_dir = run.instance.scratch.get("private_dir")
            self._journal.write_state()
            await self._control.start()
            await self.faults.start(self._plan.api_port, self._plan.api_fallback_port)
            self._startup_failure = asyncio.get_running_loop().create_future()
            await graph.start_graph(
                self.spec, self._instances, self._supervisor, self._startup_failure
            )
        except BaseException as exc:
            self.error = exc if isinstance(exc, StackError) else None
            await self._teardown(StackState.FAILED)
            raise
        self._sampler = asyncio.ensure_future(
            ResourceSampler(self.run_dir.resources_file).run(self._instances.live_groups)
        )
        self.state = StackState.READY
        self.ready_at = time.time()
        self._journal.emit("stack", "ready", seconds=round(self.ready_at - self.started_at, 3))
        self._journal.write_state()

    async def stop(self) -> None:
        """Stop every service (reverse dependency order) and release the run directory."""
        if self.state in (StackState.CREATED, StackState.STOPPED):
            return
        if self.state is StackState.FAILED and not len(self._instances):
            return
        await self._teardown(StackState.STOPPED)

    async def _teardown(self, final: StackState) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(BaseException):
                await self._sampler
            self._sampler = None
        self.state = StackState.STOPPING
        self._journal.write_state()
        try:
            await graph.stop_graph(
                self.spec, self._instances, lambda run: teardown.stop_instance(run, self._journal)
            )
        finally:
            with contextlib.suppress(Exception):
                await self.faults.stop()
            for run in self._instances:
                with contextlib.suppress(Exception):
                    await run.provider.cleanup(run.instance)
            await asyncio.to_thread(procs.kill_tagged, **{procs.TAG_RUN_ID: self.run_id})
            await self._control.close()
            release_ports(self._ports)
            self.state = final
            self._journal.emit("stack", final.value)
            self._journal.write_state()
            await asyncio.to_thread(self._watchdog.stand_down)
            self.run_dir.release()

    def _check_pinned_ports(self) -> None:
        """A pinned port (``port = N``, a compose file's published port) that something
        else holds is one clear error, before anything starts."""
        if self.spec.remap_ports:
            return
        for name, service in self.spec.services.items():
            if service.port is None:
                continue
            holder = ports.in_use(service.port)
            if holder is not None:
                raise ServiceStartError(
                    name,
                    f"cannot listen on 127.0.0.1:{service.port} (its `port`, or the port the "
                    f"compose file publishes): it is in use by {holder}",
                    hint="stop that process, or start with --remap-ports (every pinned port "
                    "moved to a free one; `stacktest status` shows where)",
                )

    def _allocate_port(self) -> int:
        port = allocate_port()
        self._ports.append(port)
        return port

    def _startup_crash(self, error: StackError) -> None:
        if self._startup_failure is not None and not self._startup_failure.done():
            self._startup_failure.set_result(error)

    # -- operations on services ---------------------------------------------------------
    async def restart(self, service: str) -> None:
        """Stop and start a service's instances, keeping their data and ports; then the
        services that depend on it with ``restart = true`` (Compose's rule)."""
        self.check("restart")
        runs = self.instances(service)
        await asyncio.gather(*(self._supervisor.restart(run) for run in runs))
        await self._restart_dependents(service)

    async def reset(self, service: str) -> None:
        """Restart a service's instances with fresh state: their data is thrown away.

        Ports, passwords and URLs stay the same, so clients need nothing new. For
        Postgres the new data directory is a ready copy of the initialised one. The
        services that depend on it with ``restart = true`` are restarted after it.
        """
        self.check("reset")
        runs = self.instances(service)
        await asyncio.gather(*(self._supervisor.restart(run, fresh=True) for run in runs))
        await self._restart_dependents(service)

    async def _restart_dependents(self, service: str) -> None:
        """Each service with ``depends_on.SERVICE.restart = true``, once, in start order
        (one that depends on another restarted here goes after it)."""
        for name in graph.restart_order(self.spec, service):
            runs = self.instances(name)
            await asyncio.gather(*(self._supervisor.restart(run) for run in runs))

    async def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL) to each instance's process group; it stays down until
        start_service() or heal(). A kill is not a crash: no restart policy applies."""
        self.check("fault")
        await self._process_faults.kill(service, sig)

    async def terminate(self, service: str) -> None:
        """SIGTERM, then SIGKILL after the service's stop_timeout; stays down like kill."""
        await self.kill(service, signal.SIGTERM)

    async def stop_service(self, service: str) -> None:
        """Stop gracefully (its stop_signal, then SIGKILL after stop_timeout)."""
        self.check("fault")
        await self._process_faults.stop(service)

    async def start_service(self, service: str) -> None:
        """Start the instances that are not running, and wait until they are ready."""
        self.check("fault")
        await self._process_faults.start(service)

    async def pause(self, service: str) -> None:
        """SIGSTOP the process groups: the service holds its connections but answers nothing."""
        self.check("fault")
        await self._process_faults.pause(service)

    async def resume(self, service: str) -> None:
        self.check("fault")
        await self._process_faults.resume(service)

    async def heal(self) -> list[str]:
        """Undo every fault: toxics removed, links up, paused resumed, stopped started."""
        healed: list[str] = (
            await self.faults.call(self.faults.proxies.heal) if self.faults.running else []
        )
        healed += await self._process_faults.heal()
        if healed:  # each undo above already wrote the state; nothing to heal, nothing written
            self._journal.emit("stack", "fault: healed", undone=healed)
        return healed

    async def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out one operation by name (``{"op": "kill", "service": "worker"}``);
        never raises (engine/dispatch.py)."""
        return await dispatch.apply(self, request)

    # -- what is going on ---------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                "name": run.name,
                "service": run.instance.spec.name,
                "kind": run.instance.spec.use,
                "state": run.state,
                "pid": run.pid,
                "port": run.instance.port,
                "url": run.instance.fields.get("url"),
                "uptime": round(now - run.started_at, 3) if run.started_at else None,
                "restarts": run.restarts,
                "exit_code": run.exit_code,
            }
            for run in self._instances
        ]

    def fault_state(self) -> dict[str, Any]:
        """The proxies (toxics, links) and the processes a fault paused or stopped."""
        return {
            "proxies": self.faults.snapshot,
            "paused": self._process_faults.paused,
            "stopped": sorted(self._process_faults.held_down),
        }

    def _state_document(self) -> dict[str, Any]:
        """What ``state.json`` says: enough for another process to attach, or to reap."""
        return {
            "run_id": self.run_id,
            "stack": self.spec.name,
            "source": str(self.spec.source),
            "digest": self.digest,
            "owner_pid": os.getpid(),
            "owner_argv": sys.argv,
            "state": self.state.value,
            "error": str(self.error) if self.error else None,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "control": str(self._control.path) if self._control.serving else None,
            "reaped": self.reaped,
            "proxies": self.faults.snapshot,
            "toxiproxy_api": self.faults.toxiproxy.url,
            "instances": {run.name: _instance_record(run) for run in self._instances},
        }

    async def _handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") != "shutdown":
            return await self.apply(request)
        self.shutdown_requested.set()
        if self._stop_on_shutdown:
            task = asyncio.ensure_future(self.stop())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return {"ok": True}

    def _proxy_event(self, what: str, detail: dict[str, Any]) -> None:
        edge = str(detail.pop("edge", "proxy"))
        self._journal.emit(edge, f"fault: {what}", **detail)
        self._journal.write_state()


def _instance_record(run: Running) -> dict[str, Any]:
    inst = run.instance
    return {
        "service": inst.spec.name,
        "kind": inst.spec.use,
        "state": run.state,
        "pid": run.pid,
        "pgid": run.pid,
        "start_ticks": run.start_ticks,
        "port": inst.port,
        "fields": inst.fields,
        "log": str(inst.log_path),
        "started_at": run.started_at,
        "ready_at": run.ready_at,
        "restarts": run.restarts,
        "crashes": run.crashes,
        "exit_code": run.exit_code,
        "private_dir": run.private_dir,
        "unix_socket": inst.scratch.get("unix_socket"),
        "server": inst.scratch.get("server"),  # the program and version that runs
        "container": inst.scratch.get("container"),  # its name, image id and digests
        "client_env": run.provider.client_env(inst) if inst.fields else {},
        "client_args": run.provider.client_args(inst),
        "client_bin_dirs": [str(p) for p in run.provider.client_bin_dirs(inst)],
    }
