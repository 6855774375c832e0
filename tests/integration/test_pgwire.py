"""stacktest's own Postgres client against a real server: what the probe, the init SQL
and the database pool rely on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stacktest import Stack
from stacktest.pgwire import Connection, PgError, quote_ident, quote_literal

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    directory = tmp_path_factory.mktemp("pgwire")
    (directory / "stack.toml").write_text('[services.db]\nuse = "postgres"\n')
    with Stack.from_file(directory / "stack.toml") as stack:
        yield dict(stack["db"].fields)


def test_unix_socket_and_tcp_with_scram(db: dict[str, str]) -> None:
    with Connection.connect(host=db["socket_dir"], port=int(db["port"]), user=db["user"]) as c:
        assert c.execute("SELECT 1, 'x', NULL") == [("1", "x", None)]
    tcp = Connection.connect(
        host="127.0.0.1", port=int(db["port"]), user=db["user"], password=db["password"]
    )
    assert tcp.execute("SHOW password_encryption") == [("scram-sha-256",)]
    tcp.close()
    assert tcp.closed


def test_a_wrong_password_is_the_servers_error(db: dict[str, str]) -> None:
    with pytest.raises(PgError, match="password authentication failed") as failed:
        Connection.connect(host="127.0.0.1", port=int(db["port"]), user=db["user"], password="no")
    assert failed.value.sqlstate == "28P01"
    with pytest.raises(PgError, match="asks for a password"):
        Connection.connect(host="127.0.0.1", port=int(db["port"]), user=db["user"])


def test_errors_rows_and_several_statements(db: dict[str, str]) -> None:
    with Connection.connect(host=db["socket_dir"], port=int(db["port"]), user=db["user"]) as c:
        with pytest.raises(PgError, match='relation "nosuchtable" does not exist') as failed:
            c.execute("SELECT * FROM nosuchtable")
        assert failed.value.sqlstate == "42P01"
        assert c.execute("SELECT 2") == [("2",)]  # the session goes on after an error
        rows = c.execute(
            "CREATE TEMP TABLE t (a int, b text); INSERT INTO t VALUES (1, 'é'), (2, NULL);"
            "SELECT a, b FROM t ORDER BY a"
        )
        assert rows == [("1", "é"), ("2", None)]
        assert c.execute("") == []


def test_quoting_keeps_values_values(db: dict[str, str]) -> None:
    hostile = "x'; DROP TABLE pg_class; --"
    with Connection.connect(host=db["socket_dir"], port=int(db["port"]), user=db["user"]) as c:
        assert c.execute(f"SELECT {quote_literal(hostile)}") == [(hostile,)]
        weird = quote_ident('we"ird')
        assert c.execute(f"SELECT 1 AS {weird}") == [("1",)]
    with pytest.raises(ValueError, match="NUL"):
        quote_literal("a\0b")


def test_a_server_that_goes_away_is_an_error_not_a_hang(db: dict[str, str], tmp_path: Path) -> None:
    c = Connection.connect(host=db["socket_dir"], port=int(db["port"]), user=db["user"])
    with pytest.raises(PgError, match=r"terminating connection|closed the connection"):
        c.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert c.closed or c.close() is None
    with pytest.raises(PgError, match="cannot reach the server"):
        Connection.connect(host=str(tmp_path), port=1, user="x")
