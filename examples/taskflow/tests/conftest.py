"""Fixtures shared by the taskflow suite: a client, SQL access, and the bus's announcements."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from taskflow.client import OrchestrationClient


@pytest.fixture(scope="session")
def api_url(stack: Any) -> str:
    return str(stack["orchestrator"].url)


@pytest.fixture(scope="session")
def client(api_url: str) -> Iterator[OrchestrationClient]:
    with OrchestrationClient(api_url, timeout=15) as c:
        yield c


@pytest.fixture(scope="session")
def db_url(stack: Any) -> str:
    return str(stack["db"].url) + "/taskflow"


@pytest.fixture
def sql(db_url: str) -> Iterator[Any]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def announcements(nats_url: str, subject: str = "workflow.>") -> list[dict[str, Any]]:
    """Every message the reducer published so far on the workflow stream."""
    import nats

    async def read() -> list[dict[str, Any]]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("TASKFLOW_WORKFLOWS")
            total = info.state.messages
            if not total:
                return []
            sub = await js.subscribe(subject, stream="TASKFLOW_WORKFLOWS", ordered_consumer=True)
            out = []
            while len(out) < total:
                try:
                    msg = await sub.next_msg(timeout=5)
                except Exception:
                    break
                out.append({"subject": msg.subject, **json.loads(msg.data)})
            await sub.unsubscribe()
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


@pytest.fixture(scope="session")
def nats_url(stack: Any) -> str:
    return str(stack["bus"].url)
