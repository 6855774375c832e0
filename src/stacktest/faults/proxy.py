"""A fault proxy on one dependency edge (``api->db``): loopback TCP, asyncio, toxics.

Each accepted client connection becomes a :class:`Link` to the upstream server. With
no toxic on a direction, bytes go straight from one transport to the other inside
``data_received`` (no task, no queue: a few microseconds per chunk). Once a toxic
applies, that direction switches to a queue drained by a task, which delays, slices,
throttles or drops; when the toxics are gone and the queue is empty it switches back.

Backpressure holds both ways and in every mode: when a destination's write buffer fills
(its transport says ``pause_writing``), the source stops reading, and a toxic's drain waits
before it writes more; a toxic's queue holds at most :data:`QUEUE_BYTES` before the source
is paused too. A slow client slows the server instead of filling memory: per connection
and direction, at most ``QUEUE_BYTES`` queued plus the transports' own buffers (64 KiB high
water each) and one chunk read (256 KiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, cast

from stacktest.errors import FaultError
from stacktest.faults.httpfault import RequestSplitter, error_response
from stacktest.faults.toxics import Toxic

#: Bytes queued for a toxic (per connection and direction) before the source is paused;
#: it reads again below half of it.
QUEUE_BYTES = 1024 * 1024
EventSink = Callable[[str, dict[str, Any]], None]


class EdgeProxy:
    """Listens on ``listen``; every connection is relayed to ``upstream``.

    ``upstream_unix``, when given, is a unix socket that reaches the same server (the
    provider says so, with the same authentication): the proxy connects there instead,
    which spares a second loopback TCP hop, and falls back to ``upstream`` if it cannot.
    """

    def __init__(
        self,
        name: str,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        on_event: EventSink | None = None,
        upstream_unix: str | None = None,
    ) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.upstream_unix = upstream_unix
        self.enabled = True
        self.toxics: dict[str, Toxic] = {}
        self.links: set[Link] = set()
        self.connections_total = 0
        self._server: asyncio.Server | None = None
        self._on_event = on_event

    # -- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientSide(self), self.listen[0], self.listen[1], reuse_address=True
        )
        if self.listen[1] == 0:  # asked for any port: keep the one we got, for re-listening
            self.listen = (self.listen[0], self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._close_listener()
        for link in list(self.links):
            link.abort()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None

    # -- faults -------------------------------------------------------------------------
    async def set_enabled(self, enabled: bool) -> None:
        """Disabled: new connections are refused and existing ones are cut (reset)."""
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if enabled:
            await self.start()
        else:
            await self._close_listener()
            for link in list(self.links):
                link.abort()
        self.record_event("up" if enabled else "down", {})

    def add_toxic(self, toxic: Toxic) -> Toxic:
        if toxic.name in self.toxics:
            raise FaultError(
                f"edge {self.name}: a toxic named {toxic.name!r} is already there",
                hint="remove it first, or give the new one another name",
            )
        self.toxics[toxic.name] = toxic
        for link in list(self.links):
            link.toxics_changed()
        self.record_event("toxic added", toxic.to_json())
        return toxic

    def update_toxic(self, name: str, changes: dict[str, Any]) -> Toxic:
        old = self.get_toxic(name)
        merged = old.to_json()
        merged["attributes"] = {**merged["attributes"], **(changes.get("attributes") or {})}
        for key in ("toxicity", "stream"):
            if key in changes:
                merged[key] = changes[key]
        new = Toxic.from_json(merged)
        new.name = name
        self.toxics[name] = new
        for link in list(self.links):
            link.toxics_changed()
        self.record_event("toxic updated", new.to_json())
        return new

    def get_toxic(self, name: str) -> Toxic:
        try:
            return self.toxics[name]
        except KeyError:
            known = ", ".join(self.toxics) or "none"
            raise FaultError(f"edge {self.name}: no toxic {name!r} (toxics: {known})") from None

    def remove_toxic(self, name: str) -> None:
        self.get_toxic(name)
        del self.toxics[name]
        for link in list(self.links):
            link.toxics_changed()
        self.record_event("toxic removed", {"name": name})

    async def heal(self) -> bool:
        """Remove every toxic and enable the link; True if there was anything to heal."""
        changed = bool(self.toxics) or not self.enabled
        self.toxics.clear()
        for link in list(self.links):
            link.toxics_changed()
        await self.set_enabled(True)
        if changed:
            self.record_event("healed", {})
        return changed

    def record_event(self, what: str, detail: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(what, {"edge": self.name, **detail})

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's proxy JSON."""
        return {
            "name": self.name,
            "listen": f"{self.listen[0]}:{self.listen[1]}",
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics.values()],
        }


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.link: Link | None = None
        #: The peer's ``transport.write`` while this direction has no toxic: the fast path.
        self.forward: Callable[[bytes], None] | None = None
        #: Set while this side's transport takes more writes (cleared by pause_writing).
        self.writable = asyncio.Event()
        self.writable.set()
        #: Why reading is paused: "dest" (the peer is full), "queue" (a toxic's queue is
        #: full), "connect" (no upstream yet). Reading resumes when no reason is left.
        self._paused: set[str] = set()

    def data_received(self, data: bytes) -> None:
        forward = self.forward
        if forward is not None:
            forward(data)
        elif self.link is not None:
            self.link.on_data(self, data)

    def eof_received(self) -> bool:
        if self.link is not None:
            self.link.on_eof(self)
        return True  # keep the other half open: the link decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link is not None:
            self.link.on_lost(self)

    def pause_writing(self) -> None:
        self.writable.clear()
        if self.link is not None:
            self.link.peer_of(self).pause_reading("dest")

    def resume_writing(self) -> None:
        self.writable.set()
        if self.link is not None:
            self.link.peer_of(self).resume_reading("dest")

    def pause_reading(self, reason: str) -> None:
        self._paused.add(reason)
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()

    def resume_reading(self, reason: str) -> None:
        self._paused.discard(reason)
        if self._paused:
            return  # another reason still holds (a full destination, a full queue)
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()


