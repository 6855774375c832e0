"""The state machines, in Postgres: every change and its events in one transaction.

Task:  pending -> in_progress -> complete | error
Step:  pending -> enqueued -> in_progress -> complete | error, or -> retrying -> in_progress

A step message may be delivered more than once (a worker died before acking it, the
network dropped the ack). Running a step locks its task row and checks the step's
state first, and the whole change (result, transitions, next steps, events) commits
together, so the effect happens exactly once.
"""

from __future__ import annotations

import base64
import json
import uuid as uuidlib
from typing import Any

from psycopg.types.json import Jsonb

from taskflow import config, workflows

TERMINAL = ("complete", "error")


async def _transition(
    conn: Any, task_uuid: Any, step: str | None, from_state: str | None, to_state: str
) -> None:
    await conn.execute(
        "INSERT INTO transitions (task_uuid, step, from_state, to_state) VALUES (%s, %s, %s, %s)",
        (task_uuid, step, from_state, to_state),
    )


async def _outbox(conn: Any, subject: str, payload: dict[str, Any], delay: float = 0.0) -> None:
    await conn.execute(
        "INSERT INTO outbox (subject, payload, available_at)"
        " VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))",
        (subject, Jsonb(payload), delay),
    )


async def _enqueue(conn: Any, task_uuid: Any, step: str, attempt: int, delay: float = 0.0) -> None:
    await _outbox(
        conn,
        config.STEPS_SUBJECT,
        {"task_uuid": str(task_uuid), "step": step, "attempt": attempt},
        delay,
    )


class KeyReused(Exception):
    """An idempotency key sent again with a different request."""


#: Task uuids made from idempotency keys live in a namespace of their own.
KEYS = uuidlib.UUID("6f1d1c3e-2b8a-4e55-9f0b-7a3c2d1e0f42")


async def create_task(
    conn: Any, namespace: str, workflow: workflows.Workflow, context: dict[str, Any],
    key: str | None = None,
) -> tuple[uuidlib.UUID, bool]:  # fmt: skip
    """The task's uuid, and whether this call created it. With an idempotency ``key``
    (the client's, per logical request), the uuid follows from the namespace and the key:
    the same request sent again (a retry after a lost answer) finds the task the first one
    made; the same key with another request is :class:`KeyReused`."""
    task_uuid = uuidlib.uuid5(KEYS, f"{namespace}\0{key}") if key else uuidlib.uuid4()
    async with conn.pipeline(), conn.transaction():
        inserted = await (
            await conn.execute(
                "INSERT INTO tasks (uuid, namespace, name, context) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (uuid) DO NOTHING RETURNING uuid",
                (task_uuid, namespace, workflow.name, Jsonb(context)),
            )
        ).fetchone()
        if inserted is None:  # made by an earlier call with this key
            name, stored = await (
                await conn.execute("SELECT name, context FROM tasks WHERE uuid = %s", (task_uuid,))
            ).fetchone()
            if name != workflow.name or stored != context:
                raise KeyReused(key)
            return task_uuid, False
        await _transition(conn, task_uuid, None, None, "pending")
        roots = set(workflow.roots())
        for position, step in enumerate(workflow.steps):
            state = "enqueued" if step.name in roots else "pending"
            await conn.execute(
                "INSERT INTO steps (task_uuid, name, position, depends_on, state, max_attempts)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (task_uuid, step.name, position, list(step.depends_on), state, step.max_attempts),
            )
            await _transition(conn, task_uuid, step.name, None, "pending")
            if state == "enqueued":
                await _transition(conn, task_uuid, step.name, "pending", "enqueued")
                await _enqueue(conn, task_uuid, step.name, 1)
        await conn.execute("NOTIFY taskflow_outbox")
    return task_uuid, True


