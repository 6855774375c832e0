"""The fault plane: a stack's edge proxies and its Toxiproxy API, on their own event loop.

The proxies relay every byte between services, so they get a thread and an event loop
of their own instead of sharing the engine's:

- the relay never waits behind the engine (starting Postgres, copying data
  directories) nor behind a test's own event loop (an ``AsyncStack`` in an async
  test whose code makes a blocking call through a proxied port would otherwise hang);
- the loop is uvloop's when it is installed (a default dependency on Linux and
  macOS), which cuts the proxy's own (user) CPU per relayed chunk by more than half; set
  ``STACKTEST_PROXY_LOOP=asyncio`` to use the standard library's loop instead.
  The engine keeps the standard loop (it needs ``subprocess`` features such as
  ``user=`` that uvloop lacks).

Everything that touches a proxy runs on the plane's loop: the engine calls
:meth:`FaultPlane.call`, the Toxiproxy API is served there. Proxy events go back to
the engine's loop; the JSON of the proxies is kept as a snapshot the engine can read
from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import os
import threading
from collections.abc import Callable
from typing import Any

from stacktest.engine.procs import quiet_executor, without_signals
from stacktest.errors import ConfigError
from stacktest.faults.api import ToxiproxyAPI
from stacktest.faults.edges import EdgeProxies
from stacktest.faults.proxy import EventSink

LOOP_ENV = "STACKTEST_PROXY_LOOP"


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed and not turned off, else asyncio's."""
    choice = os.environ.get(LOOP_ENV, "auto").strip().lower()
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(
            f"{LOOP_ENV}={choice!r} is not a loop stacktest knows",
            hint="use auto (uvloop when installed), uvloop or asyncio",
        )
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(
                    f"{LOOP_ENV}=uvloop but uvloop is not installed",
                    hint="pip install uvloop, or unset the variable",
                ) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class FaultPlane:
    """The edge proxies and the Toxiproxy API of one stack, on a loop in a thread."""

    def __init__(self, on_event: EventSink) -> None:
        self.proxies = EdgeProxies()
        self.toxiproxy = ToxiproxyAPI(self.proxies, self._event)
        self._on_event = on_event
        self._engine_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: ``proxies.to_json()`` as of the last change: readable from the engine's thread.
        self.snapshot: dict[str, Any] = {}

    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def loop_name(self) -> str:
        return type(self._loop).__module__.split(".")[0] if self._loop else "none"

    def add_edge(
        self,
        client: str,
        server: str,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        upstream_unix: str | None = None,
    ) -> None:
        """Plan a proxy for ``client->server`` (before :meth:`start`)."""
        self.proxies.add(client, server, listen, upstream, self._event, upstream_unix)

    # -- life cycle ---------------------------------------------------------------------
    async def start(self, api_port: int, fallback_port: int | None = None) -> None:
        """Start the loop thread, every proxy and the API (on ``127.0.0.1:api_port``, or
        on ``fallback_port`` when that one is taken: 8474 by another stack, say)."""
        self._engine_loop = asyncio.get_running_loop()
        loop = new_loop()
        loop.set_default_executor(quiet_executor("stacktest-faults-io"))
        self._thread = threading.Thread(
            target=without_signals(loop.run_forever), name="stacktest-faults", daemon=True
        )
        self._loop = loop
        self._thread.start()

        async def start_all() -> None:
            await self.proxies.start()
            try:
                await self.toxiproxy.start("127.0.0.1", api_port)
            except OSError as exc:
                if fallback_port is None or exc.errno != errno.EADDRINUSE:
                    raise
                await self.toxiproxy.start("127.0.0.1", fallback_port)

        await self.call(start_all)
        self.snapshot = self.proxies.to_json()

    async def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def stop_all() -> None:
            await self.proxies.stop()
            await self.toxiproxy.stop()

        with contextlib.suppress(Exception):
            await self.call(stop_all)
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        if not loop.is_running():
            loop.close()
        self._loop = self._thread = None

    # -- calls into the plane -----------------------------------------------------------
    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` (a function or a coroutine function) on the plane's loop."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the fault plane is not running")

        async def run() -> Any:
            result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
            return result

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))

    # -- events back to the engine ------------------------------------------------------
    def _event(self, what: str, detail: dict[str, Any]) -> None:
        """A proxy changed (on the plane's loop): refresh the snapshot, tell the engine."""
        self.snapshot = self.proxies.to_json()
        engine = self._engine_loop
        if engine is None or engine.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the engine's loop is gone: nobody to tell
            engine.call_soon_threadsafe(self._on_event, what, detail)
