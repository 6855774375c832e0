"""The taskflow client library: ``OrchestrationClient`` (sync) and ``AsyncOrchestrationClient``.

    with OrchestrationClient("http://127.0.0.1:8080") as client:
        created = client.create_task("billing", "linear_workflow", {"even_number": 6})
        task = client.wait_for_completion(created.task_uuid, timeout=10)
        assert task.status == "complete" and task.result == 69

Errors from the API raise ``TaskflowError`` with the status code and the API's message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx


class TaskflowError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("error") if isinstance(body, dict) else str(body)
        super().__init__(f"HTTP {status}: {message}")


class TaskNotFinished(TimeoutError):
    """wait_for_completion timed out; ``.task`` is the last state seen."""

    def __init__(self, task: Task, timeout: float) -> None:
        self.task = task
        super().__init__(
            f"task {task.task_uuid} is still {task.status} after {timeout:g}s "
            f"({task.completion_percentage:g}% of steps complete)"
        )


@dataclass(frozen=True)
class Created:
    task_uuid: str
    status: str


@dataclass(frozen=True)
class StepState:
    name: str
    state: str
    attempts: int
    result: Any = None
    error: str | None = None
    worker: str | None = None


@dataclass(frozen=True)
class Task:
    task_uuid: str
    namespace: str
    name: str
    status: str
    context: dict[str, Any]
    result: Any
    error: str | None
    completion_percentage: float
    created_at: str
    updated_at: str
    completed_at: str | None
    steps: list[StepState] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in ("complete", "error")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        steps = [
            StepState(s["name"], s["state"], s["attempts"], s.get("result"), s.get("error"),
                      s.get("worker"))
            for s in data.get("steps", [])
        ]  # fmt: skip
        return cls(
            data["task_uuid"], data["namespace"], data["name"], data["status"], data["context"],
            data.get("result"), data.get("error"), data["completion_percentage"],
            data["created_at"], data["updated_at"], data.get("completed_at"), steps,
            data.get("transitions", []),
        )  # fmt: skip


class _Waiting:
    """What both wait_for_completion share: the deadline, and which errors to wait out."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.last: Task | None = None

    def seen(self, task: Task) -> bool:
        """True when the task is finished; raises TaskNotFinished past the deadline."""
        self.last = task
        if task.finished:
            return True
        if time.monotonic() > self.deadline:
            raise TaskNotFinished(task, self.timeout)
        return False

    def failed(self, exc: Exception) -> None:
        """A 503 or an unreachable orchestrator is waited out until the deadline."""
        if isinstance(exc, TaskflowError) and exc.status != 503:
            raise exc
        if time.monotonic() > self.deadline:
            if self.last is not None:
                raise TaskNotFinished(self.last, self.timeout) from exc
            raise exc


def _check(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code >= 400:
        raise TaskflowError(response.status_code, body)
    return body


class OrchestrationClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> OrchestrationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def create_task(
        self, namespace: str, name: str, context: dict[str, Any] | None = None,
        *, idempotency_key: str | None = None, attempts: int = 3,
    ) -> Created:  # fmt: skip
        """Create a task, safely retried: every attempt carries the same Idempotency-Key
        (``idempotency_key``, or one made for this call), so a retry after a lost answer
        (a reset, a 503 whose COMMIT went through) finds the task instead of making two."""
        key = idempotency_key or uuid.uuid4().hex
        payload = {"namespace": namespace, "name": name, "context": context or {}}
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.post(
                    "/v1/tasks", json=payload, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                if attempt == attempts:
                    raise
            else:
                if response.status_code != 503 or attempt == attempts:
                    body = _check(response)
                    return Created(body["task_uuid"], body["status"])
            time.sleep(0.1 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def get_task(self, task_uuid: str) -> Task:
        return Task.from_json(_check(self._http.get(f"/v1/tasks/{task_uuid}")))

    def list_tasks(
        self, namespace: str | None = None, status: str | None = None, limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        params = {k: v for k, v in {"namespace": namespace, "status": status, "limit": limit,
                                     "cursor": cursor}.items() if v is not None}  # fmt: skip
        page: dict[str, Any] = _check(self._http.get("/v1/tasks", params=params))
        return page

    def all_tasks(
        self, namespace: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Every task, following the cursor."""
        tasks, cursor = [], None
        while True:
            page = self.list_tasks(namespace, status, limit=500, cursor=cursor)
            tasks += page["tasks"]
            cursor = page["next_cursor"]
            if not cursor:
                return tasks

    def namespaces(self) -> list[dict[str, Any]]:
        return list(_check(self._http.get("/v1/namespaces"))["namespaces"])

    def workers(self) -> list[dict[str, Any]]:
        return list(_check(self._http.get("/v1/workers"))["workers"])

    def health(self) -> tuple[int, dict[str, Any]]:
        response = self._http.get("/health")
        return response.status_code, response.json()

    def wait_for_completion(
        self, task_uuid: str, timeout: float = 30.0, interval: float = 0.05
    ) -> Task:
        """Poll until the task is complete or error. A 503 or an unreachable orchestrator
        (it restarts, a dependency blips) is waited out until the deadline."""
        waiting = _Waiting(timeout)
        while True:
            try:
                task = self.get_task(task_uuid)
            except (TaskflowError, httpx.TransportError) as exc:
                waiting.failed(exc)
            else:
                if waiting.seen(task):
                    return task
            time.sleep(interval)


class AsyncOrchestrationClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def __aenter__(self) -> AsyncOrchestrationClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_task(
        self, namespace: str, name: str, context: dict[str, Any] | None = None,
        *, idempotency_key: str | None = None, attempts: int = 3,
    ) -> Created:  # fmt: skip
        """As :meth:`Client.create_task`: retried with one Idempotency-Key."""
        key = idempotency_key or uuid.uuid4().hex
        payload = {"namespace": namespace, "name": name, "context": context or {}}
        for attempt in range(1, attempts + 1):
            try:
                response = await self._http.post(
                    "/v1/tasks", json=payload, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                if attempt == attempts:
                    raise
            else:
                if response.status_code != 503 or attempt == attempts:
                    body = _check(response)
                    return Created(body["task_uuid"], body["status"])
            await asyncio.sleep(0.1 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def get_task(self, task_uuid: str) -> Task:
        return Task.from_json(_check(await self._http.get(f"/v1/tasks/{task_uuid}")))

    async def wait_for_completion(
        self, task_uuid: str, timeout: float = 30.0, interval: float = 0.05
    ) -> Task:
        waiting = _Waiting(timeout)
        while True:
            try:
                task = await self.get_task(task_uuid)
            except (TaskflowError, httpx.TransportError) as exc:
                waiting.failed(exc)
            else:
                if waiting.seen(task):
                    return task
            await asyncio.sleep(interval)