class ClientSide(_Side):
    """The connection a client made to the proxy; its data flows upstream."""

    stream = "upstream"

    def __init__(self, proxy: EdgeProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        if not self.proxy.enabled:
            _reset(transport)
            return
        self.pause_reading("connect")  # until the upstream connection is there
        self.link = Link(self.proxy, self)
        self.link.connect()


class ServerSide(_Side):
    """The proxy's connection to the upstream server; its data flows downstream."""

    stream = "downstream"

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)


class Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: EdgeProxy, client: ClientSide) -> None:
        self.proxy = proxy
        self.client = client
        self.server = ServerSide(self)
        self.closed = False
        self._rolled: dict[str, bool] = {}
        self._queues: dict[str, asyncio.Queue[tuple[float, bytes | None]]] = {}
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sent = {"upstream": 0, "downstream": 0}
        self._queued = {"upstream": 0, "downstream": 0}  # bytes waiting in a toxic's queue
        self._http: RequestSplitter | None = None
        #: What the client sent before the upstream connection was there.
        self._early: list[bytes] = []
        proxy.links.add(self)
        proxy.connections_total += 1

    # -- wiring -------------------------------------------------------------------------
    def connect(self) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._connect())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.proxy.upstream
        try:
            try:
                if not self.proxy.upstream_unix:
                    raise FileNotFoundError
                await loop.create_unix_connection(lambda: self.server, self.proxy.upstream_unix)
            except OSError:
                await loop.create_connection(lambda: self.server, host, port)
        except OSError:
            self.abort()
            return
        if self.closed:
            self.abort()
            return
        early, self._early = self._early, []
        for data in early:
            self.on_data(self.client, data)
        self.toxics_changed()
        self.client.resume_reading("connect")

    def peer_of(self, side: _Side) -> _Side:
        return self.server if side is self.client else self.client

    def _dest(self, stream: str) -> _Side:
        return self.server if stream == "upstream" else self.client

    # -- which toxics apply -------------------------------------------------------------
    def active(self, stream: str) -> list[Toxic]:
        found = []
        for toxic in self.proxy.toxics.values():
            if toxic.stream != stream:
                continue
            key = f"{toxic.name}:{id(toxic)}"
            if key not in self._rolled:
                self._rolled[key] = toxic.toxicity >= 1.0 or random.random() < toxic.toxicity
            if self._rolled[key]:
                found.append(toxic)
        return found

    def toxics_changed(self) -> None:
        """(Re)arm the timers of timeout / reset_peer toxics; stop those that went away."""
        if self.closed:
            return
        wanted = {}
        for stream in ("upstream", "downstream"):
            for toxic in self.active(stream):
                if toxic.type in ("timeout", "reset_peer"):
                    wanted[f"{toxic.name}:{id(toxic)}"] = toxic
        for key in list(self._timers):
            if key not in wanted:
                self._timers.pop(key).cancel()
        loop = asyncio.get_running_loop()
        for key, toxic in wanted.items():
            if key in self._timers:
                continue
            delay = toxic.attributes["timeout"] / 1000
            if toxic.type == "reset_peer":
                self._timers[key] = loop.call_later(delay, self.abort)
            elif delay > 0:
                self._timers[key] = loop.call_later(delay, self.close)
        for stream in ("upstream", "downstream"):
            if self.active(stream) and stream not in self._queues:
                self._start_drain(stream)
        self._update_fast_paths()

    def _update_fast_paths(self) -> None:
        for stream, source in (("upstream", self.client), ("downstream", self.server)):
            dest = self._dest(stream).transport
            direct = dest is not None and stream not in self._queues and not self.active(stream)
            source.forward = dest.write if direct and dest is not None else None

    # -- data ---------------------------------------------------------------------------
    def on_data(self, side: _Side, data: bytes) -> None:
        stream = "upstream" if side is self.client else "downstream"
        if stream == "upstream" and self.server.transport is None:
            self._early.append(data)  # the event loop may deliver data before we paused it
            return
        queue = self._queues.get(stream)
        if queue is None:
            if not self.active(stream):
                dest = self._dest(stream).transport
                if dest is not None:
                    dest.write(data)
                return
            queue = self._start_drain(stream)
        queue.put_nowait((time.monotonic(), data))
        self._queued[stream] += len(data)
        if self._queued[stream] >= QUEUE_BYTES:
            side.pause_reading("queue")

    def on_eof(self, side: _Side) -> None:
        stream = "upstream" if side is self.client else "downstream"
        queue = self._queues.get(stream)
        if queue is not None:
            queue.put_nowait((time.monotonic(), None))
            return
        self._forward_eof(stream)

    def _forward_eof(self, stream: str) -> None:
        dest = self._dest(stream).transport
        if dest is not None and not dest.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                if dest.can_write_eof():
                    dest.write_eof()
                    return
            dest.close()

    def on_lost(self, side: _Side) -> None:
        peer = self.peer_of(side).transport
        if peer is not None and not peer.is_closing():
            # let queued (delayed) data out first, unless the link is being torn down
            stream = "upstream" if side is self.client else "downstream"
            if stream in self._queues and not self.closed:
                self._queues[stream].put_nowait((time.monotonic(), None))
                return
            peer.close()
        self._finish()

    def _start_drain(self, stream: str) -> asyncio.Queue[tuple[float, bytes | None]]:
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        self._queues[stream] = queue
        self._drains[stream] = asyncio.get_running_loop().create_task(self._drain(stream, queue))
        self._update_fast_paths()
        return queue

    async def _drain(self, stream: str, queue: asyncio.Queue[tuple[float, bytes | None]]) -> None:
        source = self.client if stream == "upstream" else self.server
        try:
            while not self.closed:
                try:
                    arrived, data = await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    if not self.active(stream) and queue.empty():
                        break  # back to the direct path
                    continue
                if data is not None:
                    self._queued[stream] -= len(data)
                if self._queued[stream] <= QUEUE_BYTES // 2:
                    source.resume_reading("queue")  # (unless the destination is full)
                toxics = self.active(stream)
                if data is None:
                    await self._close_after(toxics, stream)
                    return
                await self._deliver(stream, arrived, data, toxics)
        finally:
            if self._queues.get(stream) is queue:
                del self._queues[stream]
                self._drains.pop(stream, None)
                while not queue.empty():  # arrived after the last check: keep the order
                    _, data = queue.get_nowait()
                    if data is None:
                        self._forward_eof(stream)
                    else:
                        self._write(stream, data)
                if not self.closed:
                    self._update_fast_paths()

    async def _deliver(self, stream: str, arrived: float, data: bytes, toxics: list[Toxic]) -> None:
        by_type = {t.type: t for t in toxics}
        if "timeout" in by_type:
            return  # data goes nowhere while the toxic is there
        if "http_error" in by_type and stream == "upstream":
            await self._http_faults(data, by_type["http_error"], arrived)
            return
        if "latency" in by_type:
            attrs = by_type["latency"].attributes
            jitter = attrs["jitter"]
            delay = (attrs["latency"] + (random.uniform(-jitter, jitter) if jitter else 0)) / 1000
            wait = arrived + max(0.0, delay) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        if "limit_data" in by_type:
            limit = by_type["limit_data"].attributes["bytes"]
            room = limit - self._sent[stream]
            if len(data) >= room:
                if room > 0:
                    await self._send(stream, data[:room])
                self.close()
                return
        pieces = [data]
        gap = 0.0
        if "slicer" in by_type:
            attrs = by_type["slicer"].attributes
            pieces, gap = (
                _slices(data, attrs["average_size"], attrs["size_variation"]),
                (attrs["delay"] / 1_000_000),
            )
        rate = by_type["bandwidth"].attributes["rate"] * 1024 if "bandwidth" in by_type else 0
        for i, piece in enumerate(pieces):
            if rate > 0:
                # at most a tenth of a second's worth at a time, for a smooth rate
                step = max(1, rate // 10)
                for start in range(0, len(piece), step):
                    chunk = piece[start : start + step]
                    await self._send(stream, chunk)
                    await asyncio.sleep(len(chunk) / rate)
            else:
                await self._send(stream, piece)
            if gap and i < len(pieces) - 1:
                await asyncio.sleep(gap)

    async def _http_faults(self, data: bytes, toxic: Toxic, arrived: float) -> None:
        if self._http is None:
            self._http = RequestSplitter()
        try:
            requests = self._http.feed(data)
        except ValueError as exc:  # a Content-Length or chunk size that is not a number
            problem = f"malformed HTTP framing: {exc}; connection reset"
            self.proxy.record_event("http_error_malformed", {"error": problem})
            self.abort()
            return
        for request, raw in requests:
            attrs = toxic.attributes
            if attrs["delay"]:
                wait = arrived + attrs["delay"] / 1000 - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            toxic.seen += 1
            first, rate = attrs["first"], attrs["rate"]
            if attrs["status"] == 0:
                fail = False  # status 0: a delay-only HTTP fault
            elif first:
                fail = toxic.seen <= first
            elif rate:
                fail = random.random() < rate
            else:
                fail = True
            if request is None or not fail:
                await self._send("upstream", raw)
                continue
            client = self.client.transport
            if client is not None:
                client.write(error_response(attrs["status"], attrs["body"]))
            self.close()
            return

    async def _close_after(self, toxics: list[Toxic], stream: str) -> None:
        for toxic in toxics:
            if toxic.type == "slow_close":
                await asyncio.sleep(toxic.attributes["delay"] / 1000)
        self._forward_eof(stream)

    async def _send(self, stream: str, data: bytes) -> None:
        """Write when the destination takes more (its buffer below the high-water mark):
        a toxic's drain never fills a slow reader's buffer."""
        dest = self._dest(stream)
        if not dest.writable.is_set():
            await dest.writable.wait()
        self._write(stream, data)

    def _write(self, stream: str, data: bytes) -> None:
        dest = self._dest(stream).transport
        if dest is not None and not dest.is_closing():
            dest.write(data)
            self._sent[stream] += len(data)

    # -- ending -------------------------------------------------------------------------
    def close(self) -> None:
        """Close both connections (FIN)."""
        self.closed = True
        for side in (self.client, self.server):
            if side.transport is not None:
                side.transport.close()
        self._finish()

    def abort(self) -> None:
        """Reset both connections (RST): what a crashed peer or a cut cable looks like."""
        self.closed = True
        for side in (self.client, self.server):
            if side.transport is not None:
                _reset(side.transport)
        self._finish()

    def _finish(self) -> None:
        self.closed = True
        self.client.forward = self.server.forward = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._drains.values():
            task.cancel()
        self.proxy.links.discard(self)


def _reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _slices(data: bytes, average: int, variation: int) -> list[bytes]:
    if average <= 0:
        return [data]
    out, start = [], 0
    while start < len(data):
        size = max(1, average + (random.randint(-variation, variation) if variation else 0))
        out.append(data[start : start + size])
        start += size
    return out
