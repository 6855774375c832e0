"""A per-test subject prefix on a shared NATS server, and JetStream streams scoped to it.

    scope = SubjectScope(service="bus", host=..., port=..., prefix="t_checkout_k3x9q")
    scope.subject("orders.created")          # "t_checkout_k3x9q.orders.created"
    scope.create_stream("orders")            # stream t_checkout_k3x9q_orders on "t_....orders.>"
    scope.clear()                            # deletes every stream the test made

The JetStream API is plain request/reply on ``$JS.API.*`` subjects, so a few lines
of the NATS text protocol are enough; tests keep their own client (nats-py ...).
"""

from __future__ import annotations

import json
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

from stacktest.errors import IsolationError

TIMEOUT = 10.0


class NatsRequester:
    """A blocking NATS connection that does request/reply and nothing else."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        info = self.file.readline()
        if not info.startswith(b"INFO "):
            raise ConnectionError(f"not a NATS server: {info[:60]!r}")
        self.inbox = f"_INBOX.stacktest_{secrets.token_hex(8)}"
        self.sock.sendall(
            b'CONNECT {"verbose":false,"pedantic":false,"name":"stacktest"}\r\n'
            + f"SUB {self.inbox}.* 1\r\nPING\r\n".encode()
        )
        self._until(b"PONG")
        self._sequence = 0

    def request(self, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        self._sequence += 1
        reply_to = f"{self.inbox}.{self._sequence}"
        body = json.dumps(payload).encode() if payload is not None else b""
        self.sock.sendall(f"PUB {subject} {reply_to} {len(body)}\r\n".encode() + body + b"\r\n")
        while True:
            line = self._until(b"MSG ", b"HMSG ")
            parts = line.split()
            size = int(parts[-1])
            data = self.file.read(size + 2)[:-2]
            if parts[1].decode() != reply_to:
                continue  # a late answer to an earlier request
            if parts[0] == b"HMSG":  # status-only reply (503 no responders ...)
                header_size = int(parts[-2])
                status = data[:header_size].decode(errors="replace").splitlines()[0]
                raise IsolationError(f"NATS answered {subject} with {status.strip()}")
            result: dict[str, Any] = json.loads(data or b"{}")
            return result

    def _until(self, *prefixes: bytes) -> bytes:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the NATS server closed the connection")
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise IsolationError(f"NATS said: {line.decode().strip()}")
            elif line.startswith(prefixes):
                return line.rstrip(b"\r\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class SubjectScope:
    """One test's corner of a NATS server."""

    service: str
    host: str
    port: int
    prefix: str
    streams: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def subject(self, name: str) -> str:
        """``prefix.name``: the subject a test should use for ``name``."""
        return f"{self.prefix}.{name}"

    def stream_name(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def create_stream(
        self, name: str, subjects: list[str] | None = None, **config: Any
    ) -> dict[str, Any]:
        """Create a JetStream stream owned by this test; returns the server's stream info.

        ``subjects`` are relative to the prefix (default ``["<name>.>"]``); other
        keyword arguments are stream config fields (``retention="workqueue"``,
        ``max_msgs=1000`` ...), as in the JetStream API.
        """
        stream = self.stream_name(name)
        relative = subjects if subjects is not None else [f"{name}.>"]
        body = {
            "name": stream,
            "subjects": [self.subject(s) for s in relative],
            "storage": "memory",
            **config,
        }
        reply = self._request(f"$JS.API.STREAM.CREATE.{stream}", body)
        self.streams.append(stream)
        return reply

    def delete_stream(self, name: str) -> None:
        stream = name if name.startswith(self.prefix) else self.stream_name(name)
        self._request(f"$JS.API.STREAM.DELETE.{stream}", None)
        if stream in self.streams:
            self.streams.remove(stream)

    def stream_info(self, name: str) -> dict[str, Any]:
        stream = name if name.startswith(self.prefix) else self.stream_name(name)
        return self._request(f"$JS.API.STREAM.INFO.{stream}", None)

    def clear(self) -> list[str]:
        """Delete every stream whose name carries this test's prefix; returns their names."""
        conn = self._connect()
        try:
            names = conn.request("$JS.API.STREAM.NAMES", {"offset": 0}).get("streams") or []
            mine = [n for n in names if n.startswith(f"{self.prefix}_")]
            for stream in mine:
                conn.request(f"$JS.API.STREAM.DELETE.{stream}")
            self.streams.clear()
            return mine
        finally:
            conn.close()

    def _connect(self) -> NatsRequester:
        try:
            return NatsRequester(self.host, self.port)
        except OSError as exc:
            raise IsolationError(
                f"service {self.service!r}: cannot connect to {self.host}:{self.port}: {exc}"
            ) from None

    def _request(self, subject: str, body: dict[str, Any] | None) -> dict[str, Any]:
        conn = self._connect()
        try:
            reply = conn.request(subject, body)
        finally:
            conn.close()
        error = reply.get("error")
        if error:
            raise IsolationError(
                f"service {self.service!r}: {subject} failed: {error.get('description', error)}"
                " (is JetStream enabled? set `jetstream = true` on the service)"
            )
        return reply
