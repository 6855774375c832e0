"""A lean HTTP/1.1 client for load: keep-alive connections, asyncio protocols, no frills.

A general client (httpx) costs about a millisecond per request on a small machine,
which would sit inside every measured latency and cap the rate one core can offer.
This one does what load needs and no more: a pool of keep-alive connections to one
origin, requests with a body (bytes, text or JSON), responses read by
``Content-Length``, chunked encoding or connection close.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from typing import Any
from urllib.parse import urlencode, urlsplit


class HTTPError(Exception):
    """The request failed below HTTP (connect refused, reset, timeout, bad response)."""


class Response:
    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        #: Bytes received over the connection's life (tells "no answer at all" apart).
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received += len(data)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def more(self) -> None:
        if self.closed:
            raise HTTPError("the server closed the connection")
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter

    async def read_response(self, head_only: bool) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            await self.more()
        end = self.buffer.index(b"\r\n\r\n")
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HTTPError(f"not an HTTP response: {lines[0][:60]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if head_only or status in (204, 304) or 100 <= status < 200:
            return Response(status, headers, b"")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                while b"\r\n" not in self.buffer:
                    await self.more()
                line_end = self.buffer.index(b"\r\n")
                size = int(bytes(self.buffer[:line_end]).split(b";")[0] or b"0", 16)
                del self.buffer[: line_end + 2]
                if size == 0:
                    while b"\r\n" not in self.buffer:
                        await self.more()
                    del self.buffer[: self.buffer.index(b"\r\n") + 2]
                    return Response(status, headers, bytes(body))
                while len(self.buffer) < size + 2:
                    await self.more()
                body += self.buffer[:size]
                del self.buffer[: size + 2]
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buffer) < length:
                await self.more()
            content = bytes(self.buffer[:length])
            del self.buffer[:length]
            return Response(status, headers, content)
        while not self.closed:  # until the server closes
            try:
                await self.more()
            except HTTPError:
                break
        content = bytes(self.buffer)
        self.buffer.clear()
        headers["connection"] = "close"
        return Response(status, headers, content)


class Client:
    """Requests to one origin (``http://host:port``), over pooled keep-alive connections."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, max_idle: int = 1000) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http":
            raise ValueError(f"the load client speaks plain http, not {url.scheme!r} ({base_url})")
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.prefix = url.path.rstrip("/")
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._host_header = f"{self.host}:{self.port}"
        #: Bytes written and read over every connection (k6's data_sent, data_received).
        self.sent = 0
        self.received = 0

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Response:
        body = b""
        extra = dict(headers or {})
        if json is not None:
            body = jsonlib.dumps(json).encode()
            extra.setdefault("Content-Type", "application/json")
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        target = self.prefix + path + (("?" + urlencode(params)) if params else "")
        head = f"{method.upper()} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n"
        if body or method.upper() in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        for key, value in extra.items():
            head += f"{key}: {value}\r\n"
        payload = head.encode("latin-1") + b"\r\n" + body
        try:
            retry = method.upper() in ("GET", "HEAD", "OPTIONS")
            async with asyncio.timeout(self.timeout):  # no extra task, unlike wait_for
                return await self._exchange(payload, method.upper() == "HEAD", retry)
        except TimeoutError:
            raise HTTPError(f"no response within {self.timeout:g}s") from None
        except OSError as exc:
            raise HTTPError(f"{type(exc).__name__}: {exc}") from None

    async def _exchange(
        self, payload: bytes, head_only: bool, retry: bool, fresh: bool = False
    ) -> Response:
        conn = None
        while self._idle and not fresh:
            candidate = self._idle.pop()
            if not candidate.closed and not candidate.buffer:
                conn = candidate
                break
            if candidate.transport is not None:
                candidate.transport.close()
        reused = conn is not None
        if conn is None:
            conn = await self._connect()
        before = conn.received
        try:
            assert conn.transport is not None
            conn.transport.write(payload)
            self.sent += len(payload)
            try:
                response: Response = await conn.read_response(head_only)
            finally:
                self.received += conn.received - before
        except HTTPError:
            if conn.transport is not None:
                conn.transport.close()
            if reused and retry and conn.received == before:
                # a kept-alive connection the server had closed, and not a byte of an
                # answer: a safe request, once more, on a new connection
                return await self._exchange(payload, head_only, retry=False, fresh=True)
            raise
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        if response.headers.get("connection", "").lower() == "close" or conn.closed:
            if conn.transport is not None:
                conn.transport.close()
        elif len(self._idle) < self.max_idle:
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return response

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def aclose(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()

