"""Read what a run left behind into one :class:`RunReport`."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacktest.errors import ConfigError
from stacktest.redact import redact
from stacktest.spec.schema import SECRET_FIELDS


@dataclass
class ServiceRow:
    name: str
    kind: str
    state: str
    address: str
    ready_seconds: float | None
    restarts: int
    crashes: int
    #: From resources.jsonl: CPU seconds used while the stack was up, that as a percentage
    #: of one core over the sampled time, and the largest resident memory seen.
    cpu_seconds: float | None = None
    cpu_percent: float | None = None
    peak_rss_mb: float | None = None


@dataclass
class Event:
    t: float  # seconds since the stack started
    service: str
    what: str
    detail: str

    @property
    def fault(self) -> bool:
        return self.what.startswith("fault")

    @property
    def trouble(self) -> bool:
        return self.what in ("exited", "failed", "restarting", "killed")


@dataclass
class TestCase:
    name: str
    module: str
    seconds: float
    outcome: str  # passed / failed / error / skipped
    message: str = ""
    details: str = ""


@dataclass
class LoadRun:
    name: str
    seconds: float
    ok: bool
    valid: bool
    operations: list[dict[str, Any]]
    thresholds: list[dict[str, Any]]
    slices: list[dict[str, Any]]
    invalid_reasons: list[str]


@dataclass
class RunReport:
    stack: str
    source: str
    state: str
    started_at: float | None
    seconds: float
    services: list[ServiceRow] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    tests: list[TestCase] = field(default_factory=list)
    load_runs: list[LoadRun] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tests if t.outcome == outcome)

    @property
    def passed(self) -> bool:
        bad = self.count("failed") + self.count("error")
        return bad == 0 and all(r.ok for r in self.load_runs)

    @property
    def verdict(self) -> str:
        """PASSED / FAILED, or "no tests" when there were neither tests nor load runs."""
        if not self.tests and not self.load_runs:
            return "no tests"
        return "PASSED" if self.passed else "FAILED"

    @property
    def faults(self) -> list[Event]:
        return [e for e in self.events if e.fault]


def collect(run_dir: Path, junit: Path | None = None) -> RunReport:
    """The report of the run in ``run_dir`` (a stopped or running stack), with the tests
    of ``junit`` when given."""
    state_file = run_dir / "state.json"
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise ConfigError(
            "no run here (no state.json)",
            file=run_dir,
            hint="start the stack first (`stacktest up`, `stacktest test`)",
        ) from None
    secrets = _secrets(state)
    started = state.get("started_at")
    events = _events(run_dir / "events.jsonl", started, secrets)
    end = max([e.t for e in events], default=0.0)
    report = RunReport(
        stack=str(state.get("stack", "stack")),
        source=str(state.get("source", "")),
        state=str(state.get("state", "?")),
        started_at=started,
        seconds=end,
        services=[_service(n, info, secrets) for n, info in state.get("instances", {}).items()],
        events=events,
    )
    _add_resources(report.services, run_dir / "resources.jsonl")
    if junit is not None and junit.exists():
        report.tests = _tests(junit, secrets)
    # this run's load runs (the directory keeps earlier runs' results too)
    report.load_runs = [
        _load_run(p) for p in sorted((run_dir / "load").glob("*/results.json"))
        if _started_at(p) >= float(started or 0) - 1
    ]  # fmt: skip
    return report


def _started_at(path: Path) -> float:
    try:
        return float(json.loads(path.read_text()).get("started_at") or 0)
    except (OSError, ValueError):
        return 0.0


def _secrets(state: dict[str, Any]) -> list[str]:
    found = set()
    for info in state.get("instances", {}).values():
        for key in SECRET_FIELDS:
            value = (info.get("fields") or {}).get(key)
            if value and len(str(value)) >= 4:
                found.add(str(value))
    return sorted(found, key=len, reverse=True)


def _service(name: str, info: dict[str, Any], secrets: list[str]) -> ServiceRow:
    fields = info.get("fields") or {}
    ready = None
    if info.get("ready_at") and info.get("started_at"):
        ready = round(info["ready_at"] - info["started_at"], 3)
    return ServiceRow(
        name=name,
        kind=str(info.get("kind") or "process"),
        state=str(info.get("state", "?")),
        address=redact(str(fields.get("url") or ""), secrets),
        ready_seconds=ready,
        restarts=int(info.get("restarts") or 0),
        crashes=int(info.get("crashes") or 0),
    )


def _add_resources(services: list[ServiceRow], path: Path) -> None:
    """CPU (sum of the increases between samples: a restart starts again from 0) and peak
    memory per instance."""
    if not path.exists():
        return
    samples: dict[str, list[tuple[float, float, float]]] = {}
    for line in path.read_text().splitlines():
        try:
            raw = json.loads(line)
            samples.setdefault(raw["service"], []).append(
                (float(raw["t"]), float(raw["cpu_s"]), float(raw["rss_mb"]))
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a line cut by a crash
    for row in services:
        got = sorted(samples.get(row.name, []))
        if len(got) < 2:
            continue
        used = sum(max(0.0, b[1] - a[1]) for a, b in itertools.pairwise(got))
        span = got[-1][0] - got[0][0]
        row.cpu_seconds = round(used, 2)
        row.cpu_percent = round(100 * used / span, 1) if span > 0 else None
        row.peak_rss_mb = max(rss for _, _, rss in got)


def _events(path: Path, started: float | None, secrets: list[str]) -> list[Event]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        t = float(raw.pop("t", 0.0))
        service, what = str(raw.pop("service", "?")), str(raw.pop("event", "?"))
        detail = ", ".join(f"{k}={v}" for k, v in raw.items())
        base = started if started is not None else t
        out.append(Event(round(t - base, 3), service, what, redact(detail, secrets)))
    return out


def _tests(junit: Path, secrets: list[str]) -> list[TestCase]:
    try:
        root = ET.parse(junit).getroot()
    except ET.ParseError as exc:
        raise ConfigError(f"not a JUnit XML file: {exc}", file=junit) from None
    cases = []
    for case in root.iter("testcase"):
        outcome, message, details = "passed", "", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = "failed" if tag == "failure" else tag
                message = found.get("message", "")
                details = found.text or ""
                break
        out = case.find("system-out")
        if out is not None and out.text and outcome in ("failed", "error"):
            details += "\n" + out.text  # the per-test service log sections the plugin adds
        cases.append(
            TestCase(
                name=case.get("name", "?"),
                module=case.get("classname", ""),
                seconds=float(case.get("time", 0) or 0),
                outcome=outcome,
                message=redact(message, secrets),
                details=redact(details.strip(), secrets),
            )
        )
    return cases


def _load_run(path: Path) -> LoadRun:
    data = json.loads(path.read_text())
    operations = []
    for name, op in (data.get("operations") or {}).items():
        whole = op.get("all", {})
        operations.append({
            "name": name,
            "count": whole.get("count", 0),
            "failed": whole.get("failed", 0),
            "latency": whole.get("latency_ms", {}),
            "service": whole.get("service_time_ms", {}),
        })  # fmt: skip
    thresholds = data.get("thresholds") or []
    ok = data.get("valid", True) and not data.get("aborted") and all(
        t.get("ok", True) for t in thresholds
    )  # fmt: skip
    return LoadRun(
        name=f"{data.get('name', 'load')} ({path.parent.name})",
        seconds=float(data.get("seconds", 0)),
        ok=bool(ok),
        valid=bool(data.get("valid", True)),
        operations=operations,
        thresholds=thresholds,
        slices=data.get("slices") or [],
        invalid_reasons=list(data.get("invalid_reasons") or []),
    )
