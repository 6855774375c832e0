"""What a provider is: how one kind of service becomes a running, ready process.

The engine knows no provider by name. For each service instance it asks the
provider for the instance's fields (``url``, ``password``...) before anything
starts, then for a :class:`Launch` (argv, env, user), then polls
:meth:`Provider.probe` until the instance is ready.
"""

from __future__ import annotations

import abc
import asyncio
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacktest.spec.model import ReadyCheck, ServiceSpec


@dataclass
class Instance:
    """One process of a service (``worker.2`` is replica 2 of ``worker``), as planned."""

    name: str
    spec: ServiceSpec
    run_id: str
    replica: int
    port: int
    data_dir: Path
    run_dir: Path
    log_path: Path
    extra_ports: dict[str, int] = field(default_factory=dict)
    #: ``command``, ``cwd``, ``env`` and ``ready`` with every reference filled in.
    command: list[str] = field(default_factory=list)
    #: A built-in's ``args`` and ``settings`` with every reference filled in (a replica's
    #: ``replicaof = "{primary.host} {primary.port}"``); the rest of its options as given.
    options: dict[str, Any] = field(default_factory=dict)
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready: ReadyCheck | None = None
    #: Values ``{service.field}`` references resolve to; filled by the provider.
    fields: dict[str, str] = field(default_factory=dict)
    #: Provider state kept between prepare() and later calls (paths, users ...).
    scratch: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Launch:
    """How to start an instance's process."""

    argv: list[str]
    env: Mapping[str, str]
    cwd: Path
    #: Run as this user (a name) instead of the runner's; used when servers refuse root.
    user: str | None = None


@dataclass(frozen=True)
class BinaryReport:
    """A line of ``stacktest doctor``."""

    provider: str
    binary: str
    path: Path | None
    version: str | None
    looked_in: tuple[str, ...]
    hint: str


def generate_password() -> str:
    return secrets.token_urlsafe(18)


class Provider(abc.ABC):
    """A kind of service. Subclasses are stateless; state lives on the Instance."""

    kind: str
    #: Names of extra loopback ports an instance needs besides ``port``.
    extra_ports: tuple[str, ...] = ()

    @abc.abstractmethod
    def plan(self, instance: Instance) -> None:
        """Fill ``instance.fields``; called before anything starts, must not block."""

    @abc.abstractmethod
    async def prepare(self, instance: Instance) -> Launch:
        """Make what the process needs (data dirs, config) and say how to start it."""

    @abc.abstractmethod
    async def probe(self, instance: Instance) -> bool:
        """One readiness attempt: True when ready. May raise; that counts as not ready."""

    async def on_signal(self, instance: Instance, sig: int) -> None:  # noqa: B027
        """Called before ``sig`` goes to the instance's process group (a fault, a stop):
        for a server the group does not hold (a container), act on it here."""

    def resource_root(self, instance: Instance, pid: int) -> int:
        """The process whose tree is the instance's CPU and memory (``pid``: its leader)."""
        return pid

    async def cleanup(self, instance: Instance) -> None:  # noqa: B027 - optional hook
        """Remove what prepare() made outside the run directory."""

    async def discard_data(self, instance: Instance) -> None:
        """Forget the instance's state (it is stopped) so the next start begins fresh."""
        await asyncio.to_thread(shutil.rmtree, instance.data_dir, True)

    def unix_socket(self, instance: Instance) -> str | None:
        """A unix socket path that reaches the server exactly as its TCP port does (same
        authentication), or None. An edge's fault proxy relays to it: cheaper than a
        second loopback TCP hop."""
        return None

    def client_env(self, instance: Instance) -> dict[str, str]:
        """Environment for ``stacktest exec``: how the provider's own clients connect."""
        return {}

    def client_args(self, instance: Instance) -> dict[str, list[str]]:
        """Per client program, arguments ``stacktest exec`` puts after it (for clients that
        read no environment variables, like ``valkey-cli``)."""
        return {}

    def client_bin_dirs(self, instance: Instance) -> list[Path]:
        """Directories put first on PATH by ``stacktest exec``."""
        return []

    def image_env(self, instance: Instance) -> dict[str, str]:
        """The variables the official image documents (``POSTGRES_USER``...), for a check
        written for the image (a compose file's healthcheck)."""
        return {}

    def doctor(self) -> list[BinaryReport]:
        return []

    def server_note(self, spec: ServiceSpec) -> str | None:
        """Before anything starts: what to say when the server that would run is not the
        one asked for (another version; Valkey for Redis). None when it is."""
        return None


class PrivateDataProvider(Provider):
    """A server whose data directory lives in a private directory outside the run
    directory (``scratch["private_dir"]``, in memory when it can be, reachable by the user
    the server runs as), linked from the run directory: Postgres, MariaDB."""

    async def cleanup(self, instance: Instance) -> None:
        shutil.rmtree(instance.scratch.get("private_dir", "/nonexistent"), ignore_errors=True)

    async def discard_data(self, instance: Instance) -> None:
        # the next prepare() starts from the cached, initialised data directory again
        data = Path(instance.scratch["private_dir"]) / "data"
        await asyncio.to_thread(shutil.rmtree, data, True)
