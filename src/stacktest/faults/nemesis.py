"""A nemesis (after Jepsen): faults on a schedule in the background, always ending healed.

    with Nemesis(stack, [kill("worker"), pause("db"), link_down("api->bus")],
                 every="2s", hold="1s", seed=7):
        run_the_workload()
    # here every fault is undone, and stack.heal() has run

Each ``every`` seconds the nemesis picks a fault (at random, or in turn with
``mode="cycle"``), applies it, holds it for ``hold`` seconds, undoes it. What it did
is in ``nemesis.log`` and, with a history, recorded as ``info`` ops of the process
``nemesis`` (as Jepsen does).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stacktest.durations import parse_duration
from stacktest.engine.procs import without_signals
from stacktest.faults.history import History
from stacktest.operations import Operations


@dataclass(frozen=True)
class Fault:
    name: str
    apply: Callable[[Operations], Any]
    undo: Callable[[Operations], Any]


def kill(service: str) -> Fault:
    return Fault(f"kill {service}", lambda s: s.kill(service), lambda s: s.start_service(service))


def terminate(service: str) -> Fault:
    return Fault(
        f"terminate {service}", lambda s: s.terminate(service), lambda s: s.start_service(service)
    )


def stop(service: str) -> Fault:
    return Fault(
        f"stop {service}", lambda s: s.stop_service(service), lambda s: s.start_service(service)
    )


def pause(service: str) -> Fault:
    return Fault(f"pause {service}", lambda s: s.pause(service), lambda s: s.resume(service))


def restart(service: str) -> Fault:
    return Fault(f"restart {service}", lambda s: s.restart(service), lambda s: None)


def link_down(edge: str) -> Fault:
    return Fault(f"down {edge}", lambda s: s.link_down(edge), lambda s: s.link_up(edge))


def toxic(edge: str, type: str | None = None, **attributes: Any) -> Fault:
    """A toxic on ``edge`` while the fault holds: ``toxic("api->db", latency="300ms")``."""
    names: list[str] = []
    label = " ".join(f"{k}={v}" for k, v in attributes.items())

    def apply(s: Operations) -> None:
        names.append(s.add_toxic(edge, type, **attributes))

    def undo(s: Operations) -> None:
        while names:
            s.remove_toxic(edge, names.pop())

    return Fault(f"{type or ''} {label} on {edge}".strip(), apply, undo)


class Nemesis:
    def __init__(
        self,
        stack: Operations,
        faults: Sequence[Fault],
        *,
        every: str | float = "2s",
        hold: str | float | None = None,
        mode: Literal["random", "cycle"] = "random",
        seed: int | None = None,
        history: History | None = None,
    ) -> None:
        if not faults:
            raise ValueError("Nemesis: give it at least one fault")
        if mode not in ("random", "cycle"):
            raise ValueError(f"Nemesis: mode is 'random' or 'cycle', not {mode!r}")
        self.stack = stack
        self.faults = list(faults)
        self.every = parse_duration(every, bare="s")
        self.hold = parse_duration(hold, bare="s") if hold is not None else self.every / 2
        if self.hold > self.every:
            raise ValueError("Nemesis: hold must not be longer than every")
        self.mode = mode
        self.history = history
        self.log: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: Fault | None = None
        self._turn = 0

    def start(self) -> Nemesis:
        self._thread = threading.Thread(
            target=without_signals(self._run), name="nemesis", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the schedule, undo the fault in force, and heal the whole stack."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 60)
        self._undo_current()
        healed = self.stack.heal()
        if healed:
            self._note(f"healed: {', '.join(healed)}")

    def __enter__(self) -> Nemesis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def applied(self) -> list[str]:
        return [what.removeprefix("start ") for _, what in self.log if what.startswith("start ")]

    def _pick(self) -> Fault:
        if self.mode == "cycle":
            fault = self.faults[self._turn % len(self.faults)]
            self._turn += 1
            return fault
        return self._random.choice(self.faults)

    def _run(self) -> None:
        while not self._stop.wait(self.every - self.hold):
            fault = self._pick()
            op = self.history.invoke("nemesis", fault.name, "nemesis") if self.history else None
            try:
                fault.apply(self.stack)
                self._current = fault
                self._note(f"start {fault.name}")
            except Exception as exc:
                self.errors.append(f"{fault.name}: {exc}")
                self._note(f"could not start {fault.name}: {exc}")
            if op is not None and self.history is not None:
                self.history.info(op)
            self._stop.wait(self.hold)
            self._undo_current()

    def _undo_current(self) -> None:
        fault, self._current = self._current, None
        if fault is None:
            return
        try:
            fault.undo(self.stack)
            self._note(f"stop {fault.name}")
        except Exception as exc:
            self.errors.append(f"undo {fault.name}: {exc}")
            self._note(f"could not undo {fault.name}: {exc} (heal() follows at the end)")

    def _note(self, what: str) -> None:
        self.log.append((time.time(), what))
