"""The orchestrator: the HTTP API (Starlette), circuit breakers, and an outbox relay.

POST /v1/tasks                  {namespace, name, context} -> 201 {task_uuid, status}
GET  /v1/tasks/{uuid}           status, steps (state, result), completion_percentage, times
GET  /v1/tasks?namespace=&status=&limit=&cursor=
GET  /v1/namespaces             counts per namespace, with the reducer's aggregates
GET  /v1/workers                from the workers' heartbeats
GET  /health                    Postgres and NATS; 503 naming the failing one
GET  /metrics                   Prometheus text
WS   /v1/tasks/{uuid}/events    the task's transitions as they happen
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from taskflow import bus, config, store, workflows
from taskflow.breaker import Breaker, CircuitOpen

log = logging.getLogger("taskflow.orchestrator")
NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
STATUSES = ("pending", "in_progress", "complete", "error")
CIRCUIT_VALUE = {"closed": 0, "open": 1, "half_open": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.created = Counter(
            "taskflow_tasks_created", "Tasks accepted", ["workflow"], registry=self.registry
        )
        self.requests = Counter(
            "taskflow_http_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "taskflow_http_request_duration_seconds", "HTTP request duration", ["route"],
            registry=self.registry,
        )  # fmt: skip
        self.circuit = Gauge(
            "taskflow_circuit_state", "0 closed, 1 open, 2 half open", ["dependency"],
            registry=self.registry,
        )  # fmt: skip
        self.published = Gauge(
            "taskflow_outbox_published", "Outbox rows published by this process",
            registry=self.registry,
        )  # fmt: skip


class State:
    pool: AsyncConnectionPool
    nc: Any
    js: Any
    relay: bus.OutboxRelay
    background: list[asyncio.Task[Any]]

    def __init__(self) -> None:
        self.db = Breaker("postgres", threshold=3, cooldown=1.0)
        self.bus = Breaker("nats", threshold=2, cooldown=1.0)
        self.metrics = Metrics()


state = State()


def problem(status: int, error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, **extra}, status_code=status)


async def watch_bus() -> None:
    """The bus breaker follows the NATS connection, so it opens and heals by itself."""
    while True:
        if state.nc.is_connected:
            state.bus.success()
        else:
            state.bus.failure()
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    state.pool = AsyncConnectionPool(
        config.database_url(), min_size=2, max_size=16, open=False,
        check=AsyncConnectionPool.check_connection,  # a restarted database: no dead connections
    )  # fmt: skip
    await state.pool.open(wait=True, timeout=15)
    state.nc = await bus.connect("orchestrator")
    state.js = state.nc.jetstream()
    await bus.ensure_streams(state.js)
    state.relay = bus.OutboxRelay(state.js)
    state.background = [
        asyncio.create_task(state.relay.run()),
        asyncio.create_task(watch_bus()),
    ]
    yield
    state.relay.stop()
    for task in state.background:
        task.cancel()
    await asyncio.gather(*state.background, return_exceptions=True)
    await state.nc.close()
    await state.pool.close()


# -- helpers -------------------------------------------------------------------------------
def validate_create(body: Any) -> tuple[list[dict[str, str]], dict[str, Any]]:
    details = []
    if not isinstance(body, dict):
        return [{"field": "body", "problem": "must be a JSON object"}], {}
    namespace, name, context = body.get("namespace"), body.get("name"), body.get("context", {})
    if not isinstance(namespace, str) or not NAMESPACE.match(namespace):
        details.append({"field": "namespace", "problem": "1-64 of a-z 0-9 _ . - (lowercase)"})
    if not isinstance(name, str) or not name:
        details.append({"field": "name", "problem": "the workflow's name, a string"})
    if not isinstance(context, dict):
        details.append({"field": "context", "problem": "must be a JSON object"})
    unknown = set(body) - {"namespace", "name", "context"}
    for key in sorted(unknown):
        details.append({"field": key, "problem": "unknown field"})
    return details, {"namespace": namespace, "name": name, "context": context}


async def timed(route: str, handler: Any, request: Any) -> Response:
    began = time.perf_counter()
    response: Response = await handler(request)
    state.metrics.duration.labels(route).observe(time.perf_counter() - began)
    state.metrics.requests.labels(route, str(response.status_code)).inc()
    return response


async def with_db(action: Any) -> Any:
    """Run ``action(conn)`` on a pooled connection, under the Postgres breaker."""
    state.db.check()
    try:
        async with state.pool.connection(timeout=2) as conn:
            result = await action(conn)
    except CircuitOpen:
        raise
    except store.KeyReused:
        state.db.success()  # the database answered: the request was wrong
        raise
    except Exception as exc:
        state.db.failure()
        raise DependencyDown("postgres", exc) from exc
    state.db.success()
    return result


class DependencyDown(Exception):
    def __init__(self, dependency: str, cause: Exception) -> None:
        super().__init__(f"{dependency}: {cause}")
        self.dependency = dependency


def unavailable(exc: Exception) -> JSONResponse:
    dependency = exc.name if isinstance(exc, CircuitOpen) else getattr(exc, "dependency", "?")
    return problem(503, f"{dependency} is unavailable", dependency=dependency,
                   circuit=(state.db if dependency == "postgres" else state.bus).state)  # fmt: skip


# -- routes --------------------------------------------------------------------------------
async def create_task(request: Request) -> Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return problem(422, "validation failed", details=[{"field": "body", "problem": "not JSON"}])
    details, fields = validate_create(body)
    if details:
        return problem(422, "validation failed", details=details)
    workflow = workflows.get(fields["name"])
    if workflow is None:
        return problem(
            400, f"unknown workflow {fields['name']!r}", known=sorted(workflows.WORKFLOWS)
        )
    try:
        workflow.validate(fields["context"])
    except workflows.InvalidContext as exc:
        return problem(
            422, "validation failed", details=[{"field": "context", "problem": str(exc)}]
        )
    key = request.headers.get("idempotency-key") or None
    if key is not None and not 1 <= len(key) <= 200:
        detail = {"field": "Idempotency-Key", "problem": "1 to 200 characters"}
        return problem(422, "validation failed", details=[detail])
    try:
        state.bus.check()  # accepted work must be able to move: refuse while the bus is down
        task_uuid, created = await with_db(
            lambda conn: store.create_task(
                conn, fields["namespace"], workflow, fields["context"], key
            )
        )
    except store.KeyReused:
        return problem(422, "this Idempotency-Key was used for another request", key=key)
    except (CircuitOpen, DependencyDown) as exc:
        return unavailable(exc)
    if not created:  # a retry of a request that was done: the same answer
        return JSONResponse({"task_uuid": str(task_uuid), "status": "pending", "replayed": True},
                            status_code=200)  # fmt: skip
    state.metrics.created.labels(workflow.name).inc()
    return JSONResponse({"task_uuid": str(task_uuid), "status": "pending"}, status_code=201)


async def get_task(request: Request) -> Response:
    task_uuid = request.path_params["uuid"]
    if not re.fullmatch(r"[0-9a-fA-F-]{36}", task_uuid):
        return problem(404, "no such task", task_uuid=task_uuid)
    summary = request.query_params.get("view") == "summary"
    reader = store.task_summary if summary else store.task_view
    try:
        view = await with_db(lambda conn: reader(conn, task_uuid))
    except (CircuitOpen, DependencyDown) as exc:
        return unavailable(exc)
    if view is None:
        return problem(404, "no such task", task_uuid=task_uuid)
    return JSONResponse(view)


async def list_tasks(request: Request) -> Response:
    params = request.query_params
    status = params.get("status")
    if status and status not in STATUSES:
        detail = {"field": "status", "problem": f"one of {', '.join(STATUSES)}"}
        return problem(422, "validation failed", details=[detail])
    try:
        limit = int(params.get("limit", "50"))
        if not 1 <= limit <= 500:
            raise ValueError
    except ValueError:
        detail = {"field": "limit", "problem": "a whole number from 1 to 500"}
        return problem(422, "validation failed", details=[detail])
    cursor = params.get("cursor")
    if cursor:
        try:
            store.decode_cursor(cursor)
        except Exception:
            return problem(
                422, "validation failed", details=[{"field": "cursor", "problem": "bad cursor"}]
            )
    try:
        page = await with_db(
            lambda conn: store.list_tasks(conn, params.get("namespace"), status, limit, cursor)
        )
    except (CircuitOpen, DependencyDown) as exc:
        return unavailable(exc)
    return JSONResponse(page)


async def fetch_rows(sql: str) -> list[Any]:
    """All rows of a read-only query, under the Postgres breaker."""

    async def query(conn: Any) -> list[Any]:
        rows: list[Any] = await (await conn.execute(sql)).fetchall()
        return rows

    rows: list[Any] = await with_db(query)
    return rows


async def namespaces(request: Request) -> Response:
    try:
        rows = await fetch_rows(
            "SELECT t.namespace, count(*), count(*) FILTER (WHERE t.status = 'complete'),"
            " count(*) FILTER (WHERE t.status = 'error'), a.completed, a.failed,"
            " a.total_duration_ms FROM tasks t LEFT JOIN aggregates a USING (namespace)"
            " GROUP BY t.namespace, a.completed, a.failed, a.total_duration_ms"
            " ORDER BY t.namespace"
        )
    except (CircuitOpen, DependencyDown) as exc:
        return unavailable(exc)

    def entry(r: Any) -> dict[str, Any]:
        finished = (r[4] or 0) + (r[5] or 0)
        return {
            "namespace": r[0],
            "tasks": r[1],
            "complete": r[2],
            "error": r[3],
            "aggregates": {
                "completed": r[4] or 0,
                "failed": r[5] or 0,
                "mean_duration_ms": r[6] / finished if finished else None,
            },
        }

    return JSONResponse({"namespaces": [entry(r) for r in rows]})


async def list_workers(request: Request) -> Response:
    try:
        rows = await fetch_rows(
            "SELECT id, started_at, last_seen, steps_done,"
            " extract(epoch FROM clock_timestamp() - last_seen) FROM workers ORDER BY id"
        )
    except (CircuitOpen, DependencyDown) as exc:
        return unavailable(exc)

    def entry(r: Any) -> dict[str, Any]:
        since = float(r[4])
        return {
            "id": r[0],
            "started_at": r[1].isoformat(),
            "last_seen": r[2].isoformat(),
            "steps_done": r[3],
            "seconds_since_heartbeat": round(since, 3),
            "alive": since < 5,
        }

    return JSONResponse({"workers": [entry(r) for r in rows]})


async def health(request: Request) -> Response:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(1.5):
            async with state.pool.connection(timeout=1) as conn:
                await conn.execute("SELECT 1")
        checks["postgres"] = "ok"
        state.db.success()
    except Exception as exc:
        checks["postgres"] = f"failing: {type(exc).__name__}"
        state.db.failure()
    if state.nc.is_connected:
        try:
            await state.nc.flush(timeout=0.5)
            checks["nats"] = "ok"
            state.bus.success()
        except Exception as exc:
            checks["nats"] = f"failing: {type(exc).__name__}"
    else:
        checks["nats"] = "failing: disconnected"
    if checks["nats"] != "ok":
        state.bus.failure()
    failing = [name for name, value in checks.items() if value != "ok"]
    body = {
        "status": "unhealthy" if failing else "ok",
        "failing": failing,
        "checks": checks,
        "circuits": {"postgres": state.db.state, "nats": state.bus.state},
    }
    return JSONResponse(body, status_code=503 if failing else 200)


async def metrics(request: Request) -> Response:
    for breaker in (state.db, state.bus):
        state.metrics.circuit.labels(breaker.name).set(CIRCUIT_VALUE[breaker.state])
    state.metrics.published.set(state.relay.published)
    return Response(generate_latest(state.metrics.registry), media_type="text/plain; version=0.0.4")


async def task_events(websocket: WebSocket) -> None:
    """Send the task's transitions (each once, in order) until it is finished."""
    task_uuid = websocket.path_params["uuid"]
    await websocket.accept()
    last = 0
    try:
        async with state.pool.connection() as conn:
            exists = await (
                await conn.execute("SELECT 1 FROM tasks WHERE uuid = %s", (task_uuid,))
            ).fetchone()
            if exists is None:
                await websocket.send_json({"error": "no such task"})
                await websocket.close(code=4404)
                return
            while True:
                rows = await (
                    await conn.execute(
                        "SELECT id, step, from_state, to_state, at FROM transitions"
                        " WHERE task_uuid = %s AND id > %s ORDER BY id",
                        (task_uuid, last),
                    )
                ).fetchall()
                finished = False
                for row_id, step, from_state, to_state, at in rows:
                    last = row_id
                    await websocket.send_json(
                        {"step": step, "from": from_state, "to": to_state, "at": at.isoformat()}
                    )
                    finished = finished or (step is None and to_state in store.TERMINAL)
                if finished:
                    await websocket.close()
                    return
                await asyncio.sleep(0.05)
    except WebSocketDisconnect:
        return


def build_app() -> Starlette:
    def route(path: str, handler: Any, methods: list[str], name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await timed(name, handler, request)

        return Route(path, endpoint, methods=methods)

    return Starlette(
        routes=[
            route("/v1/tasks", create_task, ["POST"], "create_task"),
            route("/v1/tasks", list_tasks, ["GET"], "list_tasks"),
            route("/v1/tasks/{uuid}", get_task, ["GET"], "get_task"),
            route("/v1/namespaces", namespaces, ["GET"], "namespaces"),
            route("/v1/workers", list_workers, ["GET"], "workers"),
            route("/health", health, ["GET"], "health"),
            Route("/metrics", metrics, methods=["GET"]),
            WebSocketRoute("/v1/tasks/{uuid}/events", task_events),
        ],
        lifespan=lifespan,
    )


app = build_app()


def main() -> None:
    parser = argparse.ArgumentParser(description="taskflow orchestrator")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", ws="wsproto")


if __name__ == "__main__":
    main()
