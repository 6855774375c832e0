"""Reading a scenario file for ``stacktest load``.

A scenario file is Python. It defines what to run and, optionally, how:

    from stacktest.load import Phase

    service = "api"                                   # the stack service to load
    phases = [Phase("warm", "5s", 5), Phase("normal", "10s", 20), Phase("peak", "5s", 50)]
    thresholds = {"http_req_duration{name:create}": ["p(95)<200"], "errors": ["rate<0.01"]}
    max_in_flight = 500                               # also: poisson, connections, timeout

    async def scenario(session):                      # or scenarios = [(fn, weight), ...]
        r = await session.post("/v1/tasks", json={...}, name="create", expect=201)

or, for plain HTTP, ``requests = [{"method": "GET", "path": "/health", "expect": 200}]``
(run in order, one iteration each).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacktest.load.phases import Phase, parse_phases
from stacktest.load.session import Session

REQUESTS = "__requests__"
OPTIONS = ("max_in_flight", "allow_drops", "poisson", "connections", "timeout", "seed")


class ScenarioFileError(ValueError):
    """The scenario file is missing something or has something wrong."""


def requests_scenario(requests: list[dict[str, Any]]) -> Callable[[Session], Awaitable[None]]:
    """A scenario doing plain HTTP requests in order: method, path, json/content, expect, name."""
    items = []
    for i, item in enumerate(requests):
        if not isinstance(item, dict) or "path" not in item:
            raise ScenarioFileError(f"requests[{i}]: needs at least a path: {item!r}")
        request = dict(item)
        method = str(request.pop("method", "GET"))
        path = str(request.pop("path"))
        name = str(request.pop("name", f"{method} {path}"))
        expect = request.pop("expect", None)
        unknown = set(request) - {"json", "content", "headers", "params"}
        if unknown:
            raise ScenarioFileError(f"requests[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
        items.append((method, path, name, expect, request))

    async def declared(session: Session) -> None:
        for method, path, name, expect, extra in items:
            await session.request(method, path, name=name, expect=expect, **extra)

    declared.load_name = "requests"  # type: ignore[attr-defined]
    return declared


@dataclass
class ScenarioFile:
    path: Path
    scenarios: list[tuple[str, float]]  # attribute names in the module, with weights
    phases: list[Phase]
    thresholds: dict[str, list[Any]] = field(default_factory=dict)
    service: str | None = None
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def load_file(path: Path) -> Any:
    """Import a Python file as a module of its own (once per path)."""
    name = f"stacktest_scenario_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def read(path: Path) -> ScenarioFile:
    if not path.is_file():
        raise ScenarioFileError(f"no scenario file at {path}")
    try:
        module = load_file(path)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise ScenarioFileError(f"{path}: could not import it: {problem}") from exc
    scenarios: list[tuple[str, float]] = []
    if hasattr(module, "scenarios"):
        for i, item in enumerate(module.scenarios):
            fn, weight = item if isinstance(item, tuple) else (item, 1.0)
            name = next((k for k, v in vars(module).items() if v is fn), None)
            if name is None or not callable(fn):
                raise ScenarioFileError(
                    f"{path}: scenarios[{i}] must be a function defined at the top of the file"
                )
            scenarios.append((name, float(weight)))
    elif callable(getattr(module, "scenario", None)):
        scenarios.append(("scenario", 1.0))
    elif hasattr(module, "requests"):
        requests_scenario(module.requests)  # validate now, not in a worker
        scenarios.append((REQUESTS, 1.0))
    else:
        raise ScenarioFileError(
            f"{path}: define `async def scenario(session)`, a `scenarios` list, or `requests`"
        )
    raw_phases = getattr(module, "phases", None)
    if raw_phases is None:
        phases = [Phase("default", "10s", 10)]
    else:
        try:
            phases = [
                p if isinstance(p, Phase) else parse_phases([p])[0] for p in list(raw_phases)
            ]
        except (TypeError, ValueError) as exc:
            raise ScenarioFileError(f"{path}: phases: {exc}") from None
    options = {name: getattr(module, name) for name in OPTIONS if hasattr(module, name)}
    return ScenarioFile(
        path=path.resolve(),
        scenarios=scenarios,
        phases=phases,
        thresholds=dict(getattr(module, "thresholds", {}) or {}),
        service=getattr(module, "service", None),
        url=getattr(module, "url", None),
        options=options,
    )


def parse_phase_option(text: str) -> Phase:
    """``name:duration:rate[:ramp_to]`` (``peak:10s:50`` or ``ramp:30s:10:100``)."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise ScenarioFileError(
            f"--phase {text!r}: write NAME:DURATION:RATE[:RAMP_TO], e.g. peak:10s:50"
        )
    try:
        ramp = float(parts[3]) if len(parts) == 4 else None
        return Phase(parts[0], parts[1], float(parts[2]), ramp_to=ramp)
    except ValueError as exc:
        raise ScenarioFileError(f"--phase {text!r}: {exc}") from None
