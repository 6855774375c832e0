"""A per-test key prefix on a shared Valkey/Redis server, and the keys removed after.

    scope = KeyScope.open(host, port, password, prefix="t_checkout_k3x9q:")
    r.set(scope.key("cart"), "...")      # "t_checkout_k3x9q:cart"
    scope.clear()                         # SCAN MATCH prefix* + UNLINK, on one connection

A prefix, not a logical database: prefixes work on every server (Valkey cluster
and many managed Redis allow only database 0), any number of tests at once, and
with tools that ignore ``SELECT``. The cleanup uses a tiny RESP client of its own,
so tests may use whichever client library they like.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from stacktest.errors import IsolationError

TIMEOUT = 10.0


class RespConnection:
    """Just enough RESP2 for cleanup: send a command, read one reply."""

    def __init__(self, host: str, port: int, password: str = "", timeout: float = TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        if password:
            self.call("AUTH", password)

    def call(self, *args: str) -> Any:
        payload = b"*%d\r\n" % len(args)
        for arg in args:
            data = arg.encode()
            payload += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(payload)
        return self._read()

    def _read(self) -> Any:
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("the server closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise IsolationError(f"valkey said: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise ConnectionError(f"unexpected reply {line!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass(frozen=True)
class KeyScope:
    """One test's corner of a Valkey/Redis server."""

    service: str
    host: str
    port: int
    password: str
    prefix: str

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}"

    def key(self, name: str) -> str:
        """``prefix + name``: the key a test should use for ``name``."""
        return f"{self.prefix}{name}"

    def keys(self) -> list[str]:
        """Every key under this test's prefix (SCAN, never KEYS)."""
        conn = self._connect()
        try:
            return self._scan(conn)
        finally:
            conn.close()

    def clear(self) -> int:
        """Remove every key under the prefix; returns how many were removed."""
        conn = self._connect()
        try:
            removed = 0
            keys = self._scan(conn)
            for start in range(0, len(keys), 500):
                removed += int(conn.call("UNLINK", *keys[start : start + 500]))
            return removed
        finally:
            conn.close()

    def _connect(self) -> RespConnection:
        try:
            return RespConnection(self.host, self.port, self.password)
        except OSError as exc:
            raise IsolationError(
                f"service {self.service!r}: cannot connect to {self.host}:{self.port}: {exc}"
            ) from None

    def _scan(self, conn: RespConnection) -> list[str]:
        pattern = self.prefix.replace("[", "\\[").replace("*", "\\*").replace("?", "\\?") + "*"
        cursor, found = "0", []
        while True:
            cursor, batch = conn.call("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
            found += batch
            if cursor == "0":
                return sorted(set(found))
