"""Category 3: 150 concurrent workflows from many clients; none lost, none duplicated."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from taskflow.client import OrchestrationClient

from stacktest import eventually
from stacktest.faults.history import total_queue, unique_ids
from tests.conftest import announcements


def test_150_concurrent_workflows(api_url, namespace, history, sql, nats_url) -> None:
    def submit(n: int) -> str:
        process = f"client-{n % 15}"
        with OrchestrationClient(api_url) as c, history.op("enqueue", n, process) as op:
            # client_ref: the client's own id for the task, carried through the system
            created = c.create_task(
                namespace, "linear_workflow", {"even_number": 2 * n, "client_ref": n}
            )
            op.value = n
        return created.task_uuid

    with ThreadPoolExecutor(max_workers=15) as pool:
        uuids = list(pool.map(submit, range(150)))
    with OrchestrationClient(api_url) as c:
        for task_uuid in uuids:
            assert c.wait_for_completion(task_uuid, timeout=60).status == "complete"

    def announced() -> list[dict]:
        mine = [e for e in announcements(nats_url) if e["namespace"] == namespace]
        assert len(mine) >= 150, len(mine)
        return mine

    refs = dict(sql.execute(
        "SELECT uuid::text, (context->>'client_ref')::int FROM tasks WHERE namespace = %s", (namespace,)
    ).fetchall())  # fmt: skip
    for ref in refs.values():  # each request stored once: two tasks with one ref = a double
        history.ok(history.invoke("store", None, "db"), ref)
    stored = unique_ids(history, f="store")
    assert stored["valid"] is True and stored["generated_count"] == 150, stored
    for event in eventually(announced, timeout=30):  # the workflow.completed consumer's view
        history.ok(history.invoke("dequeue", None, "consumer"), refs[event["task_uuid"]])
    result = total_queue(history)
    assert result["valid"] is True, result
    assert result["acknowledged_count"] == 150 and result["dequeued_count"] == 150
    workers = {row[0] for row in sql.execute(
        "SELECT DISTINCT s.worker FROM steps s JOIN tasks t ON t.uuid = s.task_uuid"
        " WHERE t.namespace = %s", (namespace,)).fetchall()}  # fmt: skip
    assert workers == {"worker.1", "worker.2"}, workers  # the work spread over both workers
