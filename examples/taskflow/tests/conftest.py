"""Fixtures shared by the taskflow suite: a client, SQL access, and the bus's announcements."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
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


@pytest.fixture(scope="session", autouse=True)
def _write_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    """With TASKFLOW_REPORT=path, write what the suite did to the system (for the demo)."""
    yield
    out = os.environ.get("TASKFLOW_REPORT")
    if not out:
        return
    from stacktest.pytest_plugin.fixtures import stack_session

    stack = stack_session(request.config).stack
    if stack is None:
        return
    counts: dict[str, Any] = {}
    with psycopg.connect(str(stack["db"].url) + "/taskflow", autocommit=True) as conn:
        # read when the system is quiescent: no task still moving, the outbox published,
        # every completed task stamped by the reducer (or 30 s, and the counts say so)
        deadline = time.monotonic() + 30
        busy = "busy"
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT (SELECT count(*) FROM tasks WHERE status NOT IN ('complete', 'error'))"
                " + (SELECT count(*) FROM outbox)"
                " + (SELECT count(*) FROM tasks t WHERE status = 'complete'"
                "    AND NOT EXISTS (SELECT 1 FROM stamps s WHERE s.task_uuid = t.uuid))"
            ).fetchone()[0]
            if busy == 0:
                break
            time.sleep(0.2)
        counts["quiescent"] = busy == 0
        with conn.transaction():  # one snapshot: the numbers add up
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            counts["tasks"] = dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall())
            counts["steps_run"] = conn.execute("SELECT count(*) FROM steps WHERE state = 'complete'").fetchone()[0]
            counts["transitions"] = conn.execute("SELECT count(*) FROM transitions").fetchone()[0]
            counts["stamps"] = conn.execute("SELECT count(*) FROM stamps").fetchone()[0]
            counts["outbox_left"] = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            counts["namespaces"] = conn.execute("SELECT count(DISTINCT namespace) FROM tasks").fetchone()[0]
            counts["steps_by_worker"] = dict(
                conn.execute(
                    "SELECT worker, count(*) FROM steps WHERE state = 'complete' GROUP BY worker"
                ).fetchall()
            )
            # every task that ended in error, with the step that failed and why
            counts["errors"] = [
                {"task": name, "namespace": ns, "error": error, "step": step, "step_error": step_error}
                for name, ns, error, step, step_error in conn.execute(
                    "SELECT t.name, t.namespace, t.error, s.name, s.error FROM tasks t"
                    " LEFT JOIN steps s ON s.task_uuid = t.uuid AND s.state = 'error'"
                    " WHERE t.status = 'error' ORDER BY t.namespace, t.name"
                ).fetchall()
            ]
    faults: dict[str, int] = {}
    events = stack.run_dir.events_file
    if events.exists():
        for line in events.read_text().splitlines():
            event = json.loads(line)
            what = str(event.get("event", ""))
            if what.startswith("fault: ") and what != "fault: healed":
                key = what.removeprefix("fault: ")
                faults[key] = faults.get(key, 0) + 1
    counts["faults"] = faults
    Path(out).write_text(json.dumps(counts, indent=1))
