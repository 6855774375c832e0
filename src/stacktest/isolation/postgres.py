"""A fresh Postgres database per test, ready before the test asks for it.

:class:`DatabasePool` builds one *template* database per session (the service's
``init`` SQL run into an empty database, or a copy of a database you name), then
keeps a few clones of it ready, made by background threads. A test takes a ready
clone (a queue pop: microseconds) and hands it back when done; a background
thread drops it (connections terminated first), so the next test never waits for
a drop either.

Names are ``stt_<pid>_<token>_<n>``: the pid lets a later session drop what a
killed one left behind; the token keeps sessions of one process apart.

Cloning uses ``CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY`` (Postgres 15+;
the older default): for a small schema it is about twice as fast as WAL_LOG.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacktest import pgwire
from stacktest.engine.procs import alive, without_signals
from stacktest.errors import IsolationError

NAME_PREFIX = "stt_"
_NAME = re.compile(rf"^{NAME_PREFIX}(\d+)_[a-z0-9]+_(?:\d+|tpl)$")
CONNECT_TIMEOUT = 10
#: How long a failing pool retries before acquire() gives up and reports the error.
FAILURE_GRACE = 2.0


@dataclass(frozen=True)
class PgDatabase:
    """One test's database: where it is and how to connect."""

    name: str
    host: str
    port: int
    user: str
    password: str
    #: The server's unix socket directory, when this machine can use it (trusted, no
    #: password hashing: connecting costs ~1 ms instead of ~5 ms of SCRAM over TCP).
    socket_dir: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.name}"

    @property
    def env(self) -> dict[str, str]:
        """libpq's variables plus ``DATABASE_URL``, for a child process of the test."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.name,
            "DATABASE_URL": self.url,
        }

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection to this database (``autocommit`` etc. pass through);
        over the unix socket when there is one, else TCP. Needs psycopg installed; the
        pool itself does not (``url`` and ``env`` serve any driver)."""
        try:
            import psycopg
        except ImportError:
            raise IsolationError(
                f"{self!r}.connect() uses psycopg, which this environment does not have\n"
                "  hint: pip install 'psycopg[binary]', or connect with your own driver to "
                ".url (or .env: PGHOST, PGPORT, ...)"
            ) from None

        if self.socket_dir is not None:
            return psycopg.connect(
                host=self.socket_dir,
                port=self.port,
                user=self.user,
                dbname=self.name,
                connect_timeout=CONNECT_TIMEOUT,
                **kwargs,
            )
        return psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT, **kwargs)

    def __repr__(self) -> str:
        return f"PgDatabase({self.name!r} on {self.host}:{self.port})"


@dataclass(frozen=True)
class Server:
    """How to reach the server as a role allowed to create databases."""

    host: str
    port: int
    user: str
    password: str
    service: str = "postgres"
    socket_dir: str | None = None

    @classmethod
    def of(cls, service: str, fields: Mapping[str, str]) -> Server:
        """From a service's fields; uses its unix socket if this process can reach it."""
        socket_dir = fields.get("socket_dir") or None
        port = int(fields["port"])
        usable = socket_dir is not None and os.access(
            Path(socket_dir) / f".s.PGSQL.{port}", os.W_OK
        )
        return cls(
            fields["host"],
            port,
            fields["user"],
            fields["password"],
            service,
            socket_dir if usable else None,
        )

    def connect(self, dbname: str = "postgres") -> pgwire.Connection:
        """A session for the pool's own work (stacktest's wire client: no driver needed)."""
        return pgwire.Connection.connect(
            host=self.socket_dir or self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            timeout=CONNECT_TIMEOUT,
            # the pool's own clones and drops: a crash may lose one, and it is made again
            options="-c synchronous_commit=off",
        )


_ident = pgwire.quote_ident


