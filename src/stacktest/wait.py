"""Waiting for a condition with a deadline: the only kind of waiting tests should do.

    row = eventually(lambda: db.execute("select * from task where id = 7").fetchone())
    eventually(check_all_delivered, asserted=True, timeout=10)   # a function of asserts

A check passes when it returns without raising and its result is truthy; ``None``,
``False``, ``0`` and empty results mean "not yet" (so a query that finds no row yet is
retried). With ``asserted=True`` the check passes as soon as it returns without
raising, whatever it returns: for functions made of ``assert`` statements. On timeout
:class:`EventuallyTimeout` (an ``AssertionError``, so pytest shows it as a failure)
says how long it waited, how many attempts, and what the last attempt returned or
raised.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
DEFAULT_INTERVAL = 0.05


class EventuallyTimeout(AssertionError):
    """The check never passed before the deadline."""

    def __init__(
        self,
        what: str,
        timeout: float,
        attempts: int,
        last_value: Any = None,
        last_error: BaseException | None = None,
    ) -> None:
        self.timeout = timeout
        self.attempts = attempts
        self.last_value = last_value
        self.last_error = last_error
        text = f"{what} did not pass within {timeout:g}s ({attempts} attempts)"
        if last_error is not None:
            detail = "".join(traceback.format_exception_only(last_error)).strip()
            text += f"; the last attempt raised {detail}"
        else:
            text += f"; the last attempt returned {last_value!r}"
        super().__init__(text)


class _Attempts:
    """The bookkeeping both forms share: deadline, count, what the last attempt gave."""

    def __init__(
        self,
        check: Callable[..., Any],
        timeout: float,
        interval: float,
        msg: str | None,
        asserted: bool = False,
    ):
        if timeout <= 0 or interval <= 0:
            raise ValueError("eventually(): timeout and interval must be positive")
        self.check, self.timeout, self.interval, self.message = check, timeout, interval, msg
        self.asserted = asserted
        self.deadline = time.monotonic() + timeout
        self.count = 0
        self.last_value: Any = None
        self.last_error: BaseException | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def passed(self, result: Any) -> bool:
        self.count += 1
        if self.asserted or bool(result):
            return True
        self.last_value, self.last_error = result, None
        return False

    def failed(self, error: BaseException) -> None:
        self.count += 1
        self.last_value, self.last_error = None, error

    def pause(self) -> float:
        """Seconds to sleep before the next attempt; raises when the deadline has passed."""
        remaining = self.remaining()
        if remaining <= 0:
            name = getattr(self.check, "__qualname__", None) or repr(self.check)
            what = self.message or ("the check" if name.endswith("<lambda>") else f"{name}()")
            if self.last_error is None and self.last_value is None and not self.asserted:
                what += " (it returned None: a function of asserts? pass asserted=True)"
            raise EventuallyTimeout(
                what, self.timeout, self.count, self.last_value, self.last_error
            )
        return min(self.interval, remaining)


def eventually(
    check: Callable[[], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: str | None = None,
    asserted: bool = False,
) -> T:
    """Call ``check`` until it passes; return its result, or raise EventuallyTimeout."""
    attempts = _Attempts(check, timeout, interval, message, asserted)
    while True:
        try:
            result = check()
        except Exception as exc:  # any failure of the check means "not yet"
            attempts.failed(exc)
        else:
            if attempts.passed(result):
                return result
        time.sleep(attempts.pause())


async def eventually_async(
    check: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: str | None = None,
    asserted: bool = False,
) -> T:
    """:func:`eventually` for async code: ``check`` may be a coroutine function.

    Each attempt is bounded by what is left of the deadline, so an attempt that
    hangs cannot hold the wait past it.
    """
    attempts = _Attempts(check, timeout, interval, message, asserted)
    while True:
        try:
            result = check()
            if isinstance(result, Awaitable):
                result = await asyncio.wait_for(_await(result), max(attempts.remaining(), 0.001))
        except Exception as exc:
            attempts.failed(exc)
        else:
            if attempts.passed(result):
                return result  # type: ignore[return-value]
        await asyncio.sleep(attempts.pause())


async def _await(value: Awaitable[T]) -> T:
    return await value
