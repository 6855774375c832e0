"""Category 5: kills and restarts mid-flight; every accepted task completes exactly once."""

from __future__ import annotations

import time

from taskflow.client import OrchestrationClient

from stacktest import eventually


def exactly_once(sql, namespace: str, expected: int) -> None:
    rows = sql.execute(
        "SELECT t.uuid, count(*) FILTER (WHERE tr.to_state = 'complete' AND tr.step IS NULL),"
        " count(*) FILTER (WHERE tr.to_state = 'complete' AND tr.step IS NOT NULL),"
        " (SELECT count(*) FROM steps s WHERE s.task_uuid = t.uuid)"
        " FROM tasks t JOIN transitions tr ON tr.task_uuid = t.uuid WHERE t.namespace = %s"
        " GROUP BY t.uuid",
        (namespace,),
    ).fetchall()
    assert len(rows) == expected
    for task_uuid, task_done, steps_done, steps in rows:
        assert task_done == 1, task_uuid  # the task completed once
        assert steps_done == steps, task_uuid  # each step completed once


def test_orchestrator_and_a_worker_killed_mid_flight(stack, api_url, namespace, sql) -> None:
    with OrchestrationClient(api_url) as c:
        accepted = [
            c.create_task(namespace, "tree_workflow", {"value": n}).task_uuid for n in range(40)
        ]
    stack.kill("worker.1")
    stack.kill("orchestrator")
    time.sleep(0.5)  # work continues on worker.2 meanwhile
    stack.start_service("orchestrator")
    stack.start_service("worker.1")
    with OrchestrationClient(stack["orchestrator"].url) as c:
        for task_uuid in accepted:
            assert c.wait_for_completion(task_uuid, timeout=60).status == "complete"
    exactly_once(sql, namespace, 40)
    eventually(
        lambda: (
            sql.execute(
                "SELECT completed FROM aggregates WHERE namespace = %s", (namespace,)
            ).fetchone()
            == (40,)
        ),
        timeout=15,
    )  # the reducer counted each once


def test_postgres_restart_mid_flight(stack, api_url, namespace, sql, db_url) -> None:
    import psycopg

    with OrchestrationClient(api_url) as c:
        accepted = [
            c.create_task(namespace, "diamond_workflow", {"value": n}).task_uuid for n in range(30)
        ]
        stack.restart("db")
        for task_uuid in accepted:
            assert c.wait_for_completion(task_uuid, timeout=60).status == "complete"
    with psycopg.connect(db_url, autocommit=True) as fresh:
        exactly_once(fresh, namespace, 30)
