"""Category 9: a short load run with k6-style thresholds, as a CI gate.

The gate's limits are the targets for this suite's own run: the whole stack, its fault
proxies (every edge, the orchestrator's database connections too, relayed by this test
process) and the generator sharing a 2-core CI machine, peak 30 tasks/s, after the rest of
the suite (1,100 tasks already in the database). Measured on such a machine (2026-12-07):
alone, in eight runs, creation p95 23-200 ms, end to end p95 170-658 ms; inside the whole
suite (what CI runs) up to 258 ms and 976 ms, which failed limits of 250 ms and 1 s set from
the runs alone. The limits (500 ms, 2 s) are about 2x the worst in-suite run seen. The
product's targets (creation p95 < 50 ms, end to end p95 < 300 ms at 100 tasks/s) are a
benchmark's question, not a CI gate's: benchmarks/taskflow.py measures them on a quiet
machine and says whether they are met (docs/performance.md).
"""

from __future__ import annotations

import asyncio

from stacktest.load import Phase

PHASES = [Phase("warm", "5s", 5), Phase("normal", "10s", 15), Phase("peak", "5s", 30)]
THRESHOLDS = {
    "http_req_duration{name:create}": ["p(95)<500"],
    "latency{name:end_to_end}": ["p(95)<2000"],
    "errors": ["rate<0.01"],
    "dropped": ["count==0"],
}


def test_load_gate(load, namespace) -> None:
    async def workflow(session) -> None:
        created = await session.post(
            "/v1/tasks", json={"namespace": namespace, "name": "linear_workflow",
                               "context": {"even_number": 8}},
            name="create", expect=201,
        )  # fmt: skip
        task_uuid = created.json()["task_uuid"]
        async with session.timed("end_to_end"):
            # polls back off (20 ms to 200 ms): at the peak, fixed 20 ms polls were ~1,500
            # requests/s of the generator's own CPU, and it fell behind its schedule
            wait = 0.02
            for _ in range(400):
                task = (await session.get(f"/v1/tasks/{task_uuid}", name="poll")).json()
                if task["status"] == "complete":
                    break
                assert task["status"] != "error", task["error"]
                await asyncio.sleep(wait)
                wait = min(wait * 1.5, 0.2)
            else:
                raise TimeoutError(f"task {task_uuid} did not complete")

    result = load(workflow, PHASES, service="orchestrator", thresholds=THRESHOLDS)
    print(result.summary())
    assert result.valid, result.invalid_reasons
    assert result.thresholds_ok, "\n".join(v.describe() for v in result.thresholds)
    assert result.phases["peak"]["completed"] == result.phases["peak"]["offered"] == 150