class DatabasePool:
    """Ready clones of a template database, for one test session."""

    def __init__(
        self,
        server: Server,
        *,
        init_sql: Sequence[Path] = (),
        template: str | None = None,
        size: int = 4,
        creators: int = 2,
    ) -> None:
        if size < 1 or creators < 1:
            raise ValueError("DatabasePool: size and creators must be at least 1")
        self.server = server
        self.init_sql = list(init_sql)
        self.source_template = template
        self.size = size
        self.token = secrets.token_hex(3)
        self.stem = f"{NAME_PREFIX}{os.getpid()}_{self.token}"
        self.template = f"{self.stem}_tpl"
        self._creators = creators
        self._counter = 0
        self._lock = threading.Lock()
        self._ready: queue.Queue[str] = queue.Queue()
        self._slots: queue.Queue[None] = queue.Queue()
        self._drops: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._failing_since: float | None = None
        self._created: set[str] = set()
        self._clone_sql = ""
        self._drop_sql = ""
        self.swept: list[str] = []

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> DatabasePool:
        """Drop leftovers of dead sessions, build the template, start making clones."""
        with self.server.connect() as conn:
            version = int(conn.execute("SHOW server_version_num")[0][0] or 0)
            self._clone_sql = "CREATE DATABASE {} TEMPLATE {}"
            if version >= 150000:
                self._clone_sql += " STRATEGY FILE_COPY"
            self._drop_sql = "DROP DATABASE IF EXISTS {}"
            if version >= 130000:
                self._drop_sql += " WITH (FORCE)"
            self.swept = self._sweep(conn)
            self._build_template(conn)
        for _ in range(self.size):
            self._slots.put(None)
        for i in range(self._creators):
            self._spawn(self._create_loop, f"stacktest-pg-clone-{i}")
        self._spawn(self._drop_loop, "stacktest-pg-drop")
        return self

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=without_signals(target), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self, *, timeout: float = 30.0, drop: bool = True) -> list[str]:
        """Stop the threads; drop every database this pool made (unless ``drop=False``,
        for a server whose data was thrown away anyway). Returns what could not be dropped.
        """
        self._stopping.set()
        self._drops.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not drop:
            return []
        leftover: list[str] = []
        with self._lock:
            names = [*sorted(self._created - {self.template}), self.template]
        try:
            with self.server.connect() as conn:
                for name in names:
                    if time.monotonic() > deadline:
                        leftover.append(name)
                        continue
                    try:
                        self._drop(conn, name)
                    except Exception:
                        leftover.append(name)
        except Exception:
            return names
        return leftover

    def __enter__(self) -> DatabasePool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what tests call ----------------------------------------------------------------
    def acquire(self, timeout: float = 30.0) -> PgDatabase:
        """A fresh clone of the template; waits (at most ``timeout``) if none is ready."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                name = self._ready.get(timeout=0.05)
                break
            except queue.Empty:
                pass
            error, since = self._error, self._failing_since
            if error is not None and since is not None and time.monotonic() - since > FAILURE_GRACE:
                raise IsolationError(
                    f"service {self.server.service!r}: could not create a test database: "
                    f"{error}".rstrip()
                    + "\n  hint: is the server up? (a test may have stopped it)"
                ) from error
            if time.monotonic() > deadline:
                raise IsolationError(
                    f"service {self.server.service!r}: no test database was ready after "
                    f"{timeout:g}s\n  hint: the server may be overloaded or paused"
                )
        self._slots.put(None)  # make a replacement
        server = self.server
        return PgDatabase(
            name, server.host, server.port, server.user, server.password, server.socket_dir
        )

    def release(self, database: PgDatabase | str) -> None:
        """Hand a database back; it is dropped in the background."""
        name = database if isinstance(database, str) else database.name
        self._drops.put(name)

    @contextlib.contextmanager
    def database(self, timeout: float = 30.0) -> Iterator[PgDatabase]:
        db = self.acquire(timeout)
        try:
            yield db
        finally:
            self.release(db)

    # -- the work -----------------------------------------------------------------------
    def _sweep(self, conn: pgwire.Connection) -> list[str]:
        """Drop databases left by sessions whose process is gone."""
        pattern = pgwire.quote_literal(NAME_PREFIX.replace("_", "\\_") + "%")
        rows = conn.execute(f"SELECT datname FROM pg_database WHERE datname LIKE {pattern}")
        swept: list[str] = []
        for (value,) in rows:
            name = value or ""
            match = _NAME.match(name)
            if match and not alive(int(match.group(1))):
                with contextlib.suppress(Exception):
                    self._drop(conn, name)
                    swept.append(name)
        return swept

    def _build_template(self, conn: pgwire.Connection) -> None:
        source = self.source_template or "template0"
        try:
            conn.execute(f"CREATE DATABASE {_ident(self.template)} TEMPLATE {_ident(source)}")
        except pgwire.PgError as exc:
            hint = (
                "a database used as a template must have no other connections; "
                "stop the services using it, or let stacktest build the template from `init`"
                if self.source_template
                else "check the server's log"
            )
            raise IsolationError(
                f"service {self.server.service!r}: could not create the template database "
                f"from {source!r}: {exc}".rstrip() + f"\n  hint: {hint}"
            ) from None
        with self._lock:
            self._created.add(self.template)
        if not self.source_template:
            self._run_init_sql()
        # No connections to the template, ever: CREATE DATABASE waits (in 100 ms steps)
        # for any, and autovacuum would otherwise visit the fresh tables.
        conn.execute(
            f"ALTER DATABASE {_ident(self.template)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        )

    def _run_init_sql(self) -> None:
        with self.server.connect(self.template) as tconn:
            for path in self.init_sql:
                try:
                    tconn.execute(Path(path).read_bytes())
                except pgwire.PgError as exc:
                    raise IsolationError(
                        f"service {self.server.service!r}: init SQL {path} failed in the "
                        f"test template: {exc}".rstrip()
                        + "\n  hint: it worked when the server was built, so it is probably not "
                        "repeatable (CREATE ROLE, for example, is cluster-wide: use IF NOT EXISTS "
                        "or a DO block)"
                    ) from None

    def _next_name(self) -> str:
        with self._lock:
            self._counter += 1
            name = f"{self.stem}_{self._counter}"
            self._created.add(name)
            return name

    def _create_loop(self) -> None:
        conn = None
        while not self._stopping.is_set():
            try:
                self._slots.get(timeout=0.2)
            except queue.Empty:
                continue
            name = self._next_name()
            try:
                if conn is None or conn.closed:
                    conn = self.server.connect()
                conn.execute(self._clone_sql.format(_ident(name), _ident(self.template)))
            except Exception as exc:
                with self._lock:
                    self._created.discard(name)
                self._error = exc
                self._failing_since = self._failing_since or time.monotonic()
                self._slots.put(None)
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
                self._stopping.wait(0.1)
                continue
            self._error = self._failing_since = None
            self._ready.put(name)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _drop_loop(self) -> None:
        conn = None
        while True:
            name = self._drops.get()
            if name is None:
                break
            try:
                if conn is None or conn.closed:
                    conn = self.server.connect()
                self._drop(conn, name)
            except Exception:
                # left in _created: close() tries again
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _drop(self, conn: pgwire.Connection, name: str) -> None:
        if name.endswith("_tpl"):  # a template cannot be dropped until it is not one
            conn.execute(f"ALTER DATABASE {_ident(name)} WITH IS_TEMPLATE false")
        if "FORCE" not in self._drop_sql:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = {pgwire.quote_literal(name)}"
            )
        conn.execute(self._drop_sql.format(_ident(name)))
        with self._lock:
            self._created.discard(name)
