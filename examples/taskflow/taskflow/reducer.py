"""The reducer: per-namespace aggregates and a BLAKE3 stamp of each finished task's result.

It consumes ``taskflow.events.task.*`` with a durable consumer. Each event is applied
once (its id goes into ``processed_events`` in the same transaction as the aggregate
change), and then announced as ``workflow.completed`` / ``workflow.failed`` with the event
id as the JetStream message id, so a redelivered event is neither counted nor announced
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from typing import Any

import psycopg
from blake3 import blake3
from nats.js.api import AckPolicy, ConsumerConfig

from taskflow import bus, config

log = logging.getLogger("taskflow.reducer")


def canonical(result: Any) -> bytes:
    """The bytes a stamp is computed over: the result as compact, key-sorted JSON."""
    return json.dumps(result, sort_keys=True, separators=(",", ":")).encode()


def stamp(result: Any) -> str:
    return blake3(canonical(result)).hexdigest()


async def apply(conn: Any, event: dict[str, Any]) -> dict[str, Any] | None:
    """Apply one event; returns what to announce (None for an unknown task)."""
    async with conn.transaction():
        fresh = await (
            await conn.execute(
                "INSERT INTO processed_events (event_id) VALUES (%s)"
                " ON CONFLICT DO NOTHING RETURNING event_id",
                (event["event_id"],),
            )
        ).fetchone()
        task = await (
            await conn.execute(
                "SELECT namespace, status, result, extract(epoch FROM completed_at - created_at)"
                " FROM tasks WHERE uuid = %s",
                (event["task_uuid"],),
            )
        ).fetchone()
        if task is None:
            return None
        namespace, status, result, seconds = task
        digest = None
        if status == "complete":
            began = time.perf_counter()
            digest = stamp(result)
            took_us = (time.perf_counter() - began) * 1_000_000
            if fresh:
                await conn.execute(
                    "INSERT INTO stamps (task_uuid, blake3, stamp_us) VALUES (%s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (event["task_uuid"], digest, took_us),
                )
        if fresh:
            done = 1 if status == "complete" else 0
            await conn.execute(
                "INSERT INTO aggregates (namespace, completed, failed, total_duration_ms)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (namespace) DO UPDATE SET"
                " completed = aggregates.completed + EXCLUDED.completed,"
                " failed = aggregates.failed + EXCLUDED.failed,"
                " total_duration_ms = aggregates.total_duration_ms + EXCLUDED.total_duration_ms",
                (namespace, done, 1 - done, float(seconds or 0) * 1000),
            )
    return {"task_uuid": event["task_uuid"], "namespace": namespace, "status": status,
            "blake3": digest}  # fmt: skip


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await bus.connect("reducer")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    sub = await js.pull_subscribe(
        "taskflow.events.task.*",
        durable="reducer",
        stream=config.EVENTS_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=5, max_deliver=-1),
    )
    log.info("reducer ready")
    conn = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(config.database_url())
            try:
                msgs = await sub.fetch(20, timeout=0.5)
            except TimeoutError:
                continue
            for msg in msgs:
                event = json.loads(msg.data)
                announcement = await apply(conn, event)
                if announcement is not None:
                    subject = (
                        "workflow.completed" if announcement["status"] == "complete"
                        else "workflow.failed"
                    )  # fmt: skip
                    await js.publish(
                        subject, json.dumps(announcement).encode(),
                        headers={"Nats-Msg-Id": event["event_id"]}, timeout=2,
                    )  # fmt: skip
                await msg.ack()
        except Exception as exc:
            log.warning("reducer: %s", exc)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            conn = None
            await asyncio.sleep(0.2)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