async def run_step(conn: Any, task_uuid: str, step_name: str, worker: str) -> str:
    """Run one step; returns done | retry | failed | duplicate | unknown."""
    # pipeline mode: the writes go out without waiting for each answer
    async with conn.pipeline(), conn.transaction():
        task = await (
            await conn.execute(
                "SELECT name, context, status, namespace FROM tasks WHERE uuid = %s FOR UPDATE",
                (task_uuid,),
            )
        ).fetchone()
        if task is None:
            return "unknown"
        name, context, status, namespace = task
        if status in TERMINAL:
            return "duplicate"
        row = await (
            await conn.execute(
                "SELECT state, attempts, max_attempts, depends_on FROM steps"
                " WHERE task_uuid = %s AND name = %s FOR UPDATE",
                (task_uuid, step_name),
            )
        ).fetchone()
        if row is None or row[0] in TERMINAL or row[0] == "pending":
            return "duplicate"
        state, attempts, max_attempts, depends_on = row
        workflow = workflows.get(name)
        assert workflow is not None
        attempt = attempts + 1
        await _transition(conn, task_uuid, step_name, state, "in_progress")
        if status == "pending":
            await conn.execute(
                "UPDATE tasks SET status = 'in_progress', updated_at = clock_timestamp()"
                " WHERE uuid = %s",
                (task_uuid,),
            )
            await _transition(conn, task_uuid, None, "pending", "in_progress")
        deps = dict(
            await (
                await conn.execute(
                    "SELECT name, result FROM steps WHERE task_uuid = %s AND name = ANY(%s)",
                    (task_uuid, depends_on),
                )
            ).fetchall()
        )
        try:
            result = workflow.step(step_name).handler(context, deps, attempt)
        except workflows.StepFailed as exc:
            if attempt < max_attempts:
                await conn.execute(
                    "UPDATE steps SET state = 'retrying', attempts = %s, error = %s, worker = %s,"
                    " updated_at = clock_timestamp() WHERE task_uuid = %s AND name = %s",
                    (attempt, str(exc), worker, task_uuid, step_name),
                )
                await _transition(conn, task_uuid, step_name, "in_progress", "retrying")
                backoff = config.RETRY_BACKOFF * 2 ** (attempt - 1)
                await _enqueue(conn, task_uuid, step_name, attempt + 1, delay=backoff)
                await conn.execute("NOTIFY taskflow_outbox")
                return "retry"
            await conn.execute(
                "UPDATE steps SET state = 'error', attempts = %s, error = %s, worker = %s,"
                " updated_at = clock_timestamp() WHERE task_uuid = %s AND name = %s",
                (attempt, str(exc), worker, task_uuid, step_name),
            )
            await _transition(conn, task_uuid, step_name, "in_progress", "error")
            await _finish(conn, task_uuid, namespace, "error", None, f"{step_name}: {exc}")
            return "failed"
        await conn.execute(
            "UPDATE steps SET state = 'complete', attempts = %s, result = %s, worker = %s,"
            " error = NULL, updated_at = clock_timestamp() WHERE task_uuid = %s AND name = %s",
            (attempt, Jsonb(result), worker, task_uuid, step_name),
        )
        await _transition(conn, task_uuid, step_name, "in_progress", "complete")
        rows = await (
            await conn.execute(
                "SELECT name, state, depends_on, result FROM steps WHERE task_uuid = %s",
                (task_uuid,),
            )
        ).fetchall()
        done = {r[0] for r in rows if r[1] == "complete"}
        for other, other_state, other_deps, _ in rows:
            if other_state == "pending" and set(other_deps) <= done:
                await conn.execute(
                    "UPDATE steps SET state = 'enqueued', updated_at = clock_timestamp()"
                    " WHERE task_uuid = %s AND name = %s",
                    (task_uuid, other),
                )
                await _transition(conn, task_uuid, other, "pending", "enqueued")
                await _enqueue(conn, task_uuid, other, 1)
        if len(done) == len(rows):
            results = {r[0]: r[3] for r in rows}
            await _finish(
                conn,
                task_uuid,
                namespace,
                "complete",
                workflows.final_result(workflow, results),
                None,
            )
        await conn.execute("NOTIFY taskflow_outbox")
        return "done"


