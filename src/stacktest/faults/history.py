"""A history of what clients did and saw, as Jepsen records it, and checkers over it.

Each client operation is an ``invoke`` followed by its completion: ``ok`` (it
happened), ``fail`` (it certainly did not) or ``info`` (unknown: a timeout, a
connection reset after the request left). Recording unknowns honestly is what lets a
checker tell "lost" from "maybe never happened".

    with history.op("enqueue", task_id) as op:      # ok when the block ends normally,
        client.create(task_id)                      # info when it raises (unknown),
                                                    # op.fail() for a definite refusal
    result = total_queue(history)                   # {"valid": False, "lost": [...], ...}

The history is kept in memory and, with a path, appended to a JSON-lines file.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

OpType = Literal["invoke", "ok", "fail", "info"]
Verdict = bool | Literal["unknown"]


@dataclass(frozen=True)
class Op:
    index: int
    process: str
    type: OpType
    f: str
    value: Any
    time: float
    error: str | None = None
    #: For a completion: the index of its invoke (processes may run ops concurrently).
    invoke: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "value"}


class Recorder:
    """The handle ``History.op`` yields: set ``value``, or call ``fail()`` / ``info()``."""

    def __init__(self, history: History, invoke: Op) -> None:
        self.history = history
        self.invoke = invoke
        self.value: Any = invoke.value
        self.done = False

    def ok(self, value: Any = None) -> None:
        self._complete("ok", value if value is not None else self.value)

    def fail(self, error: str | None = None) -> None:
        self._complete("fail", self.value, error)

    def info(self, error: str | None = None) -> None:
        self._complete("info", self.value, error)

    def _complete(self, kind: OpType, value: Any, error: str | None = None) -> None:
        if not self.done:
            self.done = True
            self.history.complete(self.invoke, kind, value, error)


class History:
    def __init__(self, path: Path | str | None = None) -> None:
        self.ops: list[Op] = []
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._started = time.monotonic()

    # -- recording ----------------------------------------------------------------------
    def _add(
        self,
        process: str,
        kind: OpType,
        f: str,
        value: Any,
        error: str | None,
        invoke: int | None = None,
    ) -> Op:
        with self._lock:
            now = time.monotonic() - self._started
            op = Op(len(self.ops), process, kind, f, value, now, error, invoke)
            self.ops.append(op)
            if self.path is not None:
                with open(self.path, "a") as fh:
                    fh.write(json.dumps(op.to_json(), default=str) + "\n")
        return op

    def invoke(self, f: str, value: Any = None, process: str | None = None) -> Op:
        return self._add(process or _process_name(), "invoke", f, value, None)

    def complete(self, invoke: Op, kind: OpType, value: Any = None, error: str | None = None) -> Op:
        return self._add(invoke.process, kind, invoke.f, value, error, invoke.index)

    def ok(self, invoke: Op, value: Any = None) -> Op:
        return self.complete(invoke, "ok", invoke.value if value is None else value)

    def fail(self, invoke: Op, error: str | None = None) -> Op:
        return self.complete(invoke, "fail", invoke.value, error)

    def info(self, invoke: Op, error: str | None = None) -> Op:
        return self.complete(invoke, "info", invoke.value, error)

    @contextlib.contextmanager
    def op(self, f: str, value: Any = None, process: str | None = None) -> Iterator[Recorder]:
        """Invoke, run the block, complete: ok if it ends normally, info if it raises
        (the outcome is unknown) unless the block already called ``fail()``."""
        recorder = Recorder(self, self.invoke(f, value, process))
        try:
            yield recorder
        except BaseException as exc:
            recorder.info(f"{type(exc).__name__}: {exc}")
            raise
        recorder.ok()

    @contextlib.asynccontextmanager
    async def aop(
        self, f: str, value: Any = None, process: str | None = None
    ) -> AsyncIterator[Recorder]:
        """:meth:`op` for async code."""
        recorder = Recorder(self, self.invoke(f, value, process))
        try:
            yield recorder
        except BaseException as exc:
            recorder.info(f"{type(exc).__name__}: {exc}")
            raise
        recorder.ok()

    # -- reading ------------------------------------------------------------------------
    def pairs(self) -> list[tuple[Op, Op | None]]:
        """Each invoke with its completion (None if it never completed)."""
        open_by_process: dict[str, Op] = {}
        completion: dict[int, Op] = {}
        for op in self.ops:
            if op.type == "invoke":
                open_by_process[op.process] = op
            elif op.invoke is not None:
                completion[op.invoke] = op
            elif op.process in open_by_process:  # a history written by hand, Jepsen style
                completion[open_by_process.pop(op.process).index] = op
        return [(op, completion.get(op.index)) for op in self.ops if op.type == "invoke"]

    @classmethod
    def load(cls, path: Path | str) -> History:
        history = cls()
        for line in Path(path).read_text().splitlines():
            if line.strip():
                data = json.loads(line)
                history.ops.append(Op(**data))
        return history

    def __len__(self) -> int:
        return len(self.ops)


def _process_name() -> str:
    import asyncio

    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    if task is not None:
        return task.get_name()
    return threading.current_thread().name


# -- checkers ---------------------------------------------------------------------------------
def _outcomes(history: History, f: str) -> tuple[set[Any], set[Any], set[Any], set[Any]]:
    """Values of ``f`` operations by outcome: attempted, ok, failed, unknown (info/none)."""
    attempted, ok, failed, unknown = set(), set(), set(), set()
    for invoke, done in history.pairs():
        if invoke.f != f:
            continue
        value = _hashable(invoke.value)
        attempted.add(value)
        if done is None or done.type == "info":
            unknown.add(value)
        elif done.type == "ok":
            ok.add(value)
        else:
            failed.add(value)
    return attempted, ok, failed, unknown


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _sorted(values: Iterable[Any]) -> list[Any]:
    return sorted(values, key=lambda v: (str(type(v)), v))


def set_checker(history: History, *, add: str = "add", read: str = "read") -> dict[str, Any]:
    """Adds of single elements, then reads of the whole set (the last ok read counts).

    lost: acknowledged adds missing from the read; unexpected: read elements never
    added; recovered: adds of unknown outcome that turned out to have happened.
    """
    attempted, ok, failed, unknown = _outcomes(history, add)
    reads = [done for inv, done in history.pairs() if inv.f == read and done and done.type == "ok"]
    if not reads:
        return {"valid": "unknown", "error": f"no successful {read!r} operation"}
    final = {_hashable(v) for v in (reads[-1].value or [])}
    lost = ok - final
    unexpected = final - attempted
    result: dict[str, Any] = {
        "valid": not lost and not unexpected,
        "attempted_count": len(attempted),
        "acknowledged_count": len(ok),
        "read_count": len(final),
        "lost": _sorted(lost),
        "lost_count": len(lost),
        "unexpected": _sorted(unexpected),
        "unexpected_count": len(unexpected),
        "recovered": _sorted(unknown & final),
        "recovered_count": len(unknown & final),
        "failed_but_present": _sorted((failed - ok - unknown) & final),
    }
    if (failed - ok - unknown) & final:  # (a value retried after its failure: the retry did it)
        result["valid"] = False  # a definite failure that happened anyway
    return result


def total_queue(
    history: History, *, enqueue: str = "enqueue", dequeue: str = "dequeue", drain: str = "drain"
) -> dict[str, Any]:
    """Every acknowledged enqueue dequeued exactly once, nothing dequeued that was not
    enqueued, nothing delivered whose enqueue definitely failed (a ``fail``: the client was
    told it did not happen). ``dequeue`` ok ops carry one value; ``drain`` ok ops a list."""
    attempted, ok, failed, unknown = _outcomes(history, enqueue)
    taken: Counter[Any] = Counter()
    for invoke, done in history.pairs():
        if done is None or done.type != "ok":
            continue
        if invoke.f == dequeue and done.value is not None:
            taken[_hashable(done.value)] += 1
        elif invoke.f == drain:
            taken.update(_hashable(v) for v in (done.value or []))
    seen = set(taken)
    lost = ok - seen
    duplicated = {v: n for v, n in taken.items() if n > 1}
    unexpected = seen - attempted
    failed_but_delivered = (failed - ok - unknown) & seen  # (a retried value may have both)
    return {
        "valid": not lost and not duplicated and not unexpected and not failed_but_delivered,
        "attempted_count": len(attempted),
        "acknowledged_count": len(ok),
        "dequeued_count": sum(taken.values()),
        "lost": _sorted(lost),
        "lost_count": len(lost),
        "duplicated": dict(sorted(duplicated.items(), key=lambda kv: str(kv[0]))),
        "duplicated_count": len(duplicated),
        "unexpected": _sorted(unexpected),
        "unexpected_count": len(unexpected),
        "recovered": _sorted(unknown & seen),
        "recovered_count": len(unknown & seen),
        "failed_but_delivered": _sorted(failed_but_delivered),
        "failed_but_delivered_count": len(failed_but_delivered),
    }


def unique_ids(history: History, *, f: str = "generate") -> dict[str, Any]:
    """Every id an ok ``generate`` returned is different from every other."""
    ids: Counter[Any] = Counter()
    for invoke, done in history.pairs():
        if invoke.f == f and done is not None and done.type == "ok":
            ids[_hashable(done.value)] += 1
    duplicated = {v: n for v, n in ids.items() if n > 1}
    if not ids:
        return {"valid": "unknown", "error": f"no successful {f!r} operation"}
    return {
        "valid": not duplicated,
        "generated_count": sum(ids.values()),
        "duplicated": dict(sorted(duplicated.items(), key=lambda kv: str(kv[0]))),
        "duplicated_count": len(duplicated),
    }


def counter(history: History, *, add: str = "add", read: str = "read") -> dict[str, Any]:
    """Each read lies between the adds certainly done before it began and the adds that
    may have been done before it ended (Jepsen's counter checker)."""
    pairs = history.pairs()
    errors = []
    reads = 0
    for invoke, done in pairs:
        if invoke.f != read or done is None or done.type != "ok":
            continue
        reads += 1
        lower = upper = 0
        for a_inv, a_done in pairs:
            if a_inv.f != add:
                continue
            amount = a_inv.value if a_inv.value is not None else 1
            if a_done is not None and a_done.type == "ok" and a_done.index < invoke.index:
                lower += amount
            if a_inv.index < done.index and (a_done is None or a_done.type != "fail"):
                upper += amount
        if not lower <= done.value <= upper:
            errors.append({"read": done.value, "lower": lower, "upper": upper, "at": done.index})
    if not reads:
        return {"valid": "unknown", "error": f"no successful {read!r} operation"}
    return {"valid": not errors, "reads": reads, "errors": errors, "error_count": len(errors)}
