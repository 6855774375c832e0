"""Category 6: with the workers stopped, tasks wait; with them back, they complete."""

from __future__ import annotations

import time


def test_tasks_wait_for_the_workers(stack, client, namespace) -> None:
    with stack.stopped("worker"):
        accepted = [
            client.create_task(namespace, "linear_workflow", {"even_number": 2 * n}).task_uuid
            for n in range(5)
        ]
        time.sleep(1.0)
        for task_uuid in accepted:
            task = client.get_task(task_uuid)
            assert task.status == "pending"
            assert {s.name: s.state for s in task.steps} == {
                "square": "enqueued", "add": "pending", "multiply": "pending", "divide": "pending"
            }  # fmt: skip
    for task_uuid in accepted:
        assert client.wait_for_completion(task_uuid, timeout=30).status == "complete"
