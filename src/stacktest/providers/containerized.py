"""A built-in server run from its image (``backend = "container"``), not a local binary.

The service keeps everything that makes it a ``nats`` or a ``valkey``: its fields
(``url``, ``password``, ``monitor_port``...), its protocol readiness probe, its clients'
environment, the isolation fixtures (they speak the protocol over TCP). Only how it runs
changes: the image (``image = "..."``, else the official one at ``version``), given the
command line the image's own entrypoint passes to the server, bound to 127.0.0.1 at the
stack's ports (containers share the host's network: docs/containers.md).

Supported so far: NATS (``nats``: its entrypoint is the server) and Valkey/Redis
(``valkey/valkey``, ``redis``). Postgres, MariaDB, RabbitMQ, memcached and nginx as
containers are refused with a message: each needs its image's contract the other way
round (which variables make which user and database, where init scripts are mounted).
"""

from __future__ import annotations

from typing import Any

from stacktest.errors import ServiceStartError
from stacktest.providers.base import Instance, Launch, Provider
from stacktest.providers.container import ContainerProvider, container_name

#: The official image of each built-in that can run as a container, and its default tag.
OFFICIAL = {"nats": ("nats", "2"), "valkey": ("valkey/valkey", "8"), "redis": ("redis", "7")}


def image_for(kind: str, options: Any) -> str:
    image = options.get("image")
    if image and "/" not in str(image) and ":" not in str(image) and kind in OFFICIAL:
        image = None  # a compose file's bare "nats": the official image at `version`
    if image:
        return str(image)
    repository, tag = OFFICIAL[kind]
    return f"{repository}:{options.get('version') or tag}"


def nats_command(instance: Instance) -> list[str]:
    """The official image's ENTRYPOINT is the server: the command is its flags."""
    options = instance.options
    command = ["-a", "127.0.0.1", "-p", str(instance.port), "-m", instance.fields["monitor_port"],
               "-n", f"stacktest-{instance.name}"]  # fmt: skip
    if options.get("jetstream"):
        command += ["-js", "-sd", "/data/jetstream"]
    return command + [str(a) for a in options.get("args") or []]


def valkey_command(instance: Instance) -> list[str]:
    """``valkey-server`` / ``redis-server`` and its flags, as the images' entrypoint runs it."""
    server = "redis-server" if instance.spec.use == "redis" else "valkey-server"
    command = [server, "--bind", "127.0.0.1", "--port", str(instance.port),
               "--protected-mode", "no"]  # fmt: skip
    if not instance.options.get("persistence"):
        command += ["--save", "", "--appendonly", "no"]
    if instance.fields.get("password"):
        command += ["--requirepass", instance.fields["password"]]
    for key, value in (instance.options.get("settings") or {}).items():
        command += [f"--{key}", str(value)]
    return command


COMMANDS = {"nats": nats_command, "valkey": valkey_command, "redis": valkey_command}


class ContainerizedProvider(ContainerProvider):
    """The native provider's fields, probe and clients; the image's process."""

    image_healthcheck = False  # (readiness is the server's protocol, as natively)

    def __init__(self, native: Provider) -> None:
        self.native = native
        self.kind = native.kind
        self.extra_ports = native.extra_ports

    def plan(self, instance: Instance) -> None:
        self.native.plan(instance)
        instance.scratch.pop("unix_socket", None)  # (inside the container: proxies use TCP)
        instance.fields["container"] = container_name(instance)

    def unix_socket(self, instance: Instance) -> str | None:
        return None

    async def prepare(self, instance: Instance) -> Launch:
        kind = instance.spec.use
        if kind not in COMMANDS:
            raise ServiceStartError(
                instance.name,
                f"a {kind} server cannot run as a container yet (backend = \"container\")",
                hint=f"drop backend = \"container\" to run it natively; as containers so far: "
                f"{', '.join(sorted(COMMANDS))} (docs/containers.md)",
            )
        instance.options["image"] = image_for(kind, instance.options)
        instance.command = COMMANDS[kind](instance)
        return await super().prepare(instance)

    async def probe(self, instance: Instance) -> bool:
        ok = await self.native.probe(instance)
        if ok:
            await self.refuse_if_exposed(instance)
        return ok

    def client_env(self, instance: Instance) -> dict[str, str]:
        return self.native.client_env(instance)

    def client_args(self, instance: Instance) -> dict[str, list[str]]:
        return self.native.client_args(instance)
