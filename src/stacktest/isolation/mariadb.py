"""A database per test on a shared MariaDB server: a copy of the service's first database
(its tables and their rows, as the init scripts left them), made by the server's own
client on its private socket, and dropped after the test.

    db = MariadbServer.of("db", stack["db"].fields).clone("t_checkout_k3x9q")
    pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password,
                    database=db.name)

MariaDB has no template databases; ``CREATE TABLE ... LIKE`` and ``INSERT ... SELECT`` per
table copy the schema and the rows in one round trip (views and routines are not copied).
The user the service declares gets every privilege on the copy.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from stacktest.errors import IsolationError

TIMEOUT = 30.0


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class MariadbDatabase:
    """One test's database, and how to reach it."""

    name: str
    host: str
    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        return f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/{self.name}"


@dataclass(frozen=True)
class MariadbServer:
    """A MariaDB service as its fields describe it (``stack["db"].fields``)."""

    service: str
    fields: Mapping[str, str]

    @classmethod
    def of(cls, service: str, fields: Mapping[str, str]) -> MariadbServer:
        missing = [k for k in ("client", "socket", "root_password") if k not in fields]
        if missing:
            raise IsolationError(f"service {service!r} is not a MariaDB service of stacktest's "
                                 f"(no {', '.join(missing)})")  # fmt: skip
        return cls(service, dict(fields))

    def run(self, sql: str) -> str:
        """Run SQL as root on the private socket; the output, tab-separated."""
        argv = [self.fields["client"], "--no-defaults", f"--socket={self.fields['socket']}",
                "-uroot", "-N", "-B", "-e", sql]  # fmt: skip
        env = {**os.environ, "MYSQL_PWD": self.fields["root_password"]}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TIMEOUT,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            raise IsolationError(f"service {self.service!r}: {done.stderr.strip()}")
        return done.stdout

    def clone(self, name: str) -> MariadbDatabase:
        """A new database ``name``: the first database's tables and rows (empty when the
        service declares no database)."""
        source = self.fields.get("database", "")
        tables = []
        if source:
            listed = self.run(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                f"{_literal(source)} AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
            tables = [line for line in listed.splitlines() if line]
        new = _ident(name)
        sql = ["SET FOREIGN_KEY_CHECKS = 0", f"CREATE DATABASE {new}"]
        for table in tables:
            sql += [f"CREATE TABLE {new}.{_ident(table)} LIKE {_ident(source)}.{_ident(table)}",
                    f"INSERT INTO {new}.{_ident(table)} SELECT * FROM "
                    f"{_ident(source)}.{_ident(table)}"]  # fmt: skip
        user = self.fields.get("user", "root")
        if user != "root":
            sql.append(f"GRANT ALL ON {new}.* TO {_literal(user)}@'%'")
        self.run(";\n".join(sql) + ";")
        return MariadbDatabase(name, self.fields["host"], int(self.fields["port"]), user,
                               self.fields["password"])  # fmt: skip

    def drop(self, name: str) -> None:
        self.run(f"DROP DATABASE IF EXISTS {_ident(name)}")
