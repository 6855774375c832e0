"""Thresholds in k6's syntax, evaluated on a run (or a phase of it).

    {
        "http_req_duration{name:create}": ["p(95)<200", "p(99)<500"],   # ms, corrected latency
        "service_time": ["p(99)<100"],                                  # ms, from actual send
        "errors": ["rate<0.01"],
        "dropped": ["count==0"],
        "http_req_duration{phase:peak}": [{"threshold": "p(95)<300", "abortOnFail": True}],
    }

k6's metrics, with the aggregations k6 allows for each metric type:

- trends (``p(N)``, ``avg``, ``med``, ``min``, ``max``): ``http_req_duration`` (HTTP requests,
  corrected latency), ``iteration_duration``; stacktest's ``latency`` (every operation) and
  ``service_time`` (from the actual send) besides;
- rates (``rate``): ``http_req_failed`` (failed HTTP requests / all), ``checks`` (passed /
  all, from ``session.check``);
- counters (``count``, ``rate`` per second): ``http_reqs``, ``iterations``, ``data_sent``,
  ``data_received`` (bytes); stacktest's ``requests`` (every operation) besides;
- gauges (``value``, ``min``, ``max``): ``vus`` (iterations in flight, sampled each second);
- stacktest's own: ``errors`` (``count``, ``rate`` = failed / all operations), ``dropped``
  (``count``, ``rate`` = dropped / offered arrivals).

Tags, as k6 writes them (``http_req_duration{name:create,status:201}``): ``name``, ``phase``,
``status`` (an HTTP status; 0: no response), ``check`` (for ``checks``). Options:
``abortOnFail``, ``delayAbortEval`` (``"10s"``: no abort before that much of the run).
A k6 options file's ``thresholds`` block loads as is (:func:`from_k6_options`).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from stacktest.durations import parse_duration
from stacktest.load.metrics import Recorder, new_histogram

_METRIC = re.compile(r"^\s*([a-z_]+)\s*(?:\{([^}]*)\})?\s*$")
_EXPR = re.compile(
    r"^\s*(p\(\s*[\d.]+\s*\)|avg|med|min|max|count|rate|value)\s*(<=|>=|==|!=|<|>)\s*"
    r"(-?[\d.]+)\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
DURATION_METRICS = {"http_req_duration", "latency", "service_time", "iteration_duration"}
RATE_METRICS = {"http_req_failed", "checks"}
COUNTER_METRICS = {"http_reqs", "iterations", "requests", "data_sent", "data_received",
                   "errors", "dropped"}  # fmt: skip
GAUGE_METRICS = {"vus"}
METRICS = DURATION_METRICS | RATE_METRICS | COUNTER_METRICS | GAUGE_METRICS
#: What each kind of metric can be asked (k6's rules; a duration's count is stacktest's).
AGGREGATIONS = {
    **dict.fromkeys(DURATION_METRICS, "p(N), avg, med, min, max, count"),
    **dict.fromkeys(RATE_METRICS, "rate"),
    **dict.fromkeys(COUNTER_METRICS, "count, rate"),
    **dict.fromkeys(GAUGE_METRICS, "value, min, max"),
}
TAGS = {"name", "phase", "status", "check"}


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
    #: abortOnFail is not judged before this many seconds of the run (delayAbortEval).
    delay_abort_eval: float = 0.0

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
            if not sep or tag.strip() not in TAGS:
                raise ThresholdError(f"threshold {key!r}: tags are {', '.join(sorted(TAGS))} "
                                     "(name:create, status:201...)")  # fmt: skip
            tags[tag.strip()] = value.strip()
        if isinstance(items, str | dict):
            items = [items]
        for item in items:
            abort = False
            delay = 0.0
            expression = item
            if isinstance(item, dict):
                expression = item.get("threshold", "")
                abort = bool(item.get("abortOnFail", item.get("abort_on_fail", False)))
                raw_delay = item.get("delayAbortEval", item.get("delay_abort_eval"))
                if raw_delay is not None:
                    try:
                        delay = parse_duration(raw_delay, bare="ms")  # k6: a bare number is ms
                    except ValueError as exc:
                        raise ThresholdError(f"threshold {key!r}: delayAbortEval: {exc}") from None
            expr = _EXPR.match(str(expression))
            if not expr:
                raise ThresholdError(
                    f"threshold {key!r}: cannot read {expression!r} "
                    "(write it like p(95)<200, avg<100, rate<0.01, count==0)"
                )
            aggregation = expr.group(1).replace(" ", "")
            allowed = AGGREGATIONS[metric]
            kind = "p(N)" if aggregation.startswith("p(") else aggregation
            if kind not in allowed.split(", "):
                raise ThresholdError(f"threshold {key!r}: {metric} takes {allowed}, "
                                     f"not {aggregation}")  # fmt: skip
            if "check" in tags and metric != "checks":
                raise ThresholdError(f"threshold {key!r}: the check tag is for checks")
            limit = float(expr.group(3))
            source = str(expression)
            parsed.append(Threshold(metric, tags, aggregation, expr.group(2), limit, abort,
                                    source, delay))  # fmt: skip
    return parsed


def from_k6_options(path: str | Path) -> dict[str, list[Any]]:
    """The ``thresholds`` of a k6 options file (JSON, as ``k6 run --config``) as they are."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ThresholdError(f"{path}: cannot read a k6 options file: {exc}") from None
    thresholds = data.get("thresholds") if isinstance(data, dict) else None
    if not isinstance(thresholds, dict):
        raise ThresholdError(f"{path}: no `thresholds` object in it")
    parse(thresholds)  # every one understood, or the error says which
    return thresholds


