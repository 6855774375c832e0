"""NATS JetStream: the streams, and the outbox relay that publishes what the database decided.

Every state change that must be announced (a step became ready, a task ended) is written
to the ``outbox`` table in the same transaction as the change. Relays (in the
orchestrator and in every worker) claim outbox rows with ``FOR UPDATE SKIP LOCKED``,
publish them with the row id as the JetStream message id (so a relay that dies between
publishing and committing causes no duplicate), and delete them. ``NOTIFY`` wakes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import nats
import psycopg
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from taskflow import config

log = logging.getLogger("taskflow.bus")
RELAY_LOCK = 7_110_001  # the advisory lock that makes one relay the active one


async def connect(name: str, **callbacks: Any) -> Any:
    return await nats.connect(
        config.nats_url(),
        name=name,
        reconnect_time_wait=0.2,
        max_reconnect_attempts=-1,
        connect_timeout=2,
        ping_interval=2,
        max_outstanding_pings=2,
        **callbacks,
    )


async def ensure_streams(js: Any) -> None:
    wanted = [
        StreamConfig(
            name=config.STEPS_STREAM, subjects=[config.STEPS_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
            duplicate_window=120.0,
        ),
        StreamConfig(
            name=config.EVENTS_STREAM, subjects=[config.EVENTS_SUBJECTS],
            storage=StorageType.FILE, duplicate_window=120.0,
        ),
        StreamConfig(
            name=config.WORKFLOWS_STREAM, subjects=config.WORKFLOWS_SUBJECTS,
            storage=StorageType.FILE, duplicate_window=120.0,
        ),
    ]  # fmt: skip
    for stream in wanted:
        try:
            await js.add_stream(stream)
        except Exception:
            with contextlib.suppress(Exception):
                await js.update_stream(stream)


class OutboxRelay:
    """Publishes outbox rows; run one per process (they share the work safely)."""

    def __init__(self, js: Any, *, batch: int = 200) -> None:
        self.js = js
        self.batch = batch
        self.published = 0
        self.active = False
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Relay while this process holds the relay lock; otherwise stand by.

        One active relay (a Postgres advisory lock picks it) means one query per
        notification instead of one per process; the lock goes with its session, so when
        the active relay's process dies another takes over within a second.
        """
        while not self._stop.is_set():
            try:
                async with (
                    await psycopg.AsyncConnection.connect(
                        config.database_url(), autocommit=True
                    ) as listener,
                    await psycopg.AsyncConnection.connect(config.database_url()) as conn,
                ):
                    while not self._stop.is_set():
                        row = await (
                            await listener.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))
                        ).fetchone()
                        if row and row[0]:
                            break
                        await asyncio.sleep(1.0)  # standing by
                    self.active = True
                    await listener.execute("LISTEN taskflow_outbox")
                    while not self._stop.is_set():
                        moved = await self._publish_batch(conn)
                        if moved < self.batch:
                            await self._wait(listener, 0.1)
            except Exception as exc:  # the database or the bus went away: retry
                log.warning("outbox relay: %s", exc)
                await asyncio.sleep(0.2)
            finally:
                self.active = False

    async def _wait(self, listener: Any, timeout: float) -> None:
        gen = listener.notifies(timeout=timeout, stop_after=1)
        async for _ in gen:
            # let the rows of a burst of commits gather: one query and one batch of
            # publishes for them, for 2 ms of latency
            await asyncio.sleep(0.002)
            break

    async def _publish_batch(self, conn: Any) -> int:
        async with conn.transaction():
            rows = await (
                await conn.execute(
                    "SELECT id, subject, payload FROM outbox"
                    " WHERE available_at <= clock_timestamp()"
                    " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                    (self.batch,),
                )
            ).fetchall()
            # published together: the acks come back pipelined, not one round trip each
            await asyncio.gather(
                *(
                    self.js.publish(
                        subject,
                        json.dumps(payload).encode(),
                        headers={"Nats-Msg-Id": f"outbox-{row_id}"},
                        timeout=2,
                    )
                    for row_id, subject, payload in rows
                )
            )
            if rows:
                await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", ([r[0] for r in rows],))
        self.published += len(rows)
        return len(rows)

    def stop(self) -> None:
        self._stop.set()
