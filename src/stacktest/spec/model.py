"""The stack as data: what the stack file declares, validated once and frozen.

Nothing here knows how to run anything; the engine turns these into processes.
"""

from __future__ import annotations

import enum
import hashlib
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

#: Built-in providers a service can ``use``; anything with ``command`` is a ``process``.
PROVIDERS = ("postgres", "valkey", "redis", "nats", "memcached", "mariadb", "nginx", "rabbitmq")


class Condition(enum.StrEnum):
    """When a dependency counts as met (Compose's ``depends_on`` conditions)."""

    STARTED = "started"
    HEALTHY = "healthy"
    COMPLETED = "completed"


@dataclass(frozen=True)
class ReadyCheck:
    """How to tell that a process service is ready.

    ``kind`` is one of ``tcp`` (a TCP connect to ``target``, default the service's
    port), ``http`` (GET ``target``, a path on the service or a full URL, answered
    with ``status``), ``command`` (``argv`` exits 0) or ``log`` (``target`` is a
    regular expression found in the service's output).
    """

    kind: Literal["tcp", "http", "command", "log"]
    target: str = ""
    argv: tuple[str, ...] = ()
    shell: bool = False
    status: int | None = None
    attempt_timeout: float = 1.0


@dataclass(frozen=True)
class Dependency:
    service: str
    condition: Condition
    #: Route this edge through a fault proxy: True / False, or None for the stack's default.
    proxy: bool | None = None
    #: Restart this service after the dependency is restarted or reset (Compose's
    #: ``depends_on.NAME.restart``): what it holds (connections, subscriptions) is new.
    restart: bool = False


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class ServiceSpec:
    """One ``[services.NAME]`` table, validated."""

    name: str
    use: str  # "process" or one of PROVIDERS
    command: tuple[str, ...] = ()
    shell: bool = False
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=_frozen)
    replicas: int = 1
    ready: ReadyCheck | None = None
    depends_on: tuple[Dependency, ...] = ()
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 10.0
    start_timeout: float = 30.0
    restart: Literal["no", "on-failure", "always"] = "no"
    max_restarts: int = 5
    #: Provider options (``databases``, ``init``, ``jetstream`` ...), already type-checked.
    options: Mapping[str, Any] = field(default_factory=_frozen)
    #: ``port = N``: the service listens on 127.0.0.1:N (a compose file's published port),
    #: unless the stack is started with its ports remapped.
    port: int | None = None
    #: ``"container"``: a built-in server run from its image (docs/containers.md).
    backend: Literal["native", "container"] = "native"

    @property
    def is_process(self) -> bool:
        return self.use == "process"

    @property
    def is_container(self) -> bool:
        """Run from an image by a container engine (``image`` or ``build``)."""
        return self.use == "container"

    @property
    def own_ready_check(self) -> bool:
        """Whether ``ready`` is the service's only readiness check (a command service's, a
        container's), rather than run as well as a built-in server's protocol check."""
        return self.use in ("process", "container")

    @property
    def has_health(self) -> bool:
        """Whether "healthy" means more than "started" for this service."""
        # (a container without `ready` is ready by its image's HEALTHCHECK, if it has one)
        return not self.is_process or self.ready is not None

    def instance_names(self) -> list[str]:
        if self.replicas == 1:
            return [self.name]
        return [f"{self.name}.{i}" for i in range(1, self.replicas + 1)]


TOXIPROXY_PORT = 8474  # Toxiproxy's own default


@dataclass(frozen=True)
class StackSpec:
    """A whole stack file, validated: services in declaration order."""

    name: str
    source: Path
    run_dir: Path
    services: Mapping[str, ServiceSpec]
    #: ``[stack] proxy = true``: every dependency edge goes through a fault proxy.
    proxy: bool = False
    #: Where the Toxiproxy-compatible API listens when that port is free (else any free
    #: port); 0: any free port.
    toxiproxy_port: int = TOXIPROXY_PORT
    #: The files read, in order (a stack.toml, or compose files with an override file):
    #: the same files again make the same stack (``up -d``'s runner is given them).
    files: tuple[Path, ...] = ()
    #: Other files that went into it (.env, included and extended files): the digest.
    inputs: tuple[Path, ...] = ()
    #: Compose profiles that were active.
    profiles: tuple[str, ...] = ()
    #: What a compose file asked for that is not honoured as written, key by key.
    warnings: tuple[str, ...] = ()
    #: Pinned ports (``port = N``) moved to free ones (``--remap-ports``, xdist workers).
    remap_ports: bool = False
    #: ``[stack] volumes``: directories ``RUN_DIR/volumes/NAME``, made at start, kept across
    #: runs, removed by ``stacktest down -v`` (a compose file's named volumes).
    volumes: tuple[str, ...] = ()
    #: ``[stack] tmpfs``: directories ``RUN_DIR/tmpfs/NAME``, made empty at each start
    #: (a compose file's ``tmpfs`` mounts of local processes).
    tmpfs: tuple[str, ...] = ()

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def __getitem__(self, name: str) -> ServiceSpec:
        return self.services[name]

    def proxied_edges(self) -> list[tuple[str, str]]:
        """``(client, server)`` pairs whose traffic goes through a fault proxy."""
        edges = []
        for name, spec in self.services.items():
            for dep in spec.depends_on:
                if dep.proxy if dep.proxy is not None else self.proxy:
                    edges.append((name, dep.service))
        return edges

    def digest(self) -> str:
        """A hash of the stack file and the files it feeds to services (``init`` SQL).

        A stack kept running between test sessions is reused only while this matches.
        """
        h = hashlib.sha256()
        for path in [str(self.source), *map(str, self.files[1:]), *map(str, self.inputs),
                     *self._input_files()]:  # fmt: skip
            h.update(path.encode())
            try:
                h.update(Path(path).read_bytes())
            except OSError:
                h.update(b"<missing>")
        return h.hexdigest()[:16]

    def _input_files(self) -> list[str]:
        files: list[str] = []
        for spec in self.services.values():
            init = spec.options.get("init") or []
            files += [str(f) for f in init] if isinstance(init, list | tuple) else []
        return files

    def start_order(self) -> list[str]:
        """Service names in an order where every dependency comes first."""
        order: list[str] = []
        seen: set[str] = set()
        for root in self.services:  # depth first, iteratively (a chain may be long)
            if root in seen:
                continue
            seen.add(root)
            todo = [(root, iter(self.services[root].depends_on))]
            while todo:
                name, deps = todo[-1]
                dep = next(deps, None)
                if dep is None:
                    todo.pop()
                    order.append(name)
                elif dep.service not in seen:
                    seen.add(dep.service)
                    todo.append((dep.service, iter(self.services[dep.service].depends_on)))
        return order
