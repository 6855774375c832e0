"""What tests see of a running service: :class:`Service`, the same from a stack this
process runs (``Stack``) and from one another process owns (``AttachedStack``, read
from ``state.json``). Standard library only, so an attached test process needs
nothing of the engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Service:
    """What tests see of a running service (of its first instance, for replicas)."""

    name: str
    kind: str
    host: str
    port: int
    url: str
    #: Every field a ``{service.field}`` reference can name (``user``, ``password``...).
    fields: Mapping[str, str]
    #: Environment for the provider's own clients (``PGHOST``..., ``NATS_URL``).
    env: Mapping[str, str]
    log_path: Path
    pids: tuple[int | None, ...]

    def __getattr__(self, name: str) -> str:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(
                f"service {self.name!r} has no field {name!r} (fields: {', '.join(self.fields)})"
            ) from None

    @classmethod
    def from_state(cls, name: str, state: Mapping[str, Any]) -> Service:
        """The view of a service from a run directory's ``state.json``."""
        instances = [i for i in state.get("instances", {}).values() if i.get("service") == name]
        if not instances:
            known = sorted({i.get("service", "?") for i in state.get("instances", {}).values()})
            raise KeyError(f"no service {name!r} in this stack (services: {', '.join(known)})")
        first = instances[0]
        fields = dict(first.get("fields") or {})
        return cls(
            name=name,
            kind=str(first.get("kind", "")),
            host=fields.get("host", "127.0.0.1"),
            port=int(first.get("port") or 0),
            url=fields.get("url", ""),
            fields=fields,
            env=dict(first.get("client_env") or {}),
            log_path=Path(first.get("log", "")),
            pids=tuple(i.get("pid") for i in instances),
        )
