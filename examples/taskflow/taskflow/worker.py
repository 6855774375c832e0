"""The worker: takes ready steps from the JetStream work queue, runs them, reports in Postgres.

Run several (``replicas = 2``): they share one durable consumer, so each step message
goes to one of them; a message not acked within ``TASKFLOW_ACK_WAIT`` seconds (the
worker died mid-step) is delivered again, and ``store.run_step`` makes the second run
harmless. Each worker also runs an outbox relay and writes a heartbeat every second.

``TASKFLOW_ACK=before-commit`` makes a deliberately broken worker, for the suite's own
test: it acks each message as it takes it, before the step's result is committed (the
classic at-most-once bug). Nothing goes wrong until a worker dies, or loses its database,
between the two; then the step is gone for good. The nemesis suite must catch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from typing import Any

import psycopg
from nats.js.api import AckPolicy, ConsumerConfig
from psycopg_pool import AsyncConnectionPool

from taskflow import bus, config, store

log = logging.getLogger("taskflow.worker")
CONCURRENCY = int(os.environ.get("TASKFLOW_WORKER_CONCURRENCY", "8"))
ACK = os.environ.get("TASKFLOW_ACK", "after-commit")
if ACK not in ("after-commit", "before-commit"):
    raise SystemExit(f"TASKFLOW_ACK is after-commit or before-commit, not {ACK!r}")


def worker_id() -> str:
    return (
        os.environ.get("WORKER_ID")
        or os.environ.get("STACKTEST_SERVICE")
        or (f"{socket.gethostname()}-{os.getpid()}")
    )


async def heartbeat(me: str, counter: dict[str, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                config.database_url(), autocommit=True
            ) as conn:
                while not stop.is_set():
                    await conn.execute(
                        "INSERT INTO workers (id, started_at, last_seen, steps_done)"
                        " VALUES (%s, clock_timestamp(), clock_timestamp(), %s)"
                        " ON CONFLICT (id) DO UPDATE SET last_seen = clock_timestamp(),"
                        " steps_done = EXCLUDED.steps_done",
                        (me, counter["done"]),
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        except Exception as exc:
            log.warning("heartbeat: %s", exc)
            await asyncio.sleep(0.5)


async def consume(sub: Any, me: str, counter: dict[str, int], stop: asyncio.Event) -> None:
    """One fetch loop per process (a pull subscription serves one fetch at a time), and up
    to CONCURRENCY steps running at once, each on its own pooled connection."""
    pool = AsyncConnectionPool(
        config.database_url(), min_size=1, max_size=CONCURRENCY, open=False,
        check=AsyncConnectionPool.check_connection,
    )  # fmt: skip
    await pool.open(wait=False)
    running: set[asyncio.Task[None]] = set()
    try:
        while not stop.is_set():
            room = CONCURRENCY - len(running)
            if room <= 0:
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await sub.fetch(room, timeout=0.5)
            except TimeoutError:
                continue
            except Exception as exc:  # NATS unreachable or reconnecting
                log.warning("consumer: %s", exc)
                await asyncio.sleep(0.2)
                continue
            for msg in msgs:
                task = asyncio.create_task(handle(pool, msg, me, counter))
                running.add(task)
                task.add_done_callback(running.discard)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await pool.close()


async def handle(pool: AsyncConnectionPool, msg: Any, me: str, counter: dict[str, int]) -> None:
    job = json.loads(msg.data)
    if ACK == "before-commit":  # the deliberate bug: the message is gone before the result
        with contextlib.suppress(Exception):
            await msg.ack()
    try:
        async with pool.connection(timeout=5) as conn:
            outcome = await store.run_step(conn, job["task_uuid"], job["step"], me)
    except Exception as exc:  # the database is unreachable: let the message come back
        log.warning("step %s of %s: %s", job["step"], job["task_uuid"], exc)
        with contextlib.suppress(Exception):
            await msg.nak(delay=0.5)
        return
    with contextlib.suppress(Exception):
        await msg.ack()
    if outcome in ("done", "retry", "failed"):
        counter["done"] += 1
    log.debug("%s %s: %s", job["task_uuid"], job["step"], outcome)


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    me = worker_id()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await bus.connect(f"worker {me}")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    sub = await js.pull_subscribe(
        config.STEPS_SUBJECT,
        durable="workers",
        stream=config.STEPS_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, ack_wait=config.ACK_WAIT, max_deliver=-1,
            max_ack_pending=10_000,
        ),
    )  # fmt: skip
    relay = bus.OutboxRelay(js)
    counter = {"done": 0}
    tasks = [
        asyncio.create_task(relay.run()),
        asyncio.create_task(heartbeat(me, counter, stop)),
        asyncio.create_task(consume(sub, me, counter, stop)),
    ]
    log.info("worker %s ready (acks %s)", me, ACK)
    await stop.wait()
    relay.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
