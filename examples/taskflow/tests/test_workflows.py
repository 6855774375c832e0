"""Category 1: each workflow template end to end, with its transitions, event and stamp."""

from __future__ import annotations

import json

import pytest
from blake3 import blake3

from stacktest import eventually
from tests.conftest import announcements

TEMPLATES = [
    ("linear_workflow", {"even_number": 6}, 69),  # ((6^2 + 10) * 3) / 2
    ("diamond_workflow", {"value": 5}, 118),  # start 6, left 12, right 106
    ("tree_workflow", {"value": 1}, 270),  # a 2, b 3: 20 + 40 + 90 + 120
    ("mixed_dag_workflow", {"value": 4}, 66),  # fetch 8, parse 11, audit 1: 55 + 10 + 1
    (
        "order_fulfillment",
        {"items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]},
        {"shipped": True, "paid": 750},
    ),
]
STEP_PATH = [(None, "pending"), ("pending", "enqueued"), ("enqueued", "in_progress"),
             ("in_progress", "complete")]  # fmt: skip
TASK_PATH = [(None, "pending"), ("pending", "in_progress"), ("in_progress", "complete")]


@pytest.mark.parametrize(("name", "context", "expected"), TEMPLATES, ids=[t[0] for t in TEMPLATES])
def test_template_end_to_end(client, namespace, sql, nats_url, name, context, expected) -> None:
    created = client.create_task(namespace, name, context)
    assert created.status == "pending"
    task = client.wait_for_completion(created.task_uuid, timeout=30)
    assert task.status == "complete", task.error
    assert task.result == expected
    assert task.completion_percentage == 100.0
    assert all(step.state == "complete" and step.attempts == 1 for step in task.steps)

    # every transition of the task and of each step, recorded in order
    by_step: dict[str | None, list[tuple[str | None, str]]] = {}
    for t in task.transitions:
        by_step.setdefault(t["step"], []).append((t["from"], t["to"]))
    assert by_step.pop(None) == TASK_PATH
    assert set(by_step) == {s.name for s in task.steps}
    assert all(path == STEP_PATH for path in by_step.values()), by_step

    # the completion event, and the reducer's stamp of the result
    expected_stamp = blake3(
        json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    stamp = eventually(
        lambda: sql.execute(
            "SELECT blake3 FROM stamps WHERE task_uuid = %s", (task.task_uuid,)
        ).fetchone(),
        timeout=10,
    )
    assert stamp[0] == expected_stamp
    events = eventually(
        lambda: [e for e in announcements(nats_url) if e["task_uuid"] == task.task_uuid], timeout=10
    )
    assert [(e["subject"], e["status"], e["blake3"]) for e in events] == [
        ("workflow.completed", "complete", expected_stamp)
    ]


def test_odd_or_missing_input_is_refused_at_creation(client, namespace) -> None:
    from taskflow.client import TaskflowError

    for name, context, needle in [
        ("linear_workflow", {"even_number": 7}, "must be even"),
        ("linear_workflow", {}, "needs 'even_number'"),
        ("linear_workflow", {"even_number": "6"}, "must be an integer"),
        ("order_fulfillment", {"items": []}, "non-empty list"),
        ("diamond_workflow", {"value": True}, "must be an integer"),
    ]:
        with pytest.raises(TaskflowError) as info:
            client.create_task(namespace, name, context)
        assert info.value.status == 422
        assert needle in info.value.body["details"][0]["problem"]
    assert client.list_tasks(namespace)["tasks"] == []  # nothing was created


def test_api_errors(client, api_url) -> None:
    import httpx
    from taskflow.client import TaskflowError

    with pytest.raises(TaskflowError) as unknown:
        client.create_task("ns", "no_such_workflow", {})
    assert unknown.value.status == 400 and "linear_workflow" in unknown.value.body["known"]
    with pytest.raises(TaskflowError) as missing:
        client.get_task("00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404
    bad = httpx.post(api_url + "/v1/tasks", json={"namespace": "UPPER", "name": 3, "extra": 1})
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["details"]}
    assert fields == {"namespace", "name", "extra"}
    assert httpx.post(api_url + "/v1/tasks", content=b"{not json").status_code == 422
    assert httpx.get(api_url + "/v1/tasks", params={"limit": 0}).status_code == 422
