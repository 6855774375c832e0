"""A team's own integration suite: conventional variables, Toxiproxy on localhost:8474."""

import asyncio
import json
import os
import time
import urllib.request

import nats
import psycopg
import redis
from toxiproxy import Toxiproxy


def get(path: str) -> dict:
    with urllib.request.urlopen(os.environ["APP_URL"] + path, timeout=10) as response:
        return json.loads(response.read())


def test_postgres_from_database_url() -> None:
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)
    assert os.environ["PGDATABASE"] == "app" and os.environ["PGHOST"] == "127.0.0.1"


def test_redis_from_redis_url() -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    client.close()


def test_nats_from_nats_url() -> None:
    async def round_trip() -> bytes:
        nc = await nats.connect(os.environ["NATS_URL"])
        sub = await nc.subscribe("greetings")
        await nc.publish("greetings", b"hello")
        message = await sub.next_msg(timeout=5)
        await nc.close()
        return message.data

    assert asyncio.run(round_trip()) == b"hello"


def test_toxiproxy_on_its_default_port_and_a_stock_teardown() -> None:
    server = Toxiproxy()  # 127.0.0.1:8474, as every Toxiproxy client assumes
    edge = server.get_proxy("app->db")
    edge.add_toxic(name="slow", type="latency", attributes={"latency": 300})
    started = time.monotonic()
    assert get("/items") == {"items": 1}
    assert time.monotonic() - started >= 0.3  # the app's queries cross the edge
    server.destroy_all()  # a stock teardown: the stack's own edge must survive it
    started = time.monotonic()
    assert get("/items") == {"items": 1}
    assert time.monotonic() - started < 0.3
    assert "app->db" in server.proxies()
