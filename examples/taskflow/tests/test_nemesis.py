"""Category 7: 500+ tasks under a nemesis (kills, pauses, link faults); nothing lost or doubled."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from taskflow.client import OrchestrationClient, TaskflowError

from stacktest import eventually
from stacktest.faults import nemesis as nem
from stacktest.faults.history import total_queue, unique_ids
from tests.conftest import announcements

FAULTS = [
    nem.kill("worker.1"),
    nem.kill("worker.2"),
    nem.pause("reducer"),
    nem.link_down("worker->bus"),
    nem.toxic("worker->db", latency="30ms"),
    nem.kill("reducer"),
]


def test_500_tasks_under_a_nemesis(
    stack, api_url, namespace, history, nemesis, sql, nats_url
) -> None:
    running = nemesis(FAULTS, every="1.5s", hold="0.7s", seed=11)

    def submit(n: int) -> str | None:
        with OrchestrationClient(api_url) as c:
            # one logical request, one Idempotency-Key: a retry after a 503 (whose COMMIT may
            # have gone through: its outcome is unknown, recorded as such) finds the task
            # the earlier attempt made instead of making a second one
            for _ in range(20):
                try:
                    with history.op("enqueue", n, f"client-{n % 10}") as op:
                        try:
                            created = c.create_task(
                                namespace, "diamond_workflow", {"value": n, "client_ref": n},
                                idempotency_key=f"submit-{n}", attempts=1,
                            )
                        except TaskflowError as exc:
                            if 400 <= exc.status < 500:
                                op.fail(str(exc))  # refused: definitely not stored
                            raise
                    history.ok(
                        history.invoke("generate", None, f"client-{n % 10}"), created.task_uuid
                    )
                    return created.task_uuid
                except TaskflowError:
                    time.sleep(0.1)
            return None

    with ThreadPoolExecutor(max_workers=10) as pool:
        uuids = [u for u in pool.map(submit, range(520)) if u]
    running.stop()
    assert len(running.applied) >= 3, running.log
    with OrchestrationClient(api_url) as c:
        for task_uuid in uuids:
            assert c.wait_for_completion(task_uuid, timeout=120).status == "complete"

    refs = dict(sql.execute(
        "SELECT uuid::text, (context->>'client_ref')::int FROM tasks WHERE namespace = %s", (namespace,)
    ).fetchall())  # fmt: skip

    def announced() -> list[dict]:
        mine = [e for e in announcements(nats_url) if e["namespace"] == namespace]
        assert len(mine) >= len(uuids)
        return mine

    for event in eventually(announced, timeout=60):
        history.ok(history.invoke("dequeue", None, "consumer"), refs[event["task_uuid"]])
    queue = total_queue(history)
    assert queue["valid"] is True, queue
    assert queue["acknowledged_count"] == len(uuids) >= 500
    assert unique_ids(history)["valid"] is True
    completed = sql.execute(
        "SELECT completed FROM aggregates WHERE namespace = %s", (namespace,)
    ).fetchone()
    assert completed == (len(uuids),)  # the reducer counted each task once, despite its kills
