"""Using a stack another process owns (``stacktest up -d``) from tests or scripts.

    stack = AttachedStack.attach(load_stack("stack.toml"))
    dsn = stack["db"].url

Everything comes from the run directory: services' fields and logs from
``state.json``, restarts through the owner's control socket. Stopping an attached
stack only lets go of it; the owner keeps it running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stacktest.engine import control
from stacktest.engine.rundir import RunDir
from stacktest.operations import Operations
from stacktest.service import Service
from stacktest.spec.model import StackSpec


class AttachedStack(Operations):
    """A running stack owned by another process; the same surface as :class:`Stack`."""

    def __init__(self, spec: StackSpec, state: dict[str, Any], run_dir: RunDir) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self._state = state

    @classmethod
    def attach(cls, spec: StackSpec, run_dir: Path | None = None) -> AttachedStack:
        """Attach to the stack running from the spec's run directory (StackNotRunning if none)."""
        directory = RunDir(run_dir or spec.run_dir)
        return cls(spec, directory.running_state(), directory)

    @property
    def state(self) -> dict[str, Any]:
        """The owner's latest ``state.json``."""
        self._state = self.run_dir.read_state() or self._state
        return self._state

    @property
    def run_id(self) -> str:
        return str(self._state["run_id"])

    @property
    def services(self) -> list[str]:
        return list(self.spec.services)

    def __getitem__(self, name: str) -> Service:
        return Service.from_state(name, self.state)

    @property
    def toxiproxy_url(self) -> str | None:
        """The Toxiproxy-compatible API over this stack's fault proxies."""
        url = self.state.get("toxiproxy_api")
        return str(url) if url else None

    def status(self) -> list[dict[str, Any]]:
        status: list[dict[str, Any]] = self._op({"op": "status"})["status"]
        return status

    def stop(self) -> None:
        """Let go of the stack; its owner keeps it running."""

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        return control.request(self.state, request, timeout=120)
