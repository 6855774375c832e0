"""The result of a load run: per operation and phase, both latency views, verdicts, validity."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

from stacktest.load.metrics import Recorder, new_histogram
from stacktest.load.phases import Phase
from stacktest.load.thresholds import Verdict


class RunSettings(Protocol):
    """What a result needs to know of the run that made it (a ``LoadTest``)."""

    @property
    def name(self) -> str: ...
    @property
    def phases(self) -> Sequence[Phase]: ...
    @property
    def max_in_flight(self) -> int: ...
    @property
    def allow_drops(self) -> bool: ...
    @property
    def max_schedule_lag_ms(self) -> float: ...
    @property
    def max_cpu_percent(self) -> float: ...

PERCENTILES = (50, 90, 95, 99, 99.9)
EXIT_THRESHOLDS = 99  # as k6
EXIT_INVALID = 97


def summarize(hist: HdrHistogram) -> dict[str, float]:
    """Percentiles in milliseconds; p100 is the max."""
    if hist.get_total_count() == 0:
        return {}
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000
    out["p100"] = out["max"]
    out["min"] = hist.get_min_value() / 1000
    out["mean"] = hist.get_mean_value() / 1000
    return out


#: Below this many arrivals a p99 is just the worst one: the median is judged instead.
MIN_ARRIVALS_FOR_P99 = 100


def schedule_lag_verdict(arrivals: int, lag: dict[str, float], limit_ms: float) -> str | None:
    """Why the generator fell behind its schedule, or None if it kept it.

    With enough arrivals the p99 is judged; with fewer than ``MIN_ARRIVALS_FOR_P99`` the
    p99 is the single latest arrival (one scheduling hiccup on a busy machine), so the
    median is: the run is invalid when the typical arrival was late, not when one was.
    """
    if not lag:
        return None
    which = "p99" if arrivals >= MIN_ARRIVALS_FOR_P99 else "p50"
    if lag[which] <= limit_ms:
        return None
    few = "" if which == "p99" else f" (only {arrivals} arrivals: the median is judged)"
    return (
        f"the generator fell behind its schedule: schedule lag {which} {lag[which]:.1f} ms"
        f" > {limit_ms:g} ms{few}"
    )


@dataclass
class LoadResult:
    name: str
    seconds: float
    started_at: float
    workers: int
    operations: dict[str, dict[str, Any]]
    phases: dict[str, dict[str, Any]]
    generator: dict[str, Any]
    thresholds: list[Verdict]
    slices: list[dict[str, Any]]
    aborted: bool
    invalid_reasons: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        test: RunSettings,
        recorder: Recorder,
        kinds: dict[str, str],
        verdicts: list[Verdict],
        *,
        seconds: float,
        cpu_percent: float,
        workers: int,
        aborted: bool,
        started_at: float,
    ) -> LoadResult:
        recorder.flush()
        operations: dict[str, dict[str, Any]] = {}
        by_phase = recorder.by_op_phase()
        names = sorted({name for name, _ in by_phase})
        for name in names:
            per_phase: dict[str, Any] = {}
            total_lat, total_svc = new_histogram(), new_histogram()
            ok = failed = 0
            errors: dict[str, int] = {}
            for (op, phase), stats in by_phase.items():
                if op != name:
                    continue
                per_phase[phase] = _op_stats(
                    stats.latency, stats.service, stats.ok, stats.failed, stats.errors
                )
                total_lat.add(stats.latency)
                total_svc.add(stats.service)
                ok, failed = ok + stats.ok, failed + stats.failed
                for key, count in stats.errors.items():
                    errors[key] = errors.get(key, 0) + count
            operations[name] = {
                "kind": kinds.get(name, "timed"),
                "all": _op_stats(total_lat, total_svc, ok, failed, errors),
                "phases": per_phase,
            }
        phases = {}
        for spec in test.phases:
            c = recorder.phase(spec.name)
            phases[spec.name] = {
                "duration_s": spec.duration,
                "offered": c.offered,
                "started": c.started,
                "dropped": c.dropped,
                "completed": c.completed,
                "failed": c.failed,
                "offered_rate": c.offered / spec.duration,
                "started_rate": c.started / spec.duration,
                # what the system did: iterations completed per second of the phase
                "achieved_rate": c.completed / spec.duration,
            }
        schedule = summarize(recorder.schedule_lag)
        loop_lag = summarize(recorder.loop_lag)
        generator = {
            "cpu_percent": round(cpu_percent, 1),
            "schedule_lag_ms": schedule,
            "loop_lag_ms": loop_lag,
            "max_in_flight": test.max_in_flight,
        }
        reasons = []
        behind = schedule_lag_verdict(
            recorder.schedule_lag.get_total_count(), schedule, test.max_schedule_lag_ms
        )
        if behind:
            reasons.append(behind)
        offered = sum(p["offered"] for p in phases.values())
        dropped = sum(p["dropped"] for p in phases.values())
        if dropped and not test.allow_drops:
            reasons.append(
                f"{dropped} of {offered} arrivals were dropped: {test.max_in_flight} iterations "
                "were already running (max_in_flight); what they would have measured is not in "
                "the percentiles (raise max_in_flight, lower the rate, or set allow_drops and "
                "judge them with a `dropped` threshold)"
            )
        if cpu_percent > test.max_cpu_percent:
            reasons.append(
                f"the generator saturated: {cpu_percent:.0f}% CPU > {test.max_cpu_percent:g}%"
                " (use more workers, or a lower rate)"
            )
        return cls(
            name=test.name, seconds=seconds, started_at=started_at, workers=workers,
            operations=operations, phases=phases, generator=generator, thresholds=verdicts,
            slices=recorder.slices, aborted=aborted, invalid_reasons=reasons, kinds=kinds,
        )  # fmt: skip

    # -- verdicts -------------------------------------------------------------------
    @property
    def valid(self) -> bool:
        """False when the generator could not keep its schedule: the numbers are not trustworthy."""
        return not self.invalid_reasons

    @property
    def thresholds_ok(self) -> bool:
        return all(v.ok for v in self.thresholds)

    @property
    def ok(self) -> bool:
        return self.valid and self.thresholds_ok and not self.aborted

    @property
    def exit_code(self) -> int:
        if not self.thresholds_ok or self.aborted:
            return EXIT_THRESHOLDS
        if not self.valid:
            return EXIT_INVALID
        return 0

    def latency(self, name: str, phase: str | None = None) -> dict[str, float]:
        """Corrected latency percentiles (ms) of an operation, overall or in one phase."""
        op = self.operations[name]
        return dict((op["phases"][phase] if phase else op["all"])["latency_ms"])

    def service_time(self, name: str, phase: str | None = None) -> dict[str, float]:
        op = self.operations[name]
        return dict((op["phases"][phase] if phase else op["all"])["service_time_ms"])

    # -- output ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "valid": self.valid,
            "invalid_reasons": self.invalid_reasons,
            "aborted": self.aborted,
            "thresholds": [v.to_json() for v in self.thresholds],
            "operations": self.operations,
            "phases": self.phases,
            "generator": self.generator,
            "slices": self.slices,
            "notes": {
                "latency_ms": "from the intended start (schedule): coordinated omission corrected",
                "service_time_ms": "from the actual send: what the server took",
            },
        }

    def write(self, directory: Path) -> Path:
        """results.json, operations.csv, slices.csv into ``directory``; returns it."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "results.json").write_text(json.dumps(self.to_json(), indent=1))
        with open(directory / "operations.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            header = ["operation", "phase", "count", "failed", "view"]
            writer.writerow(header + [f"p{p:g}" for p in PERCENTILES] + ["max"])
            for name, op in self.operations.items():
                for phase, stats in [("all", op["all"]), *op["phases"].items()]:
                    for view in ("latency_ms", "service_time_ms"):
                        values = stats[view]
                        writer.writerow(
                            [name, phase, stats["count"], stats["failed"], view]
                            + [values.get(f"p{p:g}", "") for p in PERCENTILES]
                            + [values.get("max", "")]
                        )
        with open(directory / "slices.csv", "w", newline="") as fh:
            fields = ["second", "phase", "count", "errors", "in_flight"]
            fields += ["p50_ms", "p95_ms", "p99_ms", "max_ms"]
            slices = csv.DictWriter(fh, fieldnames=fields)
            slices.writeheader()
            slices.writerows(self.slices)
        return directory

    def summary(self) -> str:
        """A plain-text report: phases, operations (both views), generator, verdicts."""
        lines = [f"load run {self.name!r}: {self.seconds:.1f}s, {self.workers} worker(s)"]
        lines.append("phases:")
        for name, p in self.phases.items():
            lines.append(
                f"  {name:12} offered {p['offered']:6} ({p['offered_rate']:.1f}/s)"
                f"  started {p['started']:6}  dropped {p['dropped']:5}"
                f"  completed {p['completed']:6}  failed {p['failed']:5}"
                f"  started {p['started_rate']:.1f}/s  completed {p['achieved_rate']:.1f}/s"
            )
        lines.append(
            "operations (ms; latency = from the intended start, coordinated omission corrected;"
            " service = from the actual send):"
        )
        for name, op in self.operations.items():
            s = op["all"]
            for view, label in (("latency_ms", "latency"), ("service_time_ms", "service")):
                v = s[view]
                if not v:
                    continue
                lines.append(
                    f"  {name:24} {label:8} n={s['count']:<6} err={s['failed']:<4}"
                    + " ".join(f"p{p:g}={v[f'p{p:g}']:.2f}" for p in PERCENTILES)
                    + f" max={v['max']:.2f}"
                )
        g = self.generator
        lag = g["schedule_lag_ms"]
        loop_p99 = g["loop_lag_ms"].get("p99", 0)
        lines.append(
            f"generator: cpu {g['cpu_percent']}%, schedule lag p99 {lag.get('p99', 0):.2f} ms"
            f" (max {lag.get('max', 0):.2f}), event-loop lag p99 {loop_p99:.2f} ms"
        )
        if self.invalid_reasons:
            lines.append("INVALID RUN: " + "; ".join(self.invalid_reasons))
        if self.aborted:
            lines.append("ABORTED: a threshold with abortOnFail was breached")
        for verdict in self.thresholds:
            lines.append("threshold " + verdict.describe())
        return "\n".join(lines)


def _op_stats(
    latency: HdrHistogram, service: HdrHistogram, ok: int, failed: int, errors: dict[str, int]
) -> dict[str, Any]:
    total = ok + failed
    return {
        "count": total,
        "ok": ok,
        "failed": failed,
        "error_rate": failed / total if total else 0.0,
        "errors": dict(errors),
        "latency_ms": summarize(latency),
        "service_time_ms": summarize(service),
    }
