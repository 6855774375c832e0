"""taskflow under a fixed arrival rate: completed tasks/s, end-to-end latency, transitions, stamps.

Starts examples/taskflow's stack, then drives ``linear_workflow`` tasks with stacktest's
load engine (open model): each iteration creates a task and polls it (every 10 ms) until
it is complete. Reported per rate:

- completed tasks/s, and end-to-end latency p50/p95/p99 as the client sees it (from the
  intended start, so queueing counts; polls back off from 10 ms to 200 ms) and as the system
  records it (``completed_at - created_at``);
- step transition latency: from a step becoming ``enqueued`` to a worker taking it
  (``in_progress``): the outbox relay, JetStream and the worker's pick-up;
- the reducer's BLAKE3 stamp time.

Targets (the ones such teams write down): end to end p95 < 300 ms at 100 tasks/s on 2 cores,
transition p95 < 50 ms, stamp < 2 ms. Then the rate is pushed in steps until p95 >= 300 ms.

Run: ``.venv/bin/python benchmarks/taskflow.py [--seconds 10] [--max-rate 400]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
from pathlib import Path

import psycopg

from stacktest import Stack
from stacktest.load import LoadTest, Phase

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "examples" / "taskflow" / "stack.toml"


def scenario_for(namespace: str):
    async def linear(session) -> None:
        created = await session.post(
            "/v1/tasks",
            json={"namespace": namespace, "name": "linear_workflow", "context": {"even_number": 8}},
            name="create",
            expect=201,
        )
        task_uuid = created.json()["task_uuid"]
        async with session.timed("end_to_end"):
            wait = 0.01  # polls back off, so a slow system is not also flooded with polls
            for _ in range(1000):
                polled = await session.get(f"/v1/tasks/{task_uuid}?view=summary", name="poll")
                task = polled.json()
                if task["status"] == "complete":
                    return
                if task["status"] == "error":
                    raise RuntimeError(task["error"])
                await asyncio.sleep(wait)
                wait = min(wait * 1.5, 0.2)
            raise TimeoutError(task_uuid)

    return linear


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def server_side(db_url: str, namespace: str) -> dict[str, float]:
    def column(conn: psycopg.Connection, sql: str, scale: float) -> list[float]:
        return [float(r[0]) * scale for r in conn.execute(sql, (namespace,)).fetchall()]

    with psycopg.connect(db_url) as conn:
        e2e = column(
            conn,
            "SELECT extract(epoch FROM completed_at - created_at) FROM tasks"
            " WHERE namespace = %s AND status = 'complete'",
            1000,
        )
        transitions = column(
            conn,
            "SELECT extract(epoch FROM b.at - a.at) FROM transitions a JOIN transitions b"
            " ON a.task_uuid = b.task_uuid AND a.step = b.step AND b.from_state = 'enqueued'"
            " AND b.to_state = 'in_progress' JOIN tasks t ON t.uuid = a.task_uuid"
            " WHERE a.to_state = 'enqueued' AND t.namespace = %s",
            1000,
        )
        stamps = column(
            conn,
            "SELECT s.stamp_us FROM stamps s JOIN tasks t ON t.uuid = s.task_uuid"
            " WHERE t.namespace = %s",
            0.001,
        )
    return {
        "e2e_p50": percentile(e2e, 0.5), "e2e_p95": percentile(e2e, 0.95),
        "transition_p50": percentile(transitions, 0.5),
        "transition_p95": percentile(transitions, 0.95),
        "stamp_mean_ms": statistics.mean(stamps) if stamps else float("nan"),
        "stamp_p95_ms": percentile(stamps, 0.95),
    }  # fmt: skip


def run_rate(stack: Stack, rate: float, seconds: float) -> dict[str, float]:
    namespace = f"bench_{int(rate)}"
    url = stack["orchestrator"].url
    test = LoadTest(scenario_for(namespace), url, [Phase(f"{rate:g}/s", seconds, rate)],
                    max_in_flight=2000, name=f"taskflow {rate:g}/s")  # fmt: skip
    result = test.run()
    e2e = result.latency("end_to_end")
    stats = result.operations["end_to_end"]["all"]
    out = {
        "rate": rate,
        "completed_per_s": stats["ok"] / seconds,
        "failed": stats["failed"] + result.phases[f"{rate:g}/s"]["dropped"],
        "client_p50": e2e["p50"], "client_p95": e2e["p95"], "client_p99": e2e["p99"],
        "valid": result.valid,
    }  # fmt: skip
    out.update(server_side(stack["db"].url + "/taskflow", namespace))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-rate", type=float, default=400.0)
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    rows = []
    with Stack.from_file(STACK) as stack:
        # the target rate first, then from low to high until p95 >= 300 ms
        steps = [r for r in (20.0, 40.0, 60.0, 80.0, 120.0, 160.0) if r <= args.max_rate]
        for rate in [100.0, *steps]:
            row = run_rate(stack, rate, args.seconds)
            rows.append(row)
            print(f"  {rate:5.0f}/s: completed {row['completed_per_s']:.1f}/s, client p95 "
                  f"{row['client_p95']:.1f} ms, failed {row['failed']}", flush=True)  # fmt: skip
            if rate != 100.0 and (row["client_p95"] >= 300 or row["failed"]):
                break
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# taskflow linear_workflow, {args.seconds:g}s per rate, open model; {machine}")
    header = ("rate/s", "done/s", "client p50", "p95", "p99", "server p50", "p95",
              "enq->run p50", "p95", "stamp ms")  # fmt: skip
    print(" ".join(f"{h:>12}" for h in header))
    for r in rows:
        cells = [r["rate"], r["completed_per_s"], r["client_p50"], r["client_p95"], r["client_p99"],
                 r["e2e_p50"], r["e2e_p95"], r["transition_p50"], r["transition_p95"],
                 r["stamp_mean_ms"]]  # fmt: skip
        print(" ".join(f"{c:12.2f}" for c in cells))
    first = rows[0]
    print(f"at 100/s: end to end p95 {first['client_p95']:.1f} ms (target < 300), "
          f"transition p95 {first['transition_p95']:.1f} ms (target < 50), "
          f"stamp {first['stamp_mean_ms']:.3f} ms (target < 2)")  # fmt: skip
    ok = [r for r in rows if r["client_p95"] < 300 and not r["failed"]]
    if ok:
        best = max(r["rate"] for r in ok)
        print(f"highest rate tried with p95 < 300 ms: {best:g} tasks/s")


if __name__ == "__main__":
    main()
