"""Recording: HDR histograms per operation and phase, two views of latency, counters, slices.

Two latencies per operation, both in microseconds:

- ``latency``: from the moment the iteration was *supposed* to start (its place in the
  schedule) to the operation's end. When the system stalls, iterations queue up behind
  the schedule and this view shows the wait, as a user would feel it (wrk2's
  coordinated-omission correction).
- ``service_time``: from the moment the operation was actually sent to its end: what the
  server took, and nothing of the queue in front of it.

Memory is bounded: one pair of histograms per (operation, phase), and per second only
a small summary (count, errors, p50/p95/p99/max) once that second is over.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record(hist: HdrHistogram, micros: float) -> None:
    hist.record_value(_clamp(micros))


def _clamp(micros: float) -> int:
    return int(min(max(micros, LOWEST_US), HIGHEST_US))


def record_batch(hist: HdrHistogram, values: list[int]) -> None:
    """Add buffered values grouped by value: the histogram's own recording is Python,
    and called once per value it would cost more than the request being measured."""
    if values:
        for value, count in Counter(values).items():
            hist.record_value(value, count)
        values.clear()


@dataclass
class OpStats:
    latency: HdrHistogram = field(default_factory=new_histogram)
    service: HdrHistogram = field(default_factory=new_histogram)
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    pending_latency: list[int] = field(default_factory=list)
    pending_service: list[int] = field(default_factory=list)

    def flush(self) -> None:
        record_batch(self.latency, self.pending_latency)
        record_batch(self.service, self.pending_service)

    def add(self, other: OpStats) -> None:
        self.latency.add(other.latency)
        self.service.add(other.service)
        self.ok += other.ok
        self.failed += other.failed
        for key, count in other.errors.items():
            self.errors[key] = self.errors.get(key, 0) + count


@dataclass
class PhaseCounters:
    offered: int = 0
    started: int = 0
    dropped: int = 0
    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    #: HTTP bytes written and read (k6's data_sent, data_received).
    sent: int = 0
    received: int = 0

    def add(self, other: PhaseCounters) -> None:
        self.offered += other.offered
        self.started += other.started
        self.dropped += other.dropped
        self.completed += other.completed
        self.failed += other.failed
        self.seconds = max(self.seconds, other.seconds)
        self.sent += other.sent
        self.received += other.received


class Recorder:
    """Everything one generator process measured."""

    def __init__(self) -> None:
        #: (operation, phase, HTTP status or "") -> its measurements.
        self.ops: dict[tuple[str, str, str], OpStats] = {}
        #: (check name, phase) -> [passed, failed] (Session.check).
        self.checks: dict[tuple[str, str], list[int]] = {}
        self.phases: dict[str, PhaseCounters] = {}
        self.schedule_lag = new_histogram()
        self.loop_lag = new_histogram()
        self.slices: list[dict[str, Any]] = []
        self._slice: list[int] = []  # this second's corrected latencies (µs)
        self._slice_errors = 0
        self._schedule_buf: list[int] = []
        self._slice_start = time.monotonic()
        self._slice_index = 0
        self.in_flight = 0

    def op(self, name: str, phase: str, status: str = "") -> OpStats:
        key = (name, phase, status)
        if key not in self.ops:
            self.ops[key] = OpStats()
        return self.ops[key]

    def by_op_phase(self) -> dict[tuple[str, str], OpStats]:
        """The measurements per (operation, phase), every status together."""
        self.flush()
        merged: dict[tuple[str, str], OpStats] = {}
        for (name, phase, _), stats in self.ops.items():
            merged.setdefault((name, phase), OpStats()).add(stats)
        return merged

    def record_check(self, name: str, phase: str, ok: bool) -> None:
        counts = self.checks.setdefault((name, phase), [0, 0])
        counts[0 if ok else 1] += 1

    def note_schedule_lag(self, micros: float) -> None:
        self._schedule_buf.append(_clamp(micros))

    def flush(self) -> None:
        """Move buffered values into the histograms (done each second and at the end)."""
        for stats in self.ops.values():
            stats.flush()
        record_batch(self.schedule_lag, self._schedule_buf)

    def phase(self, name: str) -> PhaseCounters:
        if name not in self.phases:
            self.phases[name] = PhaseCounters()
        return self.phases[name]

    def record_op(
        self, name: str, phase: str, latency_us: float, service_us: float, error: str | None,
        status: str = "",
    ) -> None:  # fmt: skip
        stats = self.op(name, phase, status)
        latency = _clamp(latency_us)
        stats.pending_latency.append(latency)
        stats.pending_service.append(_clamp(service_us))
        self._slice.append(latency)
        if error is None:
            stats.ok += 1
        else:
            stats.failed += 1
            stats.errors[error] = stats.errors.get(error, 0) + 1
            self._slice_errors += 1

    def roll_slice(self, now: float, phase: str, *, final: bool = False) -> dict[str, Any] | None:
        """Close the current one-second slice if a second has passed (or, ``final``, the
        last part of a second, if anything happened in it); return its summary."""
        if now - self._slice_start < 1.0 and not (final and (self._slice or self._slice_errors)):
            return None
        self.flush()
        values = sorted(self._slice)

        def at(q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))] / 1000 if values else 0.0

        summary = {
            "second": self._slice_index,
            "phase": phase,
            "count": len(values),
            "errors": self._slice_errors,
            "in_flight": self.in_flight,
            "p50_ms": at(0.50),
            "p95_ms": at(0.95),
            "p99_ms": at(0.99),
            "max_ms": values[-1] / 1000 if values else 0.0,
        }
        self.slices.append(summary)
        self._slice = []
        self._slice_errors = 0
        self._slice_start += 1.0
        self._slice_index += 1
        return summary

    # -- merging across worker processes ------------------------------------------------
    def export(self) -> dict[str, Any]:
        self.flush()
        return {
            "ops": {
                f"{name}\0{phase}\0{status}": {
                    "latency": s.latency.encode().decode(),
                    "service": s.service.encode().decode(),
                    "ok": s.ok,
                    "failed": s.failed,
                    "errors": s.errors,
                }
                for (name, phase, status), s in self.ops.items()
            },
            "checks": {f"{name}\0{phase}": c for (name, phase), c in self.checks.items()},
            "phases": {name: vars(c) for name, c in self.phases.items()},
            "schedule_lag": self.schedule_lag.encode().decode(),
            "loop_lag": self.loop_lag.encode().decode(),
            "slices": self.slices,
        }

    def merge(self, data: dict[str, Any]) -> None:
        self.flush()
        for key, item in data["ops"].items():
            name, phase, status = key.split("\0")
            other = OpStats(ok=item["ok"], failed=item["failed"], errors=item["errors"])
            other.latency.decode_and_add(item["latency"].encode())
            other.service.decode_and_add(item["service"].encode())
            self.op(name, phase, status).add(other)
        for key, (passed, failed) in data.get("checks", {}).items():
            name, phase = key.split("\0")
            counts = self.checks.setdefault((name, phase), [0, 0])
            counts[0] += passed
            counts[1] += failed
        for name, counters in data["phases"].items():
            self.phase(name).add(PhaseCounters(**counters))
        self.schedule_lag.decode_and_add(data["schedule_lag"].encode())
        self.loop_lag.decode_and_add(data["loop_lag"].encode())
        by_second = {(s["second"]): s for s in self.slices}
        for s in data["slices"]:
            mine = by_second.get(s["second"])
            if mine is None:
                self.slices.append(dict(s))
                by_second[s["second"]] = self.slices[-1]
            else:  # percentiles of a merged second: the worse of the two (a bound, not exact)
                mine["count"] += s["count"]
                mine["errors"] += s["errors"]
                mine["in_flight"] += s["in_flight"]
                for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
                    mine[k] = max(mine[k], s[k])
        self.slices.sort(key=lambda s: s["second"])
