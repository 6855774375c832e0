"""Category 7: 500+ tasks under a nemesis; nothing lost or doubled, and a test of the test.

The nemesis faults every part of the system in turn: kills and pauses of each process
(workers, reducer, orchestrator, Postgres, NATS) and cuts or slows of the links between them.
The checkers read the history of what clients were told against what the system announced
and stored. Run against workers that ack a step before committing it (the classic
at-most-once bug), the same scenario must report lost tasks: a suite that cannot fail
proves nothing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
from taskflow.client import OrchestrationClient, TaskflowError, TaskNotFinished

from stacktest import Stack, eventually
from stacktest.faults import nemesis as nem
from stacktest.faults.history import History, total_queue, unique_ids
from tests.conftest import announcements

FAULTS = [
    nem.kill("worker.1"),
    nem.kill("worker.2"),
    nem.link_down("worker->bus"),
    nem.toxic("worker->db", latency="30ms"),
    nem.kill("db"),
    nem.pause("db"),
    nem.kill("bus"),
    nem.pause("bus"),
    nem.kill("orchestrator"),
    nem.link_down("orchestrator->db"),
    nem.kill("reducer"),
    nem.pause("reducer"),
    nem.link_down("reducer->db"),
    nem.link_down("reducer->bus"),
]


def run_scenario(
    stack: Any, namespace: str, history: History, *, tasks: int, finish_within: float
) -> dict[str, Any]:
    """Submit ``tasks`` workflows from 10 clients while the nemesis goes through every
    fault in turn; then wait (at most ``finish_within`` seconds in all) for them to finish
    and read what was announced and stored. Returns what the checkers found."""
    api_url = str(stack["orchestrator"].url)
    db_url = str(stack["db"].url) + "/taskflow"
    nats_url = str(stack["bus"].url)

    def submit(n: int) -> str | None:
        process = f"client-{n % 10}"
        with OrchestrationClient(api_url) as c:
            # one logical request, one Idempotency-Key: a retry after a 503 or a reset (the
            # COMMIT may have gone through: its outcome is unknown, recorded as such) finds
            # the task the earlier attempt made instead of making a second one
            for _ in range(100):
                try:
                    with history.op("enqueue", n, process) as op:
                        try:
                            created = c.create_task(
                                namespace, "diamond_workflow", {"value": n, "client_ref": n},
                                idempotency_key=f"submit-{n}", attempts=1,
                            )  # fmt: skip
                        except TaskflowError as exc:
                            if 400 <= exc.status < 500:
                                op.fail(str(exc))  # refused: definitely not stored
                            raise
                    return created.task_uuid
                except (TaskflowError, httpx.TransportError):
                    time.sleep(0.1)
            return None

    running = nem.Nemesis(stack, FAULTS, every="1.5s", hold="0.7s", mode="cycle", history=history)
    with running:
        with ThreadPoolExecutor(max_workers=10) as pool:
            uuids = [u for u in pool.map(submit, range(tasks)) if u]
        # the work goes on moving while the rest of the cycle runs: every fault, once
        eventually(lambda: len(running.applied) >= len(FAULTS), timeout=len(FAULTS) * 3)
    assert not running.errors, running.errors

    deadline = time.monotonic() + finish_within
    unfinished = []
    with OrchestrationClient(api_url) as c:
        for task_uuid in uuids:
            try:
                task = c.wait_for_completion(task_uuid, timeout=max(deadline - time.monotonic(), 0.1))
                assert task.status == "complete", (task.status, task.error)
            except TaskNotFinished as exc:
                unfinished.append((task_uuid, exc.task.status))

    with psycopg.connect(db_url, autocommit=True) as sql:
        rows = sql.execute(
            "SELECT uuid::text, (context->>'client_ref')::int FROM tasks WHERE namespace = %s",
            (namespace,),
        ).fetchall()
    refs = dict(rows)
    for _, ref in rows:  # each client request stored once: two rows for one ref = a double
        history.ok(history.invoke("store", None, "db"), ref)

    def announced() -> list[dict[str, Any]]:
        mine = [e for e in announcements(nats_url) if e["namespace"] == namespace]
        assert len(mine) >= len(uuids) - len(unfinished), (len(mine), len(uuids))
        return mine

    for event in eventually(announced, timeout=60):  # the workflow.completed consumer's view
        history.ok(history.invoke("dequeue", None, "consumer"), refs[event["task_uuid"]])
    with psycopg.connect(db_url, autocommit=True) as sql:  # (the reducer is done: it announced)
        (completed,) = sql.execute(
            "SELECT coalesce(sum(completed), 0) FROM aggregates WHERE namespace = %s", (namespace,)
        ).fetchone()
    return {
        "submitted": len(uuids),
        "unfinished": unfinished,
        "aggregated": completed,
        "applied": running.applied,
        "queue": total_queue(history),
        "stored_once": unique_ids(history, f="store"),
    }


def test_500_tasks_under_a_nemesis(stack, namespace, history) -> None:
    found = run_scenario(stack, namespace, history, tasks=520, finish_within=180)
    assert sorted(set(found["applied"])) == sorted(f.name for f in FAULTS)
    assert found["unfinished"] == []
    queue = found["queue"]
    assert queue["valid"] is True, queue
    assert queue["acknowledged_count"] == found["submitted"] == 520
    assert found["stored_once"]["valid"] is True, found["stored_once"]
    assert found["stored_once"]["generated_count"] == 520
    assert found["aggregated"] == 520  # the reducer counted each task once, despite its kills


def test_the_nemesis_catches_workers_that_ack_before_commit(monkeypatch, tmp_path, namespace) -> None:
    """The same scenario on a second taskflow stack whose workers are broken on purpose."""
    monkeypatch.setenv("TASKFLOW_ACK", "before-commit")
    stack_file = Path(__file__).parents[1] / "stack.toml"
    with Stack.from_file(stack_file, run_dir=tmp_path / "broken") as broken:
        worker_log = broken["worker.1"].log_path.read_text()
        assert "acks before-commit" in worker_log, worker_log
        found = run_scenario(broken, namespace, History(), tasks=200, finish_within=20)
    queue = found["queue"]
    assert queue["valid"] is False
    assert queue["lost_count"] > 0, found  # acknowledged, never announced: each one unfinished
    assert queue["lost_count"] <= len(found["unfinished"]), found
    print(f"caught: {queue['lost_count']} of {found['submitted']} tasks lost, e.g. "
          f"{found['unfinished'][:3]}")  # fmt: skip
