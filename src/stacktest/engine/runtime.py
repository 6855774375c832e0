"""Running a stack: plan, start along the dependency graph, supervise, stop.

:class:`AsyncStack` owns a run directory for as long as the stack runs. Start:

1. take the run directory's owner lock, reap what a dead owner left, and start the
   watchdog that reaps this run if this process dies without stopping it;
2. plan every instance: ports, fields (``url``, ``password``...), rendered
   ``command`` / ``env`` / ``cwd`` / ``ready``;
3. start each service as soon as its own dependencies meet their condition,
   each instance in its own session, tagged, output to its log file;
4. poll readiness from 5 ms (backing off to 100 ms) under the service's deadline,
   failing at once if the process exits first.

Stop goes in reverse: a service stops once everything that depends on it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacktest.engine import procs
from stacktest.engine.ports import allocate_port, release_ports
from stacktest.engine.rundir import RunDir
from stacktest.engine.watchdog import Watchdog
from stacktest.errors import (
    DependencyFailed,
    ServiceExited,
    ServiceStartError,
    ServiceStartTimeout,
    StackError,
    StackStateError,
)
from stacktest.faults.plane import FaultPlane
from stacktest.faults.toxics import Toxic
from stacktest.observe.resources import ResourceSampler
from stacktest.providers import provider_for
from stacktest.providers.base import Instance, Provider
from stacktest.spec.model import Condition, ReadyCheck, StackSpec
from stacktest.spec.template import Ref, render

FIRST_POLL = 0.005
MAX_POLL = 0.1
LOG_TAIL_LINES = 20


class StackState(enum.StrEnum):
    CREATED = "created"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


_ALLOWED = {
    "start": {StackState.CREATED},
    "stop": {StackState.STARTING, StackState.READY, StackState.FAILED, StackState.STOPPING},
    "restart": {StackState.READY},
    "reset": {StackState.READY},
    "fault": {StackState.READY},
}


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").rstrip("\n").splitlines()[-lines:]


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
    stopping: bool = False
    private_dir: str | None = None
    start_ticks: int | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


@dataclass
class _Gates:
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


EventListener = Callable[[str, str, dict[str, Any]], None]


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
        self._on_event = on_event
        self._running: dict[str, Running] = {}
        self._by_service: dict[str, list[Running]] = {}
        self._gates: dict[str, _Gates] = {}
        self._startup_failure: asyncio.Future[StackError] | None = None
        self._control: asyncio.Server | None = None
        self._control_path: Path | None = None
        self._ports: list[int] = []
        #: Set when `stacktest down` asks the owner to stop.
        self.shutdown_requested = asyncio.Event()
        self._stop_on_shutdown = stop_on_shutdown
        self._background: set[asyncio.Task[Any]] = set()
        #: One fault proxy per proxied dependency edge, and the Toxiproxy API over them.
        self.faults = FaultPlane(self._proxy_event)
        #: Reaps this run if this process dies without stopping it (engine/watchdog.py).
        self._watchdog = Watchdog(self.run_dir.path)
        #: Samples CPU and memory of the services into resources.jsonl while ready.
        self._sampler: asyncio.Future[None] | None = None
        #: Instances a fault stopped or paused, so heal() knows what to bring back.
        self._stopped_by_fault: set[str] = set()
        self._paused: set[str] = set()
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] | None = None

    @classmethod
    def from_file(cls, path: str | Path = "stack.toml", **kwargs: Any) -> AsyncStack:
        from stacktest.spec.load import load_stack

        return cls(load_stack(path), **kwargs)

    # -- public API ---------------------------------------------------------------------
    async def __aenter__(self) -> AsyncStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def instances(self, service: str | None = None) -> list[Running]:
        if service is None:
            return list(self._running.values())
        if service in self._by_service:
            return list(self._by_service[service])
        if service in self._running:
            return [self._running[service]]
        known = ", ".join(self._by_service) or "none"
        raise KeyError(f"no service {service!r} in this stack (services: {known})")

    def _check(self, operation: str) -> None:
        if self.state not in _ALLOWED[operation]:
            allowed = ", ".join(sorted(s.value for s in _ALLOWED[operation]))
            raise StackStateError(
                f"cannot {operation} the stack while it is {self.state.value} "
                f"(allowed when: {allowed})"
            )

    async def start(self) -> None:
        """Bring every service up, healthy; on failure stop everything and raise."""
        self._check("start")
        self.state = StackState.STARTING
        self.started_at = time.time()
        self.run_dir.acquire()
        try:
            self.reaped = await asyncio.to_thread(self.run_dir.reap)
            self._watchdog.start()  # from here on, the services end with this process
            self.run_dir.reset_for_new_run()
            self._plan()
            self._write_state()
            await self._serve_control()
            api_port = allocate_port()
            self._ports.append(api_port)
            await self.faults.start(api_port)
            await self._start_all()
        except BaseException as exc:
            error = exc if isinstance(exc, StackError) else None
            self.error = error
            await self._teardown(StackState.FAILED)
            raise
        self._sampler = asyncio.ensure_future(
            ResourceSampler(self.run_dir.resources_file).run(self._live_groups)
        )
        self.state = StackState.READY
        self.ready_at = time.time()
        self._emit("stack", "ready", seconds=round(self.ready_at - self.started_at, 3))
        self._write_state()

    async def stop(self) -> None:
        """Stop every service (reverse dependency order) and release the run directory."""
        if self.state in (StackState.CREATED, StackState.STOPPED):
            return
        if self.state is StackState.FAILED and not self._running:
            return
        await self._teardown(StackState.STOPPED)

    async def restart(self, service: str) -> None:
        """Stop and start a service's instances, keeping their data and ports."""
        self._check("restart")
        targets = self.instances(service)
        await asyncio.gather(*(self._restart_instance(r) for r in targets))

    async def reset(self, service: str) -> None:
        """Restart a service's instances with fresh state: their data is thrown away.

        Ports, passwords and URLs stay the same, so clients need nothing new. For
        Postgres the new data directory is a ready copy of the initialised one.
        """
        self._check("reset")
        targets = self.instances(service)
        await asyncio.gather(*(self._restart_instance(r, fresh=True) for r in targets))

    def status(self) -> list[dict[str, Any]]:
        now = time.time()
        rows = []
        for name, run in self._running.items():
            rows.append(
                {
                    "name": name,
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
            )
        return rows

    # -- planning -----------------------------------------------------------------------
    def _plan(self) -> None:
        order = self.spec.start_order()
        for name in order:
            spec = self.spec.services[name]
            provider = provider_for(spec.use)
            runs = []
            for replica, instance_name in enumerate(spec.instance_names(), start=1):
                port = allocate_port()
                extra = {label: allocate_port() for label in provider.extra_ports}
                self._ports += [port, *extra.values()]
                instance = Instance(
                    name=instance_name,
                    spec=spec,
                    run_id=self.run_id,
                    replica=replica,
                    port=port,
                    data_dir=self.run_dir.data_dir(instance_name),
                    run_dir=self.run_dir.path,
                    log_path=self.run_dir.log_path(instance_name),
                    extra_ports=extra,
                )
                instance.fields.update(
                    name=instance_name,
                    run_dir=str(self.run_dir.path),
                    data_dir=str(instance.data_dir),
                )
                provider.plan(instance)
                run = Running(instance, provider)
                run.private_dir = instance.scratch.get("private_dir")
                self._running[instance_name] = run
                runs.append(run)
            self._by_service[name] = runs
            self._gates[name] = _Gates()
        for client, server in self.spec.proxied_edges():
            target = self._by_service[server][0].instance
            port = allocate_port()
            self._ports.append(port)
            self.faults.add_edge(
                client,
                server,
                (target.host, port),
                (target.host, target.port),
                self._by_service[server][0].provider.unix_socket(target),
            )
        for run in self._running.values():
            self._render(run.instance)

    def _render(self, instance: Instance) -> None:
        spec = instance.spec

        def resolve(ref: Ref) -> str:
            if ref.service is None:
                return instance.fields[ref.field]
            target = self._by_service[ref.service][0].instance
            # through the edge's fault proxy, when there is one
            return self.faults.proxies.fields_for(spec.name, ref.service, target.fields)[ref.field]

        base = self.spec.base_dir
        instance.env = {key: render(value, resolve) for key, value in spec.env.items()}
        if spec.is_process:
            instance.command = [render(arg, resolve) for arg in spec.command]
            cwd = Path(render(spec.cwd, resolve)) if spec.cwd else base
            instance.cwd = cwd if cwd.is_absolute() else base / cwd
            if spec.ready is not None:
                ready = spec.ready
                instance.ready = ReadyCheck(
                    ready.kind,
                    target=render(ready.target, resolve) if ready.kind != "log" else ready.target,
                    argv=tuple(render(a, resolve) for a in ready.argv),
                    shell=ready.shell,
                    status=ready.status,
                    attempt_timeout=ready.attempt_timeout,
                )

    # -- starting -----------------------------------------------------------------------
    async def _start_all(self) -> None:
        loop = asyncio.get_running_loop()
        self._startup_failure = loop.create_future()
        main = asyncio.ensure_future(self._start_graph())
        waiters: list[asyncio.Future[Any]] = [main, self._startup_failure]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if self._startup_failure.done() and not main.done():
            main.cancel()
            with contextlib.suppress(BaseException):
                await main
            raise self._startup_failure.result()
        if self._startup_failure.done():
            raise self._startup_failure.result()
        try:
            main.result()
        except BaseExceptionGroup as group:
            raise _root_cause(group) from None

    async def _start_graph(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for name in self._by_service:
                tg.create_task(self._start_service(name))

    async def _start_service(self, name: str) -> None:
        spec = self.spec.services[name]
        gates = self._gates[name]
        try:
            for dep in spec.depends_on:
                await self._wait_for(name, dep.service, dep.condition)
            runs = self._by_service[name]
            await asyncio.gather(*(self._launch(run) for run in runs))
            gates.started.set()
            await asyncio.gather(*(self._wait_ready(run) for run in runs))
            gates.healthy.set()
        except BaseException:
            gates.failed.set()
            raise

    async def _wait_for(self, service: str, dependency: str, condition: Condition) -> None:
        gates = self._gates[dependency]
        wanted = gates.for_condition(condition)
        waits = [asyncio.ensure_future(wanted.wait()), asyncio.ensure_future(gates.failed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if not wanted.is_set():
            raise DependencyFailed(service, dependency)

    async def _launch(self, run: Running) -> None:
        instance = run.instance
        run.state = "starting"
        run.stopping = False
        self._emit(instance.name, "starting")
        launch = await run.provider.prepare(instance)
        env = {
            **launch.env,
            procs.TAG_RUN_ID: self.run_id,
            procs.TAG_RUN_DIR: str(self.run_dir.path),
            procs.TAG_SERVICE: instance.name,
        }
        instance.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(instance.log_path, "ab") as log:
            if run.restarts:
                log.write(f"--- stacktest: restart {run.restarts} ---\n".encode())
                log.flush()
            try:
                run.proc = await asyncio.create_subprocess_exec(
                    *launch.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=launch.cwd,
                    env=env,
                    start_new_session=True,
                    user=launch.user,
                )
            except OSError as exc:
                raise ServiceStartError(
                    instance.name,
                    f"could not be started: {exc}",
                    hint=f"check services.{instance.spec.name}.command and cwd",
                ) from None
        run.started_at = time.time()
        run.start_ticks = procs.start_ticks(run.proc.pid)
        run.exit_code = None
        run.exit_task = asyncio.ensure_future(run.proc.wait())
        run.state = "started"
        self._emit(instance.name, "started", pid=run.proc.pid)
        self._write_state()
        run.monitor = asyncio.ensure_future(self._watch(run, run.exit_task))

    def _waited_for(self, run: Running) -> str:
        check = run.instance.ready
        if not run.instance.spec.is_process:
            return {
                "postgres": "a query (SELECT 1) on its unix socket",
                "valkey": "PING answered with PONG",
                "redis": "PING answered with PONG",
                "nats": "its monitoring endpoint /healthz to answer 200",
            }.get(run.instance.spec.use, "its readiness check")
        if check is None:
            return "the process to start"
        if check.kind == "http":
            return f"GET {check.target} to answer {check.status}"
        if check.kind == "tcp":
            return f"a TCP connection to {check.target or run.instance.port}"
        if check.kind == "log":
            return f"a log line matching {check.target!r}"
        return f"command {' '.join(check.argv)!r} to exit 0"

    async def _wait_ready(self, run: Running) -> None:
        instance = run.instance
        assert run.exit_task is not None
        timeout = instance.spec.start_timeout
        deadline = time.monotonic() + timeout
        interval = FIRST_POLL
        last_error: str | None = None
        while True:
            if run.exit_task.done():
                code = run.exit_task.result()
                if code == 0 and self._completion_awaited(instance.spec.name):
                    break
                raise ServiceExited(
                    instance.name,
                    code,
                    waited_for=self._waited_for(run),
                    log_tail=log_tail(instance.log_path),
                    log_path=instance.log_path,
                    hint=_exit_hint(instance),
                )
            remaining = deadline - time.monotonic()
            try:
                ok = await asyncio.wait_for(run.provider.probe(instance), max(remaining, 0.001))
            except (TimeoutError, OSError, StackError) as exc:
                ok, last_error = False, f"{type(exc).__name__}: {exc}".strip()
            except Exception as exc:  # a client library's own error (psycopg ...)
                ok, last_error = False, f"{type(exc).__name__}: {exc}".strip()
            if ok and not run.exit_task.done():
                break  # (nothing awaits from here to ready_at: _watch sees one or the other)
            if ok:
                continue  # it exited while the probe ran: judged at the top, not called ready
            if time.monotonic() >= deadline:
                hint = (
                    f"raise services.{instance.spec.name}.start_timeout,"
                    " or check its ready settings"
                )
                if last_error:
                    hint = f"last attempt said: {last_error.splitlines()[0]}\n  hint: {hint}"
                raise ServiceStartTimeout(
                    instance.name,
                    timeout,
                    waited_for=self._waited_for(run),
                    log_tail=log_tail(instance.log_path),
                    log_path=instance.log_path,
                    hint=hint,
                )
            await asyncio.wait([run.exit_task], timeout=min(interval, max(remaining, 0)))
            interval = min(interval * 1.5, MAX_POLL)
        run.ready_at = time.time()
        if run.exit_task.done():  # a job that completed (exit 0) before it was seen running
            return
        run.state = "ready" if instance.spec.has_health else "running"
        self._emit(instance.name, "ready", seconds=round(run.ready_at - (run.started_at or 0), 3))
        self._write_state()

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
        if code == 0 and not instance.spec.has_health:
            run.state = "completed"
            self._emit(instance.name, "completed")
            if all(r.exit_code == 0 for r in self._by_service[name]):
                self._gates[name].completed.set()
            self._write_state()
            return
        run.state = f"exited ({code})"
        run.crashes += 1
        self._emit(instance.name, "exited", code=code)
        self._write_state()
        if self.state is StackState.STARTING:
            if run.ready_at is None:
                return  # _wait_ready reports this one itself
            error = ServiceExited(
                instance.name,
                code,
                log_tail=log_tail(instance.log_path),
                log_path=instance.log_path,
                hint="it was ready, then exited while the rest of the stack was starting",
            )
            if self._startup_failure is not None and not self._startup_failure.done():
                self._startup_failure.set_result(error)
            return
        if (
            self.state is StackState.READY
            and instance.spec.restart == "on-failure"
            and code != 0
            and run.restarts < instance.spec.max_restarts
        ):
            await asyncio.sleep(min(0.1 * 2**run.restarts, 5.0))
            if run.stopping or self.state is not StackState.READY:
                return
            run.restarts += 1
            self._emit(instance.name, "restarting", attempt=run.restarts)
            try:
                await self._launch(run)
                await self._wait_ready(run)
            except StackError as exc:
                run.state = "failed"
                self._emit(instance.name, "failed", error=str(exc))
                self._write_state()

    async def _restart_instance(self, run: Running, *, fresh: bool = False) -> None:
        self._emit(run.instance.name, "reset requested" if fresh else "restart requested")
        await self._stop_instance(run)
        if fresh:
            await run.provider.discard_data(run.instance)
        run.restarts += 1
        await self._launch(run)
        await self._wait_ready(run)

    # -- stopping -----------------------------------------------------------------------
    def _live_groups(self) -> dict[str, int]:
        """``{instance: process group}`` of the instances running now (for the sampler)."""
        return {
            name: run.proc.pid
            for name, run in self._running.items()
            if run.proc is not None and run.exit_task is not None and not run.exit_task.done()
        }

    async def _teardown(self, final: StackState) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(BaseException):
                await self._sampler
            self._sampler = None
        self.state = StackState.STOPPING
        self._write_state()
        try:
            await self._stop_graph()
        finally:
            with contextlib.suppress(Exception):
                await self.faults.stop()
            for run in self._running.values():
                with contextlib.suppress(Exception):
                    await run.provider.cleanup(run.instance)
            await asyncio.to_thread(procs.kill_tagged, **{procs.TAG_RUN_ID: self.run_id})
            if self._control is not None:
                self._control.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._control.wait_closed(), 1)
                self._control = None
            if self._control_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._control_path.unlink()
            release_ports(self._ports)
            self.state = final
            self._emit("stack", final.value)
            self._write_state()
            await asyncio.to_thread(self._watchdog.stand_down)
            self.run_dir.release()

    async def _stop_graph(self) -> None:
        dependents: dict[str, set[str]] = {name: set() for name in self._by_service}
        for name in self._by_service:
            for dep in self.spec.services[name].depends_on:
                dependents[dep.service].add(name)

        async def stop_service(name: str) -> None:
            for other in dependents[name]:
                await self._gates[other].stopped.wait()
            try:
                await asyncio.gather(*(self._stop_instance(r) for r in self._by_service[name]))
            finally:
                self._gates[name].stopped.set()

        await asyncio.gather(*(stop_service(name) for name in self._by_service))

    async def _stop_instance(self, run: Running) -> None:
        run.stopping = True
        proc, exit_task = run.proc, run.exit_task
        if proc is None or exit_task is None:
            run.state = "stopped" if run.state != "pending" else run.state
            return
        spec = run.instance.spec
        if not exit_task.done():
            run.state = "stopping"
            procs.signal_group(proc.pid, spec.stop_signal)
            procs.signal_group(proc.pid, signal.SIGCONT)  # a paused process must run to stop
            self._paused.discard(run.instance.name)
            await asyncio.wait([exit_task], timeout=spec.stop_timeout)
            if not exit_task.done():
                self._emit(run.instance.name, "killed", after=spec.stop_timeout)
                procs.signal_group(proc.pid, signal.SIGKILL)
                await exit_task
        # members of the group that outlived their leader
        procs.signal_group(proc.pid, signal.SIGKILL)
        await _group_gone(proc.pid)
        run.exit_code = exit_task.result()
        run.state = "stopped"
        self._emit(run.instance.name, "stopped", code=run.exit_code)

    # -- state, events, control ---------------------------------------------------------
    def _emit(self, service: str, what: str, **detail: Any) -> None:
        with contextlib.suppress(OSError):
            self.run_dir.event(service, what, **detail)
        if self._on_event is not None:
            self._on_event(service, what, detail)

    def _write_state(self) -> None:
        instances = {}
        for name, run in self._running.items():
            inst = run.instance
            instances[name] = {
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
                "client_env": run.provider.client_env(inst) if inst.fields else {},
                "client_args": run.provider.client_args(inst),
                "client_bin_dirs": [str(p) for p in run.provider.client_bin_dirs(inst)],
            }
        state = {
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
            "control": str(self._control_path) if self._control_path else None,
            "reaped": self.reaped,
            "proxies": self.faults.snapshot,
            "toxiproxy_api": self.faults.toxiproxy.url,
            "instances": instances,
        }
        with contextlib.suppress(OSError):
            self.run_dir.write_state(state)

    async def _serve_control(self) -> None:
        import tempfile

        path = Path(tempfile.gettempdir()) / f"st-{self.run_id[:10]}.ctl"
        self._control = await asyncio.start_unix_server(self._handle_control, path=str(path))
        os.chmod(path, 0o600)
        self._control_path = path

    async def _handle_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            request = json.loads(line or b"{}")
            if request.get("op") == "shutdown":
                self.shutdown_requested.set()
                if self._stop_on_shutdown:
                    task = asyncio.ensure_future(self.stop())
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                reply: dict[str, Any] = {"ok": True}
            else:
                reply = await self.apply(request)
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(OSError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            writer.close()

    # -- operations: one entry point for the control socket, Stack and AttachedStack ----
    async def apply(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out one operation (``{"op": "kill", "service": "worker"}``); never raises.

        The reply is ``{"ok": True, ...}`` or ``{"ok": False, "error": ..., "kind": ...}``
        where ``kind`` names the StackError subclass, so a remote caller can raise it.
        """
        op = str(request.get("op"))
        try:
            if self._ops is None:
                self._ops = self._operations()
            handler = self._ops[op]
        except KeyError:
            return {"ok": False, "error": f"unknown operation {op!r}", "kind": "StackError"}
        try:
            result = await handler(request)
        except StackError as exc:
            return {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        except KeyError as exc:
            return {"ok": False, "error": str(exc).strip("'\""), "kind": "StackStateError"}
        return {"ok": True, **(result or {})}

    def _operations(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        async def service_op(request: dict[str, Any]) -> None:
            await actions[request["op"]](str(request["service"]))

        async def add_toxic(request: dict[str, Any]) -> dict[str, Any]:
            self._check("fault")
            # (each proxy change is an event, and _proxy_event writes the state)
            edge, toxic = str(request["edge"]), Toxic.from_json(request["toxic"])
            added = await self.faults.call(self.faults.proxies.add_toxic, edge, toxic)
            return {"toxic": added.to_json()}

        async def remove_toxic(request: dict[str, Any]) -> None:
            edge, name = str(request["edge"]), str(request["name"])
            await self.faults.call(lambda: self.faults.proxies.get(edge).remove_toxic(name))

        async def link(request: dict[str, Any]) -> None:
            self._check("fault")
            edge, up = str(request["edge"]), bool(request["up"])
            await self.faults.call(lambda: self.faults.proxies.get(edge).set_enabled(up))

        async def heal(request: dict[str, Any]) -> dict[str, Any]:
            return {"healed": await self.heal()}

        async def faults(request: dict[str, Any]) -> dict[str, Any]:
            return {"proxies": self.faults.snapshot, "paused": sorted(self._paused),
                    "stopped": sorted(self._stopped_by_fault)}  # fmt: skip

        async def status(request: dict[str, Any]) -> dict[str, Any]:
            return {"status": self.status()}

        actions = {
            "restart": self.restart,
            "reset": self.reset,
            "kill": self.kill,
            "terminate": self.terminate,
            "stop": self.stop_service,
            "start": self.start_service,
            "pause": self.pause,
            "resume": self.resume,
        }
        ops: dict[str, Callable[[dict[str, Any]], Any]] = {name: service_op for name in actions}
        ops.update(
            add_toxic=add_toxic, remove_toxic=remove_toxic, link=link, heal=heal, faults=faults,
            status=status,
        )  # fmt: skip
        return ops

    # -- process faults -----------------------------------------------------------------
    async def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL) to each instance's process group; it stays down until
        start_service() or heal(). A kill is not a crash: no restart policy applies."""
        self._check("fault")
        await asyncio.gather(*(self._halt(run, sig) for run in self.instances(service)))

    async def terminate(self, service: str) -> None:
        """SIGTERM, then SIGKILL after the service's stop_timeout; stays down like kill."""
        await self.kill(service, signal.SIGTERM)

    async def stop_service(self, service: str) -> None:
        """Stop gracefully (its stop_signal, then SIGKILL after stop_timeout)."""
        self._check("fault")
        runs = self.instances(service)
        await asyncio.gather(*(self._stop_instance(r) for r in runs))
        self._stopped_by_fault.update(r.instance.name for r in runs)
        for run in runs:
            self._emit(run.instance.name, "fault: stopped")
        self._write_state()

    async def start_service(self, service: str) -> None:
        """Start the instances that are not running, and wait until they are ready."""
        self._check("fault")
        runs = [r for r in self.instances(service) if r.exit_task is None or r.exit_task.done()]

        async def start(run: Running) -> None:
            await self._launch(run)
            await self._wait_ready(run)
            self._stopped_by_fault.discard(run.instance.name)

        await asyncio.gather(*(start(r) for r in runs))

    async def pause(self, service: str) -> None:
        """SIGSTOP the process groups: the service holds its connections but answers nothing."""
        self._check("fault")
        for run in self.instances(service):
            if run.proc is not None and run.exit_task is not None and not run.exit_task.done():
                procs.signal_group(run.proc.pid, signal.SIGSTOP)
                run.state = "paused"
                self._paused.add(run.instance.name)
                self._emit(run.instance.name, "fault: paused")
        self._write_state()

    async def resume(self, service: str) -> None:
        self._check("fault")
        for run in self.instances(service):
            if run.proc is not None and run.instance.name in self._paused:
                procs.signal_group(run.proc.pid, signal.SIGCONT)
                run.state = "ready" if run.instance.spec.has_health else "running"
                self._paused.discard(run.instance.name)
                self._emit(run.instance.name, "fault: resumed")
        self._write_state()

    async def heal(self) -> list[str]:
        """Undo every fault: toxics removed, links up, paused resumed, stopped started."""
        healed: list[str] = (
            await self.faults.call(self.faults.proxies.heal) if self.faults.running else []
        )
        for name in sorted(self._paused):
            await self.resume(name)
            healed.append(f"{name} resumed")
        for name in sorted(self._stopped_by_fault):
            await self.start_service(name)
            healed.append(f"{name} started")
        if healed:  # each undo above already wrote the state; nothing to heal, nothing written
            self._emit("stack", "fault: healed", undone=healed)
        return healed

    async def _halt(self, run: Running, sig: int) -> None:
        proc, exit_task = run.proc, run.exit_task
        if proc is None or exit_task is None or exit_task.done():
            return
        run.stopping = True  # an exit we caused: not a crash, no restart policy
        self._stopped_by_fault.add(run.instance.name)
        self._paused.discard(run.instance.name)
        name = signal.Signals(sig).name
        self._emit(run.instance.name, f"fault: {name}")
        procs.signal_group(proc.pid, sig)
        procs.signal_group(proc.pid, signal.SIGCONT)
        await asyncio.wait([exit_task], timeout=run.instance.spec.stop_timeout)
        if not exit_task.done():
            procs.signal_group(proc.pid, signal.SIGKILL)
            await exit_task
        procs.signal_group(proc.pid, signal.SIGKILL)  # what outlived the group leader
        await _group_gone(proc.pid)
        run.exit_code = exit_task.result()
        run.state = "killed" if sig == signal.SIGKILL else "stopped"
        self._write_state()

    def _proxy_event(self, what: str, detail: dict[str, Any]) -> None:
        edge = str(detail.pop("edge", "proxy"))
        self._emit(edge, f"fault: {what}", **detail)
        self._write_state()


async def _group_gone(pgid: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until every member of a SIGKILLed group is gone: a server started
    again at once must not meet its predecessor's children (Postgres refuses to start
    while a killed postmaster's backends still hold its shared memory)."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(procs.group_alive, pgid) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def _root_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
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


def _exit_hint(instance: Instance) -> str:
    spec = instance.spec
    if spec.is_process:
        return f"run it by hand to see why: {' '.join(instance.command)}"
    return f"see the log above; `stacktest doctor` shows which {spec.use} binary was used"
