"""memcached: the system's ``memcached`` (no PyPI wheel ships one).

Listens on 127.0.0.1 (TCP only: UDP off), in the foreground; ``args`` are memcached's own
flags (``-m 64``, ``-c 1024``, ``-I 2m``, ``-v``...). memcached refuses to run as root
without ``-u``, so as root it runs as ``nobody``. Readiness is a real ``version`` command.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from stacktest.providers import binaries
from stacktest.providers.base import BinaryReport, Instance, Launch, Provider
from stacktest.spec.model import ServiceSpec

INSTALL_HINT = "install memcached: apt install memcached (brew install memcached)"
SYSTEM_DIRS = ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/opt/homebrew/bin"]


def find_server(explicit: str | None = None, version: str | None = None) -> tuple[Path, list[str]]:
    search, found = _search(explicit)
    if not found:
        raise search.fail(INSTALL_HINT)
    return binaries.choose(found, version)[0], search.looked_in


def _search(explicit: str | None) -> tuple[binaries.Search, list[Path]]:
    return binaries.find_all(["memcached"], explicit, [(map(Path, SYSTEM_DIRS), "system")])


async def memcached_version(host: str, port: int, timeout: float = 1.0) -> str | None:
    """The server's answer to ``version`` (``VERSION 1.6.18``), or None."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(b"version\r\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    text = line.decode(errors="replace").strip()
    return text.removeprefix("VERSION ") if text.startswith("VERSION ") else None


class MemcachedProvider(Provider):
    kind = "memcached"

    def plan(self, instance: Instance) -> None:
        address = f"{instance.host}:{instance.port}"
        instance.fields.update(
            host=instance.host, port=str(instance.port), url=f"memcached://{address}"
        )

    async def prepare(self, instance: Instance) -> Launch:
        options = instance.spec.options
        server, _ = find_server(options.get("bin_dir"), options.get("version"))
        instance.scratch["server"] = binaries.label(server, "memcached")
        instance.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [str(server), "-l", instance.host, "-p", str(instance.port), "-U", "0"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        argv += [str(a) for a in (instance.options or options).get("args", [])]
        return Launch(argv=argv, env={**os.environ, **instance.env}, cwd=instance.data_dir)

    async def probe(self, instance: Instance) -> bool:
        return await memcached_version(instance.host, instance.port) is not None

    def client_env(self, instance: Instance) -> dict[str, str]:
        address = f"{instance.host}:{instance.port}"
        return {"MEMCACHED_URL": instance.fields["url"], "MEMCACHED_SERVERS": address}

    def server_note(self, spec: ServiceSpec) -> str | None:
        try:
            _, found = _search(spec.options.get("bin_dir"))
        except Exception:
            return None  # the start says what is missing
        if not found:
            return f"memcached is not installed: {INSTALL_HINT}"
        return binaries.mismatch_note("memcached", found, spec.options.get("version"),
                                      "install it, or set bin_dir")  # fmt: skip

    def doctor(self) -> list[BinaryReport]:
        try:
            path, looked = find_server()
        except Exception as exc:
            looked_in = tuple(getattr(exc, "looked_in", ()))
            return [BinaryReport("memcached", "memcached", None, None, looked_in, INSTALL_HINT)]
        version = binaries.version_of(path)
        return [BinaryReport("memcached", "memcached", path, version, tuple(looked), INSTALL_HINT)]
