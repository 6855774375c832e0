"""A small PostgreSQL client: simple queries over a unix socket or TCP, standard library only.

stacktest needs few things of a Postgres server: is it ready (``SELECT 1``), set a
password, create databases, run init SQL, clone and drop test databases. For those it
speaks the protocol itself (version 3: startup, trust / password / MD5 /
SCRAM-SHA-256 authentication, the simple query protocol), so that neither its own
environment nor a test process's needs a driver, and a project developing psycopg
keeps its own. Users' code gets a real driver: ``PgDatabase.connect()`` is psycopg's.

Values come back as text (or None); several statements in one query run as one
implicit transaction, as in psql's ``-c``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
from types import TracebackType

PROTOCOL = 196608  # 3.0


class PgError(Exception):
    """An error the server reported (``sqlstate``, ``message``), or a failure to reach it."""

    def __init__(self, message: str, sqlstate: str = "", detail: str = "") -> None:
        self.message, self.sqlstate, self.detail = message, sqlstate, detail
        super().__init__(message + (f"\nDETAIL:  {detail}" if detail else ""))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A string literal (standard_conforming_strings, the default since 9.1)."""
    if "\0" in value:
        raise ValueError("a PostgreSQL string cannot hold a NUL character")
    return "'" + value.replace("'", "''") + "'"


class Connection:
    """One session. Not thread-safe: use one per thread."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self.closed = False

    @classmethod
    def connect(
        cls,
        *,
        host: str,
        port: int,
        user: str,
        dbname: str = "postgres",
        password: str | None = None,
        timeout: float = 10.0,
        options: str | None = None,
        query_timeout: float | None = None,
    ) -> Connection:
        """``host`` is a hostname or a unix socket directory (a path). ``timeout`` bounds
        connecting and authenticating; ``query_timeout`` each wait for the server after
        (None: as long as the query takes)."""
        try:
            if host.startswith("/"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(timeout)
                    sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise PgError(f"cannot reach the server at {host}:{port}: {exc}") from None
        conn = cls(sock)
        try:
            conn._start(user, dbname, password, options)
        except BaseException:
            conn.close()
            raise
        sock.settimeout(query_timeout)
        return conn

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._sock.sendall(b"X\0\0\0\4")
        except OSError:
            pass
        self._sock.close()

    # -- queries ------------------------------------------------------------------------
    def execute(self, sql: str | bytes) -> list[tuple[str | None, ...]]:
        """Run ``sql`` (one or more statements); the rows of the last result, as text."""
        query = sql.encode() if isinstance(sql, str) else sql
        if b"\0" in query:
            raise PgError("the query holds a NUL byte")
        self._send(b"Q", query + b"\0")
        rows: list[tuple[str | None, ...]] = []
        error: PgError | None = None
        while True:
            kind, body = self._receive()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                rows.append(_data_row(body))
            elif kind == b"E":
                error = _error(body)
            elif kind == b"G":  # COPY ... FROM STDIN: nothing to send
                self._send(b"f", b"COPY FROM STDIN is not supported here\0")
            elif kind == b"Z":
                if error is not None:
                    raise error
                return rows
            # C (complete), I (empty), N (notice), S (parameter), A (notification),
            # H / d / c (COPY TO STDOUT): nothing to keep

    # -- the protocol -------------------------------------------------------------------
    def _start(self, user: str, dbname: str, password: str | None, options: str | None) -> None:
        params = [("user", user), ("database", dbname), ("client_encoding", "UTF8")]
        if options:
            params.append(("options", options))
        body = struct.pack("!i", PROTOCOL)
        body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params) + b"\0"
        self._sock.sendall(struct.pack("!i", len(body) + 4) + body)
        scram: _Scram | None = None
        while True:
            kind, data = self._receive()
            if kind == b"E":
                raise _error(data)
            if kind == b"Z":
                return
            if kind != b"R":
                continue  # S (parameters), K (cancel key), N (notices)
            (code,) = struct.unpack("!i", data[:4])
            if code == 0:
                continue
            if password is None:
                raise PgError(f"the server asks for a password for {user!r} and none was given")
            if code == 3:
                self._send(b"p", password.encode() + b"\0")
            elif code == 5:
                inner = hashlib.md5((password + user).encode()).hexdigest().encode()
                digest = hashlib.md5(inner + data[4:8]).hexdigest()
                self._send(b"p", b"md5" + digest.encode() + b"\0")
            elif code == 10:
                mechanisms = data[4:].split(b"\0")
                if b"SCRAM-SHA-256" not in mechanisms:
                    raise PgError(f"no supported SASL mechanism among {mechanisms!r}")
                scram = _Scram(password)
                first = scram.client_first()
                self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
            elif code == 11 and scram is not None:
                self._send(b"p", scram.client_final(data[4:]))
            elif code == 12 and scram is not None:
                scram.verify(data[4:])
            else:
                raise PgError(f"unsupported authentication request {code}")

    def _send(self, kind: bytes, body: bytes) -> None:
        try:
            self._sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)
        except OSError as exc:
            self._lost()
            raise PgError(f"the connection to the server was lost: {exc}") from None

    def _lost(self) -> None:
        self.closed = True
        self._sock.close()

    def _receive(self) -> tuple[bytes, bytes]:
        header = self._read(5)
        (length,) = struct.unpack("!i", header[1:5])
        return header[:1], self._read(length - 4)

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            try:
                chunk = self._sock.recv(max(65536, count - len(self._buffer)))
            except OSError as exc:
                self._lost()
                raise PgError(f"the connection to the server was lost: {exc}") from None
            if not chunk:
                self._lost()
                raise PgError("the server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data


def _data_row(body: bytes) -> tuple[str | None, ...]:
    (count,) = struct.unpack("!h", body[:2])
    values: list[str | None] = []
    at = 2
    for _ in range(count):
        (size,) = struct.unpack("!i", body[at : at + 4])
        at += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[at : at + size].decode("utf-8", errors="replace"))
            at += size
    return tuple(values)


def _error(body: bytes) -> PgError:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1].decode()] = part[1:].decode("utf-8", errors="replace")
    severity = fields.get("S", "ERROR")
    return PgError(f"{severity}:  {fields.get('M', '?')}", fields.get("C", ""), fields.get("D", ""))


class _Scram:
    """SCRAM-SHA-256 (RFC 5802, 7677) as PostgreSQL does it: no channel binding."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.auth_message = b""
        self.salted = b""

    def client_first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(item.split("=", 1) for item in server_first.decode().split(","))
        if not attrs.get("r", "").startswith(self.nonce):
            raise PgError("SCRAM: the server's nonce does not extend ours")
        self.salted = hashlib.pbkdf2_hmac(
            "sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
        )
        client_key = hmac.digest(self.salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, self.auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        server_key = hmac.digest(self.salted, b"Server Key", "sha256")
        expected = hmac.digest(server_key, self.auth_message, "sha256")
        given = server_final.decode().partition("v=")[2]
        if not hmac.compare_digest(base64.b64decode(given), expected):
            raise PgError("SCRAM: the server's signature is wrong")