async def _finish(
    conn: Any, task_uuid: Any, namespace: str, status: str, result: Any, error: str | None
) -> None:
    await conn.execute(
        "UPDATE tasks SET status = %s, result = %s, error = %s, updated_at = clock_timestamp(),"
        " completed_at = clock_timestamp() WHERE uuid = %s",
        (status, Jsonb(result) if result is not None else None, error, task_uuid),
    )
    await _transition(conn, task_uuid, None, "in_progress", status)
    event = "completed" if status == "complete" else "failed"
    await _outbox(
        conn,
        f"taskflow.events.task.{event}",
        {"event_id": f"{task_uuid}:{event}", "task_uuid": str(task_uuid), "namespace": namespace,
         "status": status},
    )  # fmt: skip


# -- reading ------------------------------------------------------------------------------------
def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def task_summary(conn: Any, task_uuid: str) -> dict[str, Any] | None:
    """Status and result only, in one query: for clients that poll."""
    row = await (
        await conn.execute(
            "SELECT uuid, status, result, error, completed_at FROM tasks WHERE uuid = %s",
            (task_uuid,),
        )
    ).fetchone()
    if row is None:
        return None
    return {"task_uuid": str(row[0]), "status": row[1], "result": row[2], "error": row[3],
            "completed_at": _iso(row[4])}  # fmt: skip


async def task_view(conn: Any, task_uuid: str) -> dict[str, Any] | None:
    task = await (
        await conn.execute(
            "SELECT uuid, namespace, name, context, status, result, error, created_at, updated_at,"
            " completed_at FROM tasks WHERE uuid = %s",
            (task_uuid,),
        )
    ).fetchone()
    if task is None:
        return None
    steps = await (
        await conn.execute(
            "SELECT name, state, attempts, result, error, worker, depends_on FROM steps"
            " WHERE task_uuid = %s ORDER BY position",
            (task_uuid,),
        )
    ).fetchall()
    transitions = await (
        await conn.execute(
            "SELECT step, from_state, to_state, at FROM transitions"
            " WHERE task_uuid = %s ORDER BY id",
            (task_uuid,),
        )
    ).fetchall()
    complete = sum(1 for s in steps if s[1] == "complete")
    return {
        "task_uuid": str(task[0]),
        "namespace": task[1],
        "name": task[2],
        "context": task[3],
        "status": task[4],
        "result": task[5],
        "error": task[6],
        "created_at": _iso(task[7]),
        "updated_at": _iso(task[8]),
        "completed_at": _iso(task[9]),
        "completion_percentage": round(100 * complete / len(steps), 1) if steps else 0.0,
        "steps": [
            {
                "name": s[0],
                "state": s[1],
                "attempts": s[2],
                "result": s[3],
                "error": s[4],
                "worker": s[5],
                "depends_on": s[6],
            }
            for s in steps
        ],
        "transitions": [
            {"step": t[0], "from": t[1], "to": t[2], "at": _iso(t[3])} for t in transitions
        ],
    }


def encode_cursor(created_at: Any, task_uuid: Any) -> str:
    raw = json.dumps([created_at.isoformat(), str(task_uuid)]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    created_at, task_uuid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    return created_at, task_uuid


async def list_tasks(
    conn: Any, namespace: str | None, status: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    where, args = [], []
    if namespace:
        where.append("namespace = %s")
        args.append(namespace)
    if status:
        where.append("status = %s")
        args.append(status)
    if cursor:
        created_at, last = decode_cursor(cursor)
        where.append("(created_at, uuid) > (%s::timestamptz, %s::uuid)")
        args += [created_at, last]
    sql = "SELECT uuid, namespace, name, status, created_at FROM tasks"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at, uuid LIMIT %s"
    rows = await (await conn.execute(sql, (*args, limit + 1))).fetchall()
    page = rows[:limit]
    return {
        "tasks": [
            {
                "task_uuid": str(r[0]),
                "namespace": r[1],
                "name": r[2],
                "status": r[3],
                "created_at": _iso(r[4]),
            }
            for r in page
        ],
        "next_cursor": encode_cursor(page[-1][4], page[-1][0]) if len(rows) > limit else None,
    }
