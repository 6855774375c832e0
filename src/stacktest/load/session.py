"""What a scenario receives: an HTTP client bound to a service, and a timer for anything else."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from stacktest.load.http import Client, HTTPError, Response
from stacktest.load.metrics import Recorder


class OperationFailed(Exception):
    """An operation of the scenario failed (already recorded); the iteration stops."""


class Session:
    """One iteration's view: ``await session.post("/v1/tasks", json=..., name="create")``.

    Every request is timed twice (see :mod:`stacktest.load.metrics`): from its actual send,
    and with the iteration's lag behind the schedule added (the corrected latency).
    A response with an unexpected status (by default: 400 or above) or a transport
    error is recorded as a failure and raises :class:`OperationFailed`, which ends the
    iteration; the runner counts it and moves on.
    """

    def __init__(
        self,
        client: Client,
        recorder: Recorder,
        phase: str,
        lag: float,
        kinds: dict[str, str],
        variables: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.phase = phase
        #: How late this iteration started against the schedule (seconds).
        self.lag = lag
        #: Free space for the scenario (ids from an earlier step ...).
        self.vars: dict[str, Any] = variables if variables is not None else {}
        self._recorder = recorder
        self._kinds = kinds

    async def request(
        self,
        method: str,
        path: str,
        *,
        name: str | None = None,
        expect: int | Collection[int] | None = None,
        **kwargs: Any,
    ) -> Response:
        label = name or f"{method.upper()} {path}"
        self._kinds.setdefault(label, "http")
        started = time.perf_counter()
        sent, received = self.client.sent, self.client.received
        try:
            response = await self.client.request(method, path, **kwargs)
        except HTTPError as exc:
            self._record(label, started, "transport error", status="0")  # k6's status 0
            raise OperationFailed(f"{label}: {exc}") from None
        finally:
            counters = self._recorder.phase(self.phase)
            counters.sent += self.client.sent - sent
            counters.received += self.client.received - received
        ok = (
            response.status_code < 400
            if expect is None
            else response.status_code == expect
            if isinstance(expect, int)
            else response.status_code in expect
        )
        error = None if ok else f"HTTP {response.status_code}"
        self._record(label, started, error, status=str(response.status_code))
        if not ok:
            raise OperationFailed(f"{label}: HTTP {response.status_code}")
        return response

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Response:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Response:
        return await self.request("DELETE", path, **kwargs)

    @contextlib.asynccontextmanager
    async def timed(self, name: str) -> AsyncIterator[None]:
        """Time any operation (a SQL query, a NATS publish, a poll loop) as ``name``.
        An exception inside is recorded as a failure and re-raised."""
        self._kinds.setdefault(name, "timed")
        started = time.perf_counter()
        try:
            yield
        except OperationFailed:
            self._record(name, started, "step failed")
            raise
        except Exception as exc:
            self._record(name, started, type(exc).__name__)
            raise OperationFailed(f"{name}: {type(exc).__name__}: {exc}") from exc
        self._record(name, started, None)

    def check(self, value: Any, checks: dict[str, Callable[[Any], object]]) -> bool:
        """k6's ``check``: each named predicate of ``value`` is counted as passed or
        failed (the ``checks`` metric, a rate; tag ``check:NAME``); True if all passed.
        A failed check does not end the iteration (as in k6); a predicate that raises
        counts as failed."""
        passed_all = True
        for label, predicate in checks.items():
            try:
                ok = bool(predicate(value))
            except Exception:
                ok = False
            self._recorder.record_check(label, self.phase, ok)
            passed_all = passed_all and ok
        return passed_all

    def _record(self, name: str, started: float, error: str | None, status: str = "") -> None:
        service = (time.perf_counter() - started) * 1_000_000
        self._recorder.record_op(
            name, self.phase, service + self.lag * 1_000_000, service, error, status
        )
