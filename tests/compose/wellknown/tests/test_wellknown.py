"""The suite as written for `docker compose up`: everything on localhost's usual ports."""

import asyncio

import nats
import psycopg
import redis


def test_postgres_on_5432() -> None:
    with psycopg.connect("postgresql://app:app-secret@localhost:5432/app") as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("app", "app")


def test_redis_on_6379() -> None:
    client = redis.Redis(host="localhost", port=6379)
    assert client.ping()
    client.close()


def test_nats_with_jetstream_on_4222() -> None:
    async def check() -> None:
        nc = await nats.connect("nats://localhost:4222")
        js = nc.jetstream()
        await js.add_stream(name="orders", subjects=["orders.*"])
        ack = await js.publish("orders.new", b"1")
        assert ack.stream == "orders"
        await nc.close()

    asyncio.run(check())
