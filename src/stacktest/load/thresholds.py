"""Thresholds in k6's syntax, evaluated on a run (or a phase of it).

    {
        "http_req_duration{name:create}": ["p(95)<200", "p(99)<500"],   # ms, corrected latency
        "service_time": ["p(99)<100"],                                  # ms, from actual send
        "errors": ["rate<0.01"],
        "dropped": ["count==0"],
        "http_req_duration{phase:peak}": [{"threshold": "p(95)<300", "abortOnFail": True}],
    }

Metrics: ``http_req_duration`` (HTTP requests; alias ``latency`` for every operation),
``service_time``, ``iteration_duration``, ``errors`` (rate, count), ``dropped`` (count,
rate of offered), ``requests`` / ``iterations`` (count, rate per second). Tags: ``name``
and ``phase``. Aggregations: ``p(N)``, ``avg``, ``med``, ``min``, ``max``, ``count``,
``rate``; operators ``< <= > >= == !=``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from stacktest.load.metrics import Recorder, new_histogram

_METRIC = re.compile(r"^\s*([a-z_]+)\s*(?:\{([^}]*)\})?\s*$")
_EXPR = re.compile(
    r"^\s*(p\(\s*[\d.]+\s*\)|avg|med|min|max|count|rate)\s*(<=|>=|==|!=|<|>)\s*(-?[\d.]+)\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
DURATION_METRICS = {"http_req_duration", "latency", "service_time", "iteration_duration"}
METRICS = DURATION_METRICS | {"errors", "dropped", "requests", "iterations"}


class ThresholdError(ValueError):
    """A threshold that cannot be understood."""


@dataclass(frozen=True)
class Threshold:
    metric: str
    tags: dict[str, str]
    aggregation: str
    op: str
    limit: float
    abort_on_fail: bool = False
    source: str = ""

    @property
    def key(self) -> str:
        tags = ",".join(f"{k}:{v}" for k, v in self.tags.items())
        return self.metric + (f"{{{tags}}}" if tags else "")


@dataclass(frozen=True)
class Verdict:
    threshold: Threshold
    measured: float | None
    ok: bool

    def describe(self) -> str:
        t = self.threshold
        value = "no data" if self.measured is None else f"{self.measured:.4g}"
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {t.key}: {t.aggregation} = {value} (limit {t.op} {t.limit:g})"

    def to_json(self) -> dict[str, Any]:
        t = self.threshold
        return {"metric": t.key, "threshold": t.source, "measured": self.measured, "ok": self.ok}


def parse(thresholds: dict[str, list[Any]] | None) -> list[Threshold]:
    parsed = []
    for key, items in (thresholds or {}).items():
        match = _METRIC.match(key)
        if not match or match.group(1) not in METRICS:
            raise ThresholdError(
                f"threshold {key!r}: unknown metric (metrics: {', '.join(sorted(METRICS))})"
            )
        metric, raw_tags = match.group(1), match.group(2) or ""
        tags = {}
        for part in filter(None, (p.strip() for p in raw_tags.split(","))):
            tag, sep, value = part.partition(":")
            if not sep or tag.strip() not in ("name", "phase"):
                raise ThresholdError(f"threshold {key!r}: tags are name:... and phase:...")
            tags[tag.strip()] = value.strip()
        if isinstance(items, str | dict):
            items = [items]
        for item in items:
            abort = False
            expression = item
            if isinstance(item, dict):
                expression = item.get("threshold", "")
                abort = bool(item.get("abortOnFail", item.get("abort_on_fail", False)))
            expr = _EXPR.match(str(expression))
            if not expr:
                raise ThresholdError(
                    f"threshold {key!r}: cannot read {expression!r} "
                    "(write it like p(95)<200, avg<100, rate<0.01, count==0)"
                )
            aggregation = expr.group(1).replace(" ", "")
            if metric in DURATION_METRICS and aggregation == "rate":
                raise ThresholdError(f"threshold {key!r}: {metric} has no rate; use p(N), avg")
            if metric not in DURATION_METRICS and aggregation not in ("count", "rate"):
                raise ThresholdError(f"threshold {key!r}: {metric} takes count or rate")
            limit = float(expr.group(3))
            source = str(expression)
            parsed.append(Threshold(metric, tags, aggregation, expr.group(2), limit, abort, source))
    return parsed


def _histogram(recorder: Recorder, kinds: dict[str, str], t: Threshold) -> HdrHistogram:
    merged = new_histogram()
    for (name, phase), stats in recorder.ops.items():
        if not _matches(name, phase, kinds, t):
            continue
        merged.add(stats.service if t.metric == "service_time" else stats.latency)
    return merged


def _matches(name: str, phase: str, kinds: dict[str, str], t: Threshold) -> bool:
    kind = kinds.get(name, "timed")
    if t.metric == "http_req_duration" and kind != "http":
        return False
    if t.metric == "iteration_duration" and kind != "iteration":
        return False
    if t.metric in ("latency", "service_time", "errors", "requests") and kind == "iteration":
        return False
    if t.metric == "iterations" and kind != "iteration":
        return False
    return t.tags.get("name", name) == name and t.tags.get("phase", phase) == phase


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def measure(
    recorder: Recorder, kinds: dict[str, str], t: Threshold, seconds: float
) -> float | None:
    if t.metric in DURATION_METRICS:
        hist = _histogram(recorder, kinds, t)
        if hist.get_total_count() == 0:
            return None
        agg = t.aggregation
        if agg.startswith("p("):
            value = hist.get_value_at_percentile(float(agg[2:-1]))
        elif agg in ("avg",):
            value = hist.get_mean_value()
        elif agg == "med":
            value = hist.get_value_at_percentile(50)
        elif agg == "min":
            value = hist.get_min_value()
        elif agg == "max":
            value = hist.get_max_value()
        else:
            value = hist.get_total_count() * 1000  # count: undo the ms conversion below
        return float(value) / 1000  # microseconds -> ms
    if t.metric == "dropped":
        phases = [c for n, c in recorder.phases.items() if t.tags.get("phase", n) == n]
        dropped = sum(c.dropped for c in phases)
        offered = sum(c.offered for c in phases)
        return float(dropped) if t.aggregation == "count" else _ratio(dropped, offered)
    ok = failed = 0
    for (name, phase), stats in recorder.ops.items():
        if _matches(name, phase, kinds, t):
            ok, failed = ok + stats.ok, failed + stats.failed
    if t.metric == "errors":
        return float(failed) if t.aggregation == "count" else _ratio(failed, ok + failed)
    total = ok + failed
    return float(total) if t.aggregation == "count" else (total / seconds if seconds else 0.0)


def evaluate(
    recorder: Recorder, kinds: dict[str, str], thresholds: list[Threshold], seconds: float
) -> list[Verdict]:
    recorder.flush()
    verdicts = []
    for t in thresholds:
        value = measure(recorder, kinds, t, seconds)
        ok = value is not None and _OPS[t.op](value, t.limit)
        if value is None and t.metric in ("errors", "dropped"):
            ok = True
        verdicts.append(Verdict(t, value, ok))
    return verdicts
