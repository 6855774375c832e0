"""A fault proxy never buffers what its destination will not take, whatever the toxic: a
client that stops reading slows the server, it does not fill the test process's memory.
And a request the HTTP fault cannot frame resets its connection, with an event."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from stacktest.faults.proxy import EdgeProxy
from stacktest.faults.toxics import Toxic

pytestmark = pytest.mark.integration
PUSH = 200 * 1024 * 1024
CHUNK = 1024 * 1024


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def push_to_a_client_that_does_not_read(toxic: dict[str, Any] | None) -> dict[str, int]:
    pushed = 0
    blocked = asyncio.Event()

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal pushed
        chunk = b"x" * CHUNK
        try:
            while pushed < PUSH:
                writer.write(chunk)
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    blocked.set()  # the server's send blocks: backpressure reached it
                    await writer.drain()
                pushed += CHUNK
        except (ConnectionError, asyncio.CancelledError):
            pass

    upstream = await asyncio.start_server(server, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    proxy = EdgeProxy("client->server", ("127.0.0.1", 0), ("127.0.0.1", port))
    if toxic is not None:
        proxy.add_toxic(Toxic.parse(toxic))
    await proxy.start()
    before = rss()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.connect(proxy.listen)  # and never read
    try:
        await asyncio.wait_for(blocked.wait(), 20)
        await asyncio.sleep(1.0)  # anything still flowing would show now
        link = next(iter(proxy.links))
        held = sum(link._queued.values()) + sum(
            side.transport.get_write_buffer_size()
            for side in (link.client, link.server) if side.transport is not None
        )  # fmt: skip
        return {"pushed": pushed, "held": held, "grew": rss() - before}
    finally:
        client.close()
        await proxy.stop()
        upstream.close()


@pytest.mark.parametrize(
    "toxic",
    [None, {"latency": "1ms"}, {"slicer": 4096, "delay": 0}, {"bandwidth": 1_000_000}],
    ids=["no toxic", "latency=1ms", "slicer", "bandwidth"],
)
def test_a_client_that_does_not_read_slows_the_server(toxic: dict[str, Any] | None) -> None:
    result = asyncio.run(push_to_a_client_that_does_not_read(toxic))
    mb = 1024 * 1024
    assert result["pushed"] < 64 * mb, result  # of 200 MB: the server was held back
    assert result["held"] < 4 * mb, result  # what the proxy holds for this connection
    assert result["grew"] < 32 * mb, result  # the test process's memory


def test_malformed_http_framing_resets_the_connection_with_an_event() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def scenario() -> bytes | str:
        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)

        upstream = await asyncio.start_server(server, "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        proxy = EdgeProxy("api->web", ("127.0.0.1", 0), ("127.0.0.1", port),
                          on_event=lambda what, detail: events.append((what, detail)))  # fmt: skip
        proxy.add_toxic(Toxic.parse({"http_error": 503}))
        await proxy.start()
        try:
            reader, writer = await asyncio.open_connection(*proxy.listen)
            writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: lots\r\n\r\nbody")
            try:
                return await asyncio.wait_for(reader.read(100), 5)
            except ConnectionResetError:
                return "reset"
            finally:
                writer.close()
        finally:
            await proxy.stop()
            upstream.close()

    assert asyncio.run(scenario()) in ("reset", b"")
    assert events and events[-1][0] == "http_error_malformed"
    assert "Content-Length 'lots' is not a length" in events[-1][1]["error"]
