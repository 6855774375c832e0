"""Category 8: smoke across protocols: REST, the WebSocket event stream, Prometheus metrics."""

from __future__ import annotations

import asyncio
import json

import httpx
from prometheus_client.parser import text_string_to_metric_families


def test_websocket_streams_every_transition(client, api_url, namespace) -> None:
    import websockets

    created = client.create_task(namespace, "tree_workflow", {"value": 3})

    async def listen() -> list[dict]:
        url = api_url.replace("http://", "ws://") + f"/v1/tasks/{created.task_uuid}/events"
        received = []
        async with websockets.connect(url, open_timeout=5) as ws:
            async for message in ws:
                received.append(json.loads(message))
        return received

    events = asyncio.run(asyncio.wait_for(listen(), 30))
    task = client.get_task(created.task_uuid)
    assert [(e["step"], e["from"], e["to"]) for e in events] == [
        (t["step"], t["from"], t["to"]) for t in task.transitions
    ]
    assert events[-1]["step"] is None and events[-1]["to"] == "complete"


def test_metrics_parse_as_prometheus_text(client, api_url, namespace) -> None:
    client.create_task(namespace, "linear_workflow", {"even_number": 4})
    text = httpx.get(api_url + "/metrics", timeout=5).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    created = families["taskflow_tasks_created"]
    assert any(
        s.labels.get("workflow") == "linear_workflow" and s.value >= 1 for s in created.samples
    )
    circuits = {s.labels["dependency"]: s.value for s in families["taskflow_circuit_state"].samples}
    assert circuits == {"postgres": 0.0, "nats": 0.0}
    assert "taskflow_http_request_duration_seconds" in families


def test_rest_basics(client, api_url) -> None:
    code, health = client.health()
    assert code == 200 and health["status"] == "ok" and health["failing"] == []
    workers = client.workers()
    assert {w["id"] for w in workers if w["alive"]} == {"worker.1", "worker.2"}
    assert httpx.get(api_url + "/v1/tasks/not-a-uuid", timeout=5).status_code == 404


def test_async_client_creates_and_waits(api_url, namespace) -> None:
    from taskflow.client import AsyncOrchestrationClient, TaskflowError

    async def scenario() -> tuple[list[int], int]:
        async with AsyncOrchestrationClient(api_url) as client:
            created = await asyncio.gather(
                *(client.create_task(namespace, "linear_workflow", {"even_number": 2 * n})
                  for n in range(1, 4))
            )  # fmt: skip
            tasks = await asyncio.gather(
                *(client.wait_for_completion(c.task_uuid, timeout=30) for c in created)
            )
            try:
                await client.get_task("00000000-0000-0000-0000-000000000000")
            except TaskflowError as exc:
                return [t.result for t in tasks], exc.status
            return [t.result for t in tasks], 200

    results, missing = asyncio.run(scenario())
    assert results == [21, 39, 69] and missing == 404  # ((n^2 + 10) * 3) / 2 for 2, 4, 6
