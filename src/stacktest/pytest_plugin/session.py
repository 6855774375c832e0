"""One test session's stack: started (or attached to) on first use, stopped at the end.

Three ways to get a stack, by the options:

- default: this process starts its own, in ``<run_dir>/pytest-<worker>`` (each
  xdist worker its own run directory, ports and processes), and stops it at the end;
- ``--stack-attach``: use the stack running from the stack file (``stacktest up -d``);
- ``--stack-keep``: like attach, but start that stack (detached) when none runs, or
  when the stack file changed since it started; leave it running at the end.

A failed start is remembered: every test that needs the stack reports the same
error, without trying again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacktest.pytest_plugin.options import Settings

if TYPE_CHECKING:
    from stacktest.attach import AttachedStack
    from stacktest.isolation.postgres import DatabasePool
    from stacktest.spec.model import StackSpec
    from stacktest.stack import Stack

KEEP_LOCK_TIMEOUT = 300.0
OWN_RUN_DIR_SLOTS = 8


class StackUnavailable(Exception):
    """The session's stack could not be started or attached to; the message says why."""


@dataclass(frozen=True)
class Mark:
    """What the services looked like when a test started."""

    log_offsets: dict[str, tuple[Path, int]]
    crashes: dict[str, int]


class StackSession:
    def __init__(self, settings: Settings, worker: str = "main") -> None:
        self.settings = settings
        #: "main", or the xdist worker id ("gw0"...): each worker runs its own stack
        self.worker = worker
        self.stack: Stack | AttachedStack | None = None
        self.spec: StackSpec | None = None
        self.failure: str | None = None
        self.started_here = False
        self.startup_seconds: float | None = None
        self.pools: dict[tuple[str, str | None], DatabasePool] = {}

    @property
    def active(self) -> bool:
        return self.stack is not None

    # -- getting the stack --------------------------------------------------------------
    def get(self) -> Stack | AttachedStack:
        if self.stack is not None:
            return self.stack
        if self.failure is not None:
            raise StackUnavailable(self.failure)
        began = time.monotonic()
        try:
            self.stack = self._open()
        except StackUnavailable as exc:
            self.failure = str(exc)
            raise
        self.startup_seconds = time.monotonic() - began
        return self.stack

    def _load(self) -> StackSpec:
        from stacktest.errors import ConfigError
        from stacktest.spec.files import default_compose_fallback
        from stacktest.spec.load import load_stack

        settings = self.settings
        several = os.pathsep in str(settings.file)  # compose files merged: load_stack checks
        if not several and not default_compose_fallback(settings.file).is_file():
            raise StackUnavailable(
                f"stacktest: no stack file at {settings.file} (from {settings.file_source})\n"
                "  hint: write a stack.toml (or a docker-compose.yml) at the rootdir, or point"
                " --stack / STACKTEST_FILE /"
                " the stack_file ini key at one"
            )
        try:
            if settings.backend is not None:  # (read by the stack file's parser)
                os.environ["STACKTEST_BACKEND"] = settings.backend
            return load_stack(settings.file, profiles=settings.profiles)
        except ConfigError as exc:
            raise StackUnavailable(f"stacktest: invalid stack file: {exc}") from None

    def _open(self) -> Stack | AttachedStack:
        from stacktest.errors import StackError

        self.spec = spec = self._load()
        try:
            if self.settings.attach:
                return self._attach(spec)
            if self.settings.keep:
                return self._keep(spec)
            return self._start_own(spec)
        except StackError as exc:
            raise StackUnavailable(f"stacktest: the stack did not start: {exc}") from None

    def _attach(self, spec: StackSpec) -> AttachedStack:
        from stacktest.attach import AttachedStack
        from stacktest.errors import StackNotRunning

        try:
            return AttachedStack.attach(spec)
        except StackNotRunning:
            raise StackUnavailable(
                f"stacktest: {self.settings.sources['attach']} asks to use a running stack, "
                f"but none is running from {spec.run_dir}\n"
                f"  hint: start it with `stacktest up -d --file {spec.source}`, or drop the "
                "option to let the tests start their own"
            ) from None

    def _keep(self, spec: StackSpec) -> AttachedStack:
        """Reuse the kept stack if it matches the stack file; else (re)start it detached."""
        from stacktest.attach import AttachedStack
        from stacktest.engine.detached import start_detached, stop_running
        from stacktest.engine.rundir import RunDir

        run_dir = RunDir(spec.run_dir)
        run_dir.create()
        with _file_lock(spec.run_dir / "keep.lock", KEEP_LOCK_TIMEOUT):
            state = run_dir.read_state() if run_dir.owner_alive() else None
            if state is not None and state.get("state") == "ready":
                if state.get("digest") == spec.digest():
                    return AttachedStack(spec, state, run_dir)
                stop_running(run_dir, timeout=30)  # the stack file changed: start afresh
            elif state is not None:
                stop_running(run_dir, timeout=30)
            state = start_detached(spec)
            self.started_here = True
            return AttachedStack(spec, state, run_dir)

    def _start_own(self, spec: StackSpec) -> Stack:
        from stacktest.engine.rundir import RunDir
        from stacktest.stack import Stack

        base = spec.run_dir / f"pytest-{self.worker}"
        candidates = [base] + [
            base.with_name(f"{base.name}.{i}") for i in range(2, OWN_RUN_DIR_SLOTS + 1)
        ]
        # another session (another terminal) may own the first: take a free one
        run_dir = next((p for p in candidates if not RunDir(p).owner_alive()), base)
        if self.worker != "main":
            # xdist: every worker runs a stack of the same file at once; pinned ports
            # (`port`, a compose file's published ports) would collide: each gets free ones
            spec = replace(spec, remap_ports=True)
        stack = Stack(spec, run_dir=run_dir)
        stack.start()
        self.started_here = True
        return stack

    # -- isolation ----------------------------------------------------------------------
    def pool(self, service: str, template: str | None) -> DatabasePool:
        from stacktest.isolation.postgres import DatabasePool, Server

        key = (service, template)
        if key in self.pools:
            return self.pools[key]
        stack, spec = self.get(), self.spec
        assert spec is not None
        server = Server.of(service, stack[service].fields)
        from stacktest.spec.schema import INITDB_TEMPLATE

        options = spec.services[service].options
        if template is None and options.get("initdb"):
            # the first database as the image's init scripts left it (a copy kept aside)
            template = INITDB_TEMPLATE
        init = [] if template else [Path(p) for p in options.get("init", [])]
        pool = DatabasePool(server, init_sql=init, template=template)
        pool.start()
        self.pools[key] = pool
        return pool

    def reset(self, services: list[str]) -> None:
        """Restart services with fresh state; forget pools whose databases went with it."""
        stack = self.get()
        for name in services:
            for key in [k for k in self.pools if k[0] == name]:
                self.pools.pop(key).close(drop=False)
            stack.reset(name)

    # -- evidence -----------------------------------------------------------------------
    def instances(self) -> dict[str, dict[str, Any]]:
        """Every instance's entry in the run's ``state.json`` (read from disk each call)."""
        if self.stack is None:
            return {}
        state = self.stack.run_dir.read_state() or {}
        instances: dict[str, dict[str, Any]] = state.get("instances") or {}
        return instances

    def mark(self) -> Mark:
        offsets, crashes = {}, {}
        for name, info in self.instances().items():
            path = Path(info.get("log", ""))
            try:
                size = path.stat().st_size
            except OSError:
                size = 0
            offsets[name] = (path, size)
            crashes[name] = int(info.get("crashes") or 0)
        return Mark(offsets, crashes)

    def logs_since(
        self, mark: Mark | None, instances: dict[str, dict[str, Any]] | None = None
    ) -> list[tuple[str, Path, list[str]]]:
        """(instance, log path, new lines) for each instance that wrote anything since
        ``mark`` (or ever, without a mark)."""
        out = []
        for name, info in (instances if instances is not None else self.instances()).items():
            path = Path(info.get("log", ""))
            start = mark.log_offsets.get(name, (path, 0))[1] if mark else 0
            lines = read_from(path, start)
            if lines:
                out.append((name, path, lines))
        return out

    def deaths_since(
        self, mark: Mark, instances: dict[str, dict[str, Any]] | None = None
    ) -> list[str]:
        """Descriptions of instances that died since ``mark`` without being asked to."""
        from stacktest.engine.procs import alive

        died = []
        for name, info in (instances if instances is not None else self.instances()).items():
            crashes = int(info.get("crashes") or 0) - mark.crashes.get(name, 0)
            state = str(info.get("state", ""))
            pid = info.get("pid")
            gone = state in ("ready", "running") and pid is not None and not alive(int(pid))
            if crashes > 0 or gone:
                code = info.get("exit_code")
                what = f"exited with code {code}" if code is not None else "died"
                if crashes > 1:
                    what += f" ({crashes} times)"
                if info.get("restarts") and state in ("ready", "running"):
                    what += ", and was restarted (restart = on-failure)"
                died.append(f"service {name!r} {what} during this test")
        return died

    # -- the end ------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Drop the pools' databases and stop what this session started; returns problems."""
        problems = []
        for (service, _), pool in self.pools.items():
            leftover = pool.close()
            if leftover:
                problems.append(
                    f"service {service!r}: could not drop test databases {', '.join(leftover)}"
                )
        self.pools.clear()
        stack, self.stack = self.stack, None
        if stack is not None and not self.settings.keep and not self.settings.attach:
            stack.stop()
        return problems


def read_from(path: Path, offset: int, max_bytes: int = 1 << 20) -> list[str]:
    """The lines written to ``path`` after byte ``offset`` (at most the last ``max_bytes``)."""
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            if end <= offset:
                return []
            start = max(offset, end - max_bytes)
            fh.seek(start)
            data = fh.read(end - start)
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    if start > offset and lines:
        lines = lines[1:]  # a partial first line
    return lines


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackUnavailable(
                        f"stacktest: waited {timeout:g}s for another session to start the kept "
                        f"stack (lock {path})"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
