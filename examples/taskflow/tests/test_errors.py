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


def test_the_breaker_lets_exactly_one_probe_through_when_half_open(monkeypatch) -> None:
    """Pure logic (a clock moved by hand): open after the threshold, one probe after the
    cooldown, every other call refused until the probe reports; a failed probe reopens."""
    from taskflow import breaker as module
    from taskflow.breaker import Breaker, CircuitOpen

    now = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    b = Breaker("postgres", threshold=2, cooldown=1.0)
    b.failure()
    b.check()  # one failure: still closed
    b.failure()
    with pytest.raises(CircuitOpen):
        b.check()
    now[0] += 1.0
    assert b.state == "half_open"
    b.check()  # the probe
    for _ in range(5):
        with pytest.raises(CircuitOpen):
            b.check()  # the others wait for its answer
    b.failure()  # the probe failed: open again, for a whole cooldown
    assert b.state == "open" and b.trips == 2
    now[0] += 1.0
    b.check()  # a new probe
    b.success()
    assert b.state == "closed"
    for _ in range(5):
        b.check()  # closed: everyone through


def test_a_create_sent_again_with_its_idempotency_key_makes_one_task(client, namespace, sql) -> None:
    """A client that did not get the answer (a reset, a 503 after the COMMIT) sends the
    same request again with the same key: the first task is found, none is added; the same
    key with another request is refused."""
    first = client.create_task(namespace, "linear_workflow", {"even_number": 4},
                               idempotency_key="order-77")  # fmt: skip
    again = client.create_task(namespace, "linear_workflow", {"even_number": 4},
                               idempotency_key="order-77")  # fmt: skip
    assert again.task_uuid == first.task_uuid
    count = sql.execute("SELECT count(*) FROM tasks WHERE namespace = %s", (namespace,)).fetchone()
    assert count == (1,)
    with pytest.raises(TaskflowError) as refused:
        client.create_task(namespace, "linear_workflow", {"even_number": 6},
                           idempotency_key="order-77")  # fmt: skip
    assert refused.value.status == 422
    other = client.create_task(namespace, "linear_workflow", {"even_number": 4})  # a new key
    assert other.task_uuid != first.task_uuid

