from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

# Property tests: a fast profile in the suite, a long one for benchmarks/reliability.py
# (`pytest --hypothesis-profile=long`).
_FIXTURES_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=_FIXTURES_OK)
settings.register_profile("long", max_examples=5000, deadline=None, suppress_health_check=_FIXTURES_OK)
settings.load_profile("ci")

# Many stacks run at once here (xdist, pytester sessions): none of them takes Toxiproxy's
# well-known port 8474 unless its stack file asks for it (the third-party suite does).
os.environ["STACKTEST_TOXIPROXY_PORT"] = "0"
#: A project of its own, run through `stacktest test` by a test, not collected here.
collect_ignore = ["thirdparty_suite", "compose"]


@pytest.fixture
def write_stack(tmp_path: Path) -> Callable[[str], Path]:
    """Write a stack.toml (dedented) into a fresh directory and return its path."""

    def write(text: str, name: str = "stack.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No container engine to be found, whatever this machine has: only DOCKER_HOST's
    socket (which does not exist) is looked at."""
    from stacktest.containers import engine

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setattr(engine, "candidates", lambda environ=None: [
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock")])
    engine.forget()
    yield
    engine.forget()
