from __future__ import annotations

import asyncio
import time

import pytest

from stacktest.wait import EventuallyTimeout, eventually, eventually_async


def test_returns_the_first_passing_result() -> None:
    calls = iter([0, [], "ready"])
    assert eventually(lambda: next(calls), interval=0.001) == "ready"


def test_a_function_of_asserts_passes_by_returning_with_asserted() -> None:
    state = {"n": 0}

    def check() -> None:
        state["n"] += 1
        assert state["n"] >= 3

    assert eventually(check, interval=0.001, asserted=True) is None
    assert state["n"] == 3


def test_none_means_not_yet_and_the_timeout_says_so() -> None:
    rows = iter([None, None, ("row",)])
    assert eventually(lambda: next(rows), interval=0.001) == ("row",)

    def check() -> None:
        assert True

    with pytest.raises(EventuallyTimeout, match="returned None: a function of asserts"):
        eventually(check, timeout=0.02, interval=0.005)


def test_timeout_reports_the_last_exception() -> None:
    def check() -> None:
        raise ConnectionRefusedError("db not up yet")

    with pytest.raises(EventuallyTimeout) as info:
        eventually(check, timeout=0.05, interval=0.01)
    message = str(info.value)
    assert "check() did not pass within 0.05s" in message
    assert "ConnectionRefusedError: db not up yet" in message
    assert info.value.attempts >= 2
    assert isinstance(info.value, AssertionError)


def test_timeout_reports_the_last_value_and_message() -> None:
    with pytest.raises(EventuallyTimeout, match=r"^task completes did not .* returned \[\]$"):
        eventually(lambda: [], timeout=0.02, interval=0.005, message="task completes")
    with pytest.raises(EventuallyTimeout, match=r"^the check did not pass.*returned False$"):
        eventually(lambda: "pending" == "done", timeout=0.02, interval=0.005)


def test_never_sleeps_past_the_deadline() -> None:
    began = time.monotonic()
    with pytest.raises(EventuallyTimeout):
        eventually(lambda: False, timeout=0.05, interval=10)
    assert time.monotonic() - began < 1


def test_rejects_nonsense_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        eventually(lambda: True, timeout=0)


def test_async_form_bounds_a_hanging_attempt() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(60)
        return True

    async def main() -> None:
        with pytest.raises(EventuallyTimeout, match="TimeoutError"):
            await eventually_async(hangs, timeout=0.05)
        results = iter([False, False, 42])

        async def later() -> int | bool:
            return next(results)

        assert await eventually_async(later, interval=0.001) == 42

    began = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - began < 2
