"""The quickstart's integration suite: real services through the stacktest pytest plugin.

Run it from the repository root, with one stack for the run:

    stacktest test --file examples/quickstart/stack.toml -- examples/quickstart/tests

or let pytest start and stop the stack: `pytest --stack examples/quickstart/stack.toml ...`.
"""

from __future__ import annotations

import asyncio

import httpx
import nats
import pytest
import redis

from stacktest import eventually


def test_health_reports_every_dependency(stack) -> None:
    response = httpx.get(stack["web"].url + "/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"postgres": "ok", "valkey": "ok", "nats": "ok"}


def test_visit_writes_row_counter_and_event(stack, namespace) -> None:
    web, db = stack["web"], stack["db"]
    first = httpx.post(web.url + "/visit", json={"who": namespace}, timeout=5).json()
    second = httpx.post(web.url + "/visit", json={"who": namespace}, timeout=5).json()
    assert (first["count"], second["count"]) == (1, 2)  # namespace: no other test's visits
    assert first["stream"] == "VISITS" and second["seq"] > first["seq"]

    import psycopg

    with psycopg.connect(db.url + "/quickstart") as conn:
        rows = conn.execute("SELECT count(*) FROM visits WHERE who = %s", (namespace,)).fetchone()
    assert rows == (2,)


@pytest.mark.parametrize("who", ["ada", "grace"])
def test_pg_database_is_private_per_test(pg_database, who) -> None:
    with pg_database.connect() as conn:
        conn.execute("INSERT INTO visits (who) VALUES (%s)", (who,))
        assert conn.execute("SELECT who FROM visits").fetchall() == [(who,)]


def test_valkey_scope(valkey_scope) -> None:
    client = redis.Redis.from_url(valkey_scope.url)
    client.incr(valkey_scope.key("hits"))
    assert valkey_scope.keys() == [valkey_scope.key("hits")]


def test_nats_stream_scoped_to_the_test(nats_scope) -> None:
    nats_scope.create_stream("orders")

    async def publish_and_read() -> bytes:
        nc = await nats.connect(nats_scope.url)
        try:
            js = nc.jetstream()
            await js.publish(nats_scope.subject("orders.created"), b"A-1")
            sub = await js.pull_subscribe(nats_scope.subject("orders.>"), durable="reader")
            (msg,) = await sub.fetch(1, timeout=5)
            await msg.ack()
            return msg.data
        finally:
            await nc.close()

    assert asyncio.run(publish_and_read()) == b"A-1"


def test_restarting_the_cache_is_survived(stack) -> None:
    stack.restart("cache")
    eventually(
        lambda: httpx.post(stack["web"].url + "/visit", json={"who": "after"}, timeout=2)
        .raise_for_status(),
        timeout=10,
    )
