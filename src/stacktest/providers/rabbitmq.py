"""RabbitMQ: the system's ``rabbitmq-server`` (Erlang; no PyPI wheel ships one), as a node
of its own for each instance.

Each instance is a node named ``stacktest@localhost`` with its own Erlang port mapper
(``epmd`` on a loopback port of the run: two stacks never share one, and the run's reaping
ends it with the rest), its distribution port on 127.0.0.1, its data (``mnesia``) in the run
directory, fresh each start, and a ``rabbitmq.conf`` written for it: the AMQP listener on
127.0.0.1 at the service's port, the default user, password and vhost (the image's
``RABBITMQ_DEFAULT_*``), the management listener (``management = true``, the image's
``-management`` tags) on a port of its own. A ``config`` file of the user's comes first;
what a local run owns is written after it, and wins.

Readiness: an AMQP handshake (the protocol header answered by ``connection.start``), and the
management API answering, when it is on. A first boot takes several seconds (Erlang).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from stacktest.providers import binaries
from stacktest.providers.base import BinaryReport, Instance, Launch, Provider, generate_password
from stacktest.providers.probes import http_status
from stacktest.spec.model import ServiceSpec

INSTALL_HINT = "install RabbitMQ: apt install rabbitmq-server (brew install rabbitmq)"
#: The server script itself first: /usr/sbin's is a wrapper that switches to its own user.
SEARCH_DIRS = ["/usr/lib/rabbitmq/bin", "/opt/homebrew/opt/rabbitmq/sbin",
               "/usr/local/opt/rabbitmq/sbin", "/usr/local/sbin", "/usr/sbin"]  # fmt: skip
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
NODE = "stacktest@localhost"
#: rabbitmq.conf keys a local run owns (written last).
OWNED_KEYS = ("listeners.tcp", "management.tcp", "listeners.ssl", "management.ssl")


def find_server(explicit: str | None = None, version: str | None = None) -> tuple[Path, list[str]]:
    search, found = _search(explicit)
    if not found:
        raise search.fail(INSTALL_HINT)
    return found[0], search.looked_in


def _search(explicit: str | None) -> tuple[binaries.Search, list[Path]]:
    places = [(map(Path, SEARCH_DIRS), "system")]
    return binaries.find_all(["rabbitmq-server"], explicit, places, path_first=False)


def installed_version(server: Path) -> str | None:
    """The version of the RabbitMQ beside ``server`` (its lib directory names it)."""
    for lib in (server.parent.parent / "lib", server.parent.parent / "lib" / "rabbitmq"):
        for entry in sorted(lib.glob("rabbitmq_server-*")) if lib.is_dir() else []:
            return entry.name.removeprefix("rabbitmq_server-")
    return None


async def amqp_greets(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send the AMQP 0-9-1 protocol header; True when the broker answers with a method
    frame (``connection.start``): it is booted and accepting clients."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(AMQP_HEADER)
        frame = await asyncio.wait_for(reader.read(11), timeout)
    finally:
        writer.close()
    # frame type 1 (method), channel 0, then class 10 (connection) method 10 (start)
    return len(frame) >= 11 and frame[0] == 1 and frame[7:11] == b"\x00\x0a\x00\x0a"


class RabbitmqProvider(Provider):
    kind = "rabbitmq"
    extra_ports = ("management", "dist", "epmd")

    def plan(self, instance: Instance) -> None:
        options = instance.spec.options
        user = options.get("user", "guest")
        password = options.get("password") or generate_password()
        vhost = options.get("vhost", "/")
        management = instance.extra_ports["management"]
        path = "%2F" if vhost == "/" else vhost
        instance.fields.update(
            host=instance.host, port=str(instance.port), user=user, password=password,
            vhost=vhost, url=f"amqp://{user}:{password}@{instance.host}:{instance.port}/{path}",
            management_port=str(management),
            management_url=f"http://{instance.host}:{management}",
            management="yes" if options.get("management") else "",
            # what rabbitmqctl needs to reach this node (rabbitmq_vhost without management)
            node=NODE, epmd_port=str(instance.extra_ports["epmd"]), home=str(instance.data_dir),
        )  # fmt: skip

    def _conf(self, instance: Instance) -> str:
        options = instance.spec.options
        f = instance.fields
        lines = []
        if options.get("config"):
            for line in Path(options["config"]).read_text(encoding="utf-8").splitlines():
                key = line.split("=", 1)[0].strip()
                owned = any(key.startswith(k) for k in OWNED_KEYS)
                lines.append(f"# stacktest: the run's: {line}" if owned else line)
        lines += [
            "# stacktest: what a local run owns",
            f"listeners.tcp.default = {instance.host}:{instance.port}",
            "loopback_users = none",
            f"default_user = {f['user']}", f"default_pass = {f['password']}",
            f"default_vhost = {f['vhost']}",
        ]  # fmt: skip
        if options.get("management"):
            lines += [f"management.tcp.ip = {instance.host}",
                      f"management.tcp.port = {f['management_port']}"]  # fmt: skip
        return "\n".join(lines) + "\n"

    def _classic_config(self, instance: Instance) -> str:
        """The same settings as Erlang terms (``rabbitmq.config``): without a user's
        ``rabbitmq.conf`` to translate, the broker skips its schema translation at boot
        (0.5 to 1 s of a 6 to 7 s start, measured here)."""
        f = instance.fields

        def binary(text: str) -> str:
            return '<<"' + text.replace("\\", "\\\\").replace('"', '\\"') + '">>'

        rabbit = [
            f'{{tcp_listeners, [{{"{instance.host}", {instance.port}}}]}}',
            "{loopback_users, []}",
            f"{{default_user, {binary(f['user'])}}}",
            f"{{default_pass, {binary(f['password'])}}}",
            f"{{default_vhost, {binary(f['vhost'])}}}",
        ]
        apps = [f"{{rabbit, [{', '.join(rabbit)}]}}"]
        if instance.spec.options.get("management"):
            listener = f'{{port, {f["management_port"]}}}, {{ip, "{instance.host}"}}'
            apps.append(f"{{rabbitmq_management, [{{listener, [{listener}]}}]}}")
        return "[" + ",\n ".join(apps) + "].\n"

    async def prepare(self, instance: Instance) -> Launch:
        options = instance.spec.options
        server, _ = find_server(options.get("bin_dir"), options.get("version"))
        instance.scratch["server"] = f"RabbitMQ {installed_version(server) or '?'}"
        instance.fields["ctl"] = str(server.parent / "rabbitmqctl")
        home = instance.data_dir
        mnesia = home / "mnesia"
        shutil.rmtree(mnesia, ignore_errors=True)  # fresh each start (the users are in it)
        (home / "log").mkdir(parents=True, exist_ok=True)
        mnesia.mkdir(parents=True)
        if options.get("config"):  # the user's rabbitmq.conf, then ours: translated at boot
            config = home / "rabbitmq.conf"
            config.write_text(self._conf(instance))
        else:
            config = home / "rabbitmq.config"
            config.write_text(self._classic_config(instance))
        plugins = list(options.get("plugins", []))
        if options.get("management") and "rabbitmq_management" not in plugins:
            plugins.append("rabbitmq_management")
        (home / "enabled_plugins").write_text(f"[{','.join(plugins)}].\n")
        ports = instance.extra_ports
        env = {
            **os.environ, **instance.env,
            "HOME": str(home),  # the Erlang cookie
            "RABBITMQ_NODENAME": NODE, "RABBITMQ_NODE_IP_ADDRESS": instance.host,
            "RABBITMQ_NODE_PORT": str(instance.port), "RABBITMQ_DIST_PORT": str(ports["dist"]),
            "ERL_EPMD_PORT": str(ports["epmd"]), "ERL_EPMD_ADDRESS": instance.host,
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(mnesia), "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_LOGS": "-", "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        }  # fmt: skip
        return Launch(argv=[str(server)], env=env, cwd=home)

    async def probe(self, instance: Instance) -> bool:
        if not await amqp_greets(instance.host, instance.port):
            return False
        if instance.spec.options.get("management"):
            status = await http_status(instance.fields["management_url"] + "/api/", 1.0)
            return status is not None
        return True

    def client_env(self, instance: Instance) -> dict[str, str]:
        return {"AMQP_URL": instance.fields["url"], "RABBITMQ_URL": instance.fields["url"]}

    def image_env(self, instance: Instance) -> dict[str, str]:
        f = instance.fields
        return {"RABBITMQ_DEFAULT_USER": f["user"], "RABBITMQ_DEFAULT_PASS": f["password"],
                "RABBITMQ_DEFAULT_VHOST": f["vhost"]}  # fmt: skip

    def server_note(self, spec: ServiceSpec) -> str | None:
        try:
            _, found = _search(spec.options.get("bin_dir"))
        except Exception:
            return None
        if not found:
            return f"RabbitMQ is not installed: {INSTALL_HINT}"
        wanted = spec.options.get("version")
        have = installed_version(found[0])
        if wanted and not binaries.matches(have, wanted):
            return f"RabbitMQ {wanted} is asked for and not installed: {have or '?'} runs instead"
        return None

    def doctor(self) -> list[BinaryReport]:
        try:
            path, looked = find_server()
        except Exception as exc:
            looked_in = tuple(getattr(exc, "looked_in", ()))
            return [BinaryReport("rabbitmq", "rabbitmq-server", None, None, looked_in,
                                 INSTALL_HINT)]  # fmt: skip
        return [BinaryReport("rabbitmq", "rabbitmq-server", path, installed_version(path),
                             tuple(looked), INSTALL_HINT)]  # fmt: skip
