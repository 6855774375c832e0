"""Running load: the schedule, the iterations, the generator watching itself, several processes.

The scheduler computes each iteration's intended start from the phases and starts it
then, whatever happened to earlier ones. If ``max_in_flight`` iterations are already
running, the arrival is *dropped* and counted, never quietly delayed. How late each
iteration started against its intended time is recorded (the schedule lag), and so is
the event loop's own lag and the process' CPU: a run where the generator fell behind
or saturated is marked invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stacktest.load.http import Client
from stacktest.load.metrics import Recorder, record
from stacktest.load.phases import Phase
from stacktest.load.results import LoadResult
from stacktest.load.scenario_file import REQUESTS, load_file, requests_scenario
from stacktest.load.session import OperationFailed, Session
from stacktest.load.thresholds import Threshold, evaluate, parse

Scenario = Callable[[Session], Awaitable[Any]]
LOOP_TICK = 0.01
SPIN = 0.0015
END_GRACE = 30.0
#: The GIL switch interval during an in-process run (seconds; Python's default: 0.005).
GIL_SWITCH = 0.001


@dataclass(frozen=True)
class ScenarioRef:
    """A scenario a worker process can import: ``path/to/file.py:function``."""

    path: str
    attr: str

    @classmethod
    def parse(cls, text: str) -> ScenarioRef:
        path, _, attr = text.rpartition(":")
        return cls(path, attr)

    def load(self) -> Scenario:
        module = load_file(Path(self.path))
        if self.attr == REQUESTS:
            return requests_scenario(module.requests)
        scenario: Scenario = getattr(module, self.attr)
        return scenario


@dataclass
class LoadTest:
    scenario: Scenario | ScenarioRef | Sequence[tuple[Scenario | ScenarioRef, float]]
    base_url: str
    phases: Sequence[Phase]
    thresholds: dict[str, list[Any]] | None = None
    max_in_flight: int = 1000
    #: Dropped arrivals (``max_in_flight`` reached) make the run invalid unless allowed:
    #: then a ``dropped`` threshold judges them.
    allow_drops: bool = False
    poisson: bool = False
    seed: int | None = None
    timeout: float = 30.0
    name: str = "load"
    #: wrk2's model: this many connections work through the schedule in order; an
    #: iteration waits for a free one (that wait counts in the corrected latency, not in
    #: the service time). None: every arrival starts at once, on a connection of its own.
    connections: int | None = None
    #: Invalid when the schedule lag p99 exceeds this (ms) or the generator's CPU this (%).
    max_schedule_lag_ms: float = 10.0
    max_cpu_percent: float = 90.0
    _parsed: list[Threshold] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("a load test needs at least one phase")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if self.connections is not None and self.connections < 1:
            raise ValueError("connections must be at least 1")
        self._parsed = parse(self.thresholds)

    # -- running --------------------------------------------------------------------
    def run(
        self,
        *,
        workers: int = 1,
        on_slice: Callable[[dict[str, Any]], None] | None = None,
    ) -> LoadResult:
        """Run every phase; returns the result (thresholds evaluated, validity judged)."""
        started = time.time()
        if workers <= 1:
            # In-process (the pytest `load` fixture), the generator shares the interpreter
            # with the stack's engine thread (its fault proxies relay the system's traffic):
            # Python hands the GIL over every 5 ms by default, which would hold the
            # generator's timers up to that long. 1 ms while the run lasts.
            switch = sys.getswitchinterval()
            sys.setswitchinterval(min(switch, GIL_SWITCH))
            try:
                raw, kinds, aborted, cpu = asyncio.run(self._run_one(on_slice=on_slice))
            finally:
                sys.setswitchinterval(switch)
            recorder = raw
        else:
            recorder, kinds, aborted, cpu = self._run_many(workers, on_slice)
        seconds = time.time() - started
        verdicts = evaluate(recorder, kinds, self._parsed, seconds)
        return LoadResult.build(
            self, recorder, kinds, verdicts, seconds=seconds, cpu_percent=cpu,
            workers=max(workers, 1), aborted=aborted, started_at=started,
        )  # fmt: skip

    def _scenarios(self) -> list[tuple[Scenario, float]]:
        raw = self.scenario
        items: list[Any] = list(raw) if isinstance(raw, list | tuple) else [(raw, 1.0)]
        out: list[tuple[Scenario, float]] = []
        for item, weight in items:
            fn = item.load() if isinstance(item, ScenarioRef) else item
            out.append((fn, float(weight)))
        return out

    async def _run_one(
        self,
        *,
        share: float = 1.0,
        seed: int | None = None,
        on_slice: Callable[[dict[str, Any]], None] | None = None,
    ) -> tuple[Recorder, dict[str, str], bool, float]:
        recorder = Recorder()
        kinds: dict[str, str] = {}
        scenarios = self._scenarios()
        for fn, _ in scenarios:
            kinds[_scenario_name(fn)] = "iteration"
        rng = random.Random(seed if seed is not None else self.seed)
        weights = [w for _, w in scenarios]
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        state: dict[str, Any] = {"phase": self.phases[0].name, "abort": False, "spin": 0.0}
        backlog: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_start = usage.ru_utime + usage.ru_stime
        wall_start = time.monotonic()
        client = Client(self.base_url, timeout=self.timeout, max_idle=self.max_in_flight)
        try:

            async def iteration(phase: str, intended: float) -> None:
                # late against the schedule: the generator's own lag, plus any wait for a
                # free connection; both count in the corrected latency
                lag = max(0.0, loop.time() - intended)
                fn = scenarios[0][0] if len(scenarios) == 1 else rng.choices(
                    [s for s, _ in scenarios], weights
                )[0]  # fmt: skip
                counters = recorder.phase(phase)
                counters.started += 1
                recorder.in_flight += 1
                began = time.perf_counter()
                error: str | None = None
                try:
                    await fn(Session(client, recorder, phase, lag, kinds))
                except OperationFailed:
                    error = "step failed"
                except asyncio.CancelledError:
                    error = "cancelled at the end of the run"
                except Exception as exc:
                    error = type(exc).__name__
                finally:
                    recorder.in_flight -= 1
                    service = (time.perf_counter() - began) * 1_000_000
                    recorder.record_op(
                        _scenario_name(fn), phase, service + lag * 1_000_000, service, error
                    )
                    if error is None:
                        counters.completed += 1
                    else:
                        counters.failed += 1

            def launch(phase: str, intended: float) -> None:
                # how late the scheduler itself is: the generator's health, not the system's
                recorder.note_schedule_lag(max(0.0, loop.time() - intended) * 1_000_000)
                counters = recorder.phase(phase)
                counters.offered += 1
                if recorder.in_flight + backlog.qsize() >= self.max_in_flight:
                    counters.dropped += 1
                    return
                if self.connections is not None:
                    backlog.put_nowait((phase, intended))
                    return
                task = loop.create_task(iteration(phase, intended))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            async def connection_worker() -> None:
                while True:
                    phase, intended = await backlog.get()
                    try:
                        await iteration(phase, intended)
                    finally:
                        backlog.task_done()

            for _ in range(self.connections or 0):
                worker = loop.create_task(connection_worker())
                tasks.add(worker)
                worker.add_done_callback(tasks.discard)

            async def monitor() -> None:
                expected = loop.time() + LOOP_TICK
                while True:
                    await asyncio.sleep(LOOP_TICK)
                    now = loop.time()
                    record(recorder.loop_lag, max(0.0, now - expected) * 1_000_000)
                    expected = now + LOOP_TICK
                    summary = recorder.roll_slice(time.monotonic(), str(state["phase"]))
                    if summary is not None:
                        if on_slice is not None:
                            on_slice(summary)
                        if self._should_abort(recorder, kinds, time.monotonic() - wall_start):
                            state["abort"] = True

            watcher = loop.create_task(monitor())
            try:
                t0 = loop.time()
                for phase in self.phases:
                    if state["abort"]:
                        break
                    state["phase"] = phase.name
                    await self._run_phase(
                        phase, t0, share, rng, launch, iteration, state, recorder
                    )
                    recorder.phase(phase.name).seconds = phase.duration
                    t0 += phase.duration
                if self.connections is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(backlog.join(), END_GRACE)
                    for task in tasks:
                        task.cancel()  # the connection workers, now idle
                if tasks:
                    _, pending = await asyncio.wait(set(tasks), timeout=END_GRACE)
                    for task in pending:
                        task.cancel()
                    if pending:
                        await asyncio.wait(pending, timeout=5)
            finally:
                watcher.cancel()
                # the last part of a second: a short run's only slice, a long run's tail
                tail = recorder.roll_slice(time.monotonic(), str(state["phase"]), final=True)
                if tail is not None and on_slice is not None:
                    on_slice(tail)
        finally:
            await client.aclose()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.monotonic() - wall_start
        # CPU spent doing work: the yielding wait before each precisely timed arrival is
        # not work (it gives way to every other task), so it is taken out
        busy = usage.ru_utime + usage.ru_stime - cpu_start - state["spin"]
        cpu = max(0.0, busy) / wall * 100 if wall else 0.0
        return recorder, kinds, bool(state["abort"]), cpu

    async def _run_phase(
        self,
        phase: Phase,
        t0: float,
        share: float,
        rng: random.Random,
        launch: Callable[[str, float], None],
        run_iteration: Callable[[str, float], Awaitable[None]],
        state: dict[str, Any],
        recorder: Recorder,
    ) -> None:
        loop = asyncio.get_running_loop()
        end = t0 + phase.duration
        if phase.closed:
            users = max(1, round(phase.vus * share))

            counters = recorder.phase(phase.name)

            async def user() -> None:
                # a virtual user runs its iterations itself, one after the other
                while loop.time() < end and not state["abort"]:
                    recorder.note_schedule_lag(0)
                    counters.offered += 1
                    await run_iteration(phase.name, loop.time())
                    if phase.think_time:
                        await asyncio.sleep(phase.think_time)

            await asyncio.gather(*(user() for _ in range(users)))
            return
        scaled = replace(
            phase,
            arrival_rate=phase.arrival_rate * share,
            ramp_to=None if phase.ramp_to is None else phase.ramp_to * share,
        )
        for offset in scaled.arrivals(poisson=self.poisson, rng=rng):
            if state["abort"]:
                return
            intended = t0 + offset
            delay = intended - loop.time()
            # the loop's timers are good to about a millisecond: sleep most of the way,
            # then yield until the moment (other tasks run meanwhile)
            if delay > SPIN:
                await asyncio.sleep(delay - SPIN)
            spin_from = time.perf_counter()
            while loop.time() < intended:
                await asyncio.sleep(0)
            state["spin"] += time.perf_counter() - spin_from
            launch(phase.name, intended)
        remaining = end - loop.time()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _should_abort(self, recorder: Recorder, kinds: dict[str, str], seconds: float) -> bool:
        aborting = [t for t in self._parsed if t.abort_on_fail and seconds >= t.delay_abort_eval]
        if not aborting:
            return False
        verdicts = evaluate(recorder, kinds, aborting, seconds)
        return any(not v.ok and v.measured is not None for v in verdicts)

    # -- several processes ----------------------------------------------------------
    def _run_many(
        self, workers: int, on_slice: Callable[[dict[str, Any]], None] | None
    ) -> tuple[Recorder, dict[str, str], bool, float]:
        refs = self.scenario
        items = list(refs) if isinstance(refs, list | tuple) else [(refs, 1.0)]
        if not all(isinstance(item, ScenarioRef) for item, _ in items):
            raise ValueError(
                "workers > 1 needs scenarios a process can import: ScenarioRef('file.py', 'fn')"
                " (the CLI does this for you)"
            )
        ctx = multiprocessing.get_context("spawn")
        manager = ctx.Manager()  # its queue proxies can be handed to pool workers
        slices: Any = manager.Queue()
        base_seed = self.seed if self.seed is not None else random.randrange(1 << 30)
        procs = []
        with ctx.Pool(workers) as pool:
            for i in range(workers):
                job = (self._portable(), 1 / workers, base_seed + i, slices)
                procs.append(pool.apply_async(_worker, job))
            merged = Recorder()
            kinds: dict[str, str] = {}
            aborted = False
            cpus = []
            pending_slices: dict[int, dict[str, Any]] = {}
            counts: dict[int, int] = {}
            while procs:
                while not slices.empty():
                    summary = slices.get()
                    second = summary["second"]
                    mine = pending_slices.setdefault(second, {**summary, "count": 0, "errors": 0})
                    mine["count"] += summary["count"]
                    mine["errors"] += summary["errors"]
                    for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
                        mine[k] = max(mine[k], summary[k])
                    counts[second] = counts.get(second, 0) + 1
                    if counts[second] == workers and on_slice is not None:
                        on_slice(pending_slices.pop(second))
                done = [p for p in procs if p.ready()]
                for p in done:
                    try:
                        exported, worker_kinds, worker_aborted, cpu = p.get()
                    except Exception as exc:
                        manager.shutdown()
                        raise RuntimeError(
                            f"a load worker failed: {type(exc).__name__}: {exc}"
                        ) from exc
                    merged.merge(exported)
                    kinds.update(worker_kinds)
                    aborted = aborted or worker_aborted
                    cpus.append(cpu)
                    procs.remove(p)
                time.sleep(0.05)
        manager.shutdown()
        return merged, kinds, aborted, max(cpus) if cpus else 0.0

    def _portable(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "base_url": self.base_url,
            "phases": list(self.phases),
            "thresholds": self.thresholds,
            "max_in_flight": self.max_in_flight,
            "allow_drops": self.allow_drops,
            "poisson": self.poisson,
            "timeout": self.timeout,
            "name": self.name,
            "connections": None if self.connections is None else max(1, self.connections),
        }


def _worker(
    config: dict[str, Any], share: float, seed: int, slices: Any
) -> tuple[dict[str, Any], dict[str, str], bool, float]:
    config = dict(config)
    config["max_in_flight"] = max(1, round(config["max_in_flight"] * share))
    test = LoadTest(**config)
    recorder, kinds, aborted, cpu = asyncio.run(
        test._run_one(share=share, seed=seed, on_slice=slices.put)
    )
    return recorder.export(), kinds, aborted, cpu


def _scenario_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "load_name", None) or getattr(fn, "__name__", "scenario"))


def run_load(
    scenario: Scenario | ScenarioRef | Sequence[tuple[Scenario | ScenarioRef, float]],
    base_url: str,
    phases: Sequence[Phase],
    **options: Any,
) -> LoadResult:
    """Build a :class:`LoadTest` and run it (``workers=`` is passed to ``run``)."""
    workers = int(options.pop("workers", 1))
    return LoadTest(scenario, base_url, phases, **options).run(workers=workers)

