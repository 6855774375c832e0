"""Category 4: failing steps are retried, then fail the task; the bus going down is handled."""

from __future__ import annotations

import httpx
import pytest
from taskflow.client import TaskflowError

from stacktest import eventually

ORDER = {"items": [{"sku": "A", "quantity": 1}]}


def test_a_step_that_fails_once_is_retried_and_the_task_completes(client, namespace) -> None:
    created = client.create_task(namespace, "order_fulfillment", {**ORDER, "payment_failures": 1})
    task = client.wait_for_completion(created.task_uuid, timeout=30)
    assert task.status == "complete"
    charge = next(s for s in task.steps if s.name == "charge_payment")
    assert charge.attempts == 2
    path = [(t["from"], t["to"]) for t in task.transitions if t["step"] == "charge_payment"]
    assert ("in_progress", "retrying") in path and ("retrying", "in_progress") in path


def test_a_step_that_keeps_failing_marks_the_task_error(client, namespace) -> None:
    created = client.create_task(namespace, "order_fulfillment", {**ORDER, "payment_failures": 9})
    task = client.wait_for_completion(created.task_uuid, timeout=30)
    assert task.status == "error"
    assert "charge_payment: payment declined (attempt 3)" in (task.error or "")
    states = {s.name: (s.state, s.attempts) for s in task.steps}
    assert states["charge_payment"] == ("error", 3)
    assert states["ship"] == ("pending", 0)  # never reached
    assert task.transitions[-1] == {**task.transitions[-1], "step": None, "to": "error"}


def test_bus_down_opens_the_circuit_and_heals_by_itself(stack, client, api_url, namespace) -> None:
    with stack.down("orchestrator->bus"):

        def unhealthy() -> dict:
            response = httpx.get(api_url + "/health", timeout=5)
            assert response.status_code == 503
            body = response.json()
            assert body["failing"] == ["nats"] and body["circuits"]["nats"] == "open"
            return body

        body = eventually(unhealthy, timeout=10)
        assert body["checks"]["postgres"] == "ok"
        with pytest.raises(TaskflowError) as refused:
            client.create_task(namespace, "linear_workflow", {"even_number": 2})
        assert refused.value.status == 503 and refused.value.body["dependency"] == "nats"
    eventually(lambda: httpx.get(api_url + "/health", timeout=5).status_code == 200, timeout=15)
    task = client.wait_for_completion(
        client.create_task(namespace, "linear_workflow", {"even_number": 2}).task_uuid, timeout=30
    )
    assert task.status == "complete" and task.result == 21
