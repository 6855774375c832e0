"""The Python API: a stack you start, use and stop from synchronous code.

    with Stack.from_file("stack.toml") as stack:
        dsn = stack["db"].url

:class:`Stack` runs an :class:`~stacktest.engine.runtime.AsyncStack` on an event loop
in a background thread, so services stay supervised (and their edges proxied) while
the calling code blocks. Async code uses ``AsyncStack`` directly.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from stacktest.engine import procs
from stacktest.engine.rundir import RunDir
from stacktest.engine.runtime import AsyncStack
from stacktest.operations import Operations
from stacktest.service import Service
from stacktest.spec.model import StackSpec

T = TypeVar("T")


def service_view(stack: AsyncStack, name: str) -> Service:
    """The view of a service of a stack this process runs."""
    runs = stack.instances(name)
    first = runs[0].instance
    return Service(
        name=name,
        kind=first.spec.use,
        host=first.host,
        port=first.port,
        url=first.fields.get("url", ""),
        fields=dict(first.fields),
        env=runs[0].provider.client_env(first),
        log_path=first.log_path,
        pids=tuple(r.pid for r in runs),
    )


class _LoopThread:
    """An event loop in a daemon thread, and a way to run coroutines on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # (this thread starts the services, whose signal mask it would pass on: it blocks
        # nothing; the threads it hands blocking calls to do)
        self.loop.set_default_executor(procs.quiet_executor("stacktest-io"))
        self.thread = threading.Thread(target=self.loop.run_forever, name="stacktest", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():  # interrupted here (Ctrl-C): let the coroutine unwind
                future.cancel()
                with contextlib.suppress(BaseException):
                    future.result()
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


class Stack(Operations):
    """A stack started from synchronous code; a context manager.

    Restarts, resets and faults (``kill``, ``pause``, ``fault``, ``down``...) come from
    :class:`~stacktest.operations.Operations`.
    """

    def __init__(self, spec: StackSpec, *, run_dir: Path | None = None) -> None:
        self.spec = spec
        self._run_dir = run_dir
        self._thread: _LoopThread | None = None
        self._async: AsyncStack | None = None

    @classmethod
    def from_file(cls, path: str | Path = "stack.toml", *, run_dir: Path | None = None) -> Stack:
        from stacktest.spec.load import load_stack

        return cls(load_stack(path), run_dir=run_dir)

    @property
    def engine(self) -> AsyncStack:
        if self._async is None:
            raise RuntimeError("the stack is not started; use `with stack:` or stack.start()")
        return self._async

    def start(self) -> Stack:
        if self._thread is None:
            self._thread = _LoopThread()
        thread = self._thread

        async def make_and_start() -> None:
            self._async = AsyncStack(self.spec, run_dir=self._run_dir)
            await self._async.start()

        atexit.register(self.stop)
        try:
            thread.call(make_and_start())
        except BaseException:
            self._close_thread()
            raise
        return self

    def stop(self) -> None:
        if self._async is not None and self._thread is not None:
            self._thread.call(self._async.stop())
        self._close_thread()

    def _close_thread(self) -> None:
        atexit.unregister(self.stop)
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __getitem__(self, name: str) -> Service:
        return service_view(self.engine, name)

    @property
    def run_id(self) -> str:
        return self.engine.run_id

    @property
    def services(self) -> list[str]:
        return list(self.spec.services)

    @property
    def run_dir(self) -> RunDir:
        return self.engine.run_dir

    @property
    def toxiproxy_url(self) -> str | None:
        """The Toxiproxy-compatible API over this stack's fault proxies."""
        return self.engine.faults.toxiproxy.url

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        engine = self.engine
        assert self._thread is not None
        return self._thread.call(engine.apply(request))

    def status(self) -> list[dict[str, Any]]:
        return self.engine.status()


__all__ = ["AsyncStack", "Service", "Stack"]