def _histogram(recorder: Recorder, kinds: dict[str, str], t: Threshold) -> HdrHistogram:
    merged = new_histogram()
    recorder.flush()
    for (name, phase, status), stats in recorder.ops.items():
        if not _matches(name, phase, status, kinds, t):
            continue
        merged.add(stats.service if t.metric == "service_time" else stats.latency)
    return merged


def _matches(name: str, phase: str, status: str, kinds: dict[str, str], t: Threshold) -> bool:
    kind = kinds.get(name, "timed")
    if t.metric in ("http_req_duration", "http_req_failed", "http_reqs") and kind != "http":
        return False
    if t.tags.get("status", status) != status:
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
    phases = [c for n, c in recorder.phases.items() if t.tags.get("phase", n) == n]
    if t.metric == "dropped":
        dropped = sum(c.dropped for c in phases)
        offered = sum(c.offered for c in phases)
        return float(dropped) if t.aggregation == "count" else _ratio(dropped, offered)
    if t.metric in ("data_sent", "data_received"):
        total = sum(c.sent if t.metric == "data_sent" else c.received for c in phases)
        return float(total) if t.aggregation == "count" else (total / seconds if seconds else 0.0)
    if t.metric == "checks":
        passed = failed = 0
        for (check, phase), (p, f) in recorder.checks.items():
            if t.tags.get("check", check) == check and t.tags.get("phase", phase) == phase:
                passed, failed = passed + p, failed + f
        return _ratio(passed, passed + failed) if passed + failed else None
    if t.metric == "vus":
        samples = [s["in_flight"] for s in recorder.slices
                   if t.tags.get("phase", s["phase"]) == s["phase"]]  # fmt: skip
        if not samples:
            return None
        gauge = {"value": samples[-1], "min": min(samples), "max": max(samples)}
        return float(gauge[t.aggregation])
    ok = failed = 0
    for (name, phase, status), stats in recorder.ops.items():
        if _matches(name, phase, status, kinds, t):
            ok, failed = ok + stats.ok, failed + stats.failed
    if t.metric in ("errors", "http_req_failed"):
        if t.aggregation == "count":
            return float(failed)
        return _ratio(failed, ok + failed) if ok + failed else None
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
        if value is None and t.metric in ("errors", "dropped", "http_req_failed"):
            ok = True  # nothing failed: there was nothing
        verdicts.append(Verdict(t, value, ok))
    return verdicts
