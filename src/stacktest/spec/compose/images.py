"""What each official image does with its ``command`` and environment, as provider options.

The native server stacktest runs is the program the image runs, so the image's contract
is honoured by passing the same arguments on: every server flag and setting goes to the
server, container paths of mounted files become the host files, and only what a local run
must own (where it listens, its port, data directory, socket and log) stays stacktest's;
each of those, when the file sets it, is a note saying so.

- ``postgres`` (and ``postgis``...): the entrypoint's rule (a first argument starting with
  ``-`` means ``postgres`` with these flags); ``-c name=value``, ``--name=value``, ``-B``,
  ``-N``, ``-S``, ``-F``; ``config_file`` / ``hba_file`` / ``ident_file`` naming mounted
  files; ``POSTGRES_PASSWORD_FILE``, ``POSTGRES_INITDB_ARGS``, ``POSTGRES_HOST_AUTH_METHOD``;
  the files mounted in ``/docker-entrypoint-initdb.d`` run as the image runs them.
- ``redis`` / ``valkey``: a first argument starting with ``-`` or ending in ``.conf`` means
  the server; a mounted config file; every ``--name value...`` setting.
- ``nats``: every flag; ``-c`` a mounted config file; ``-js``.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stacktest.spec.compose.values import INITDB, Failing, is_bind, literal, volume_parts

#: Programs an image's command may name before the server's own arguments.
PROGRAMS = {
    "postgres": ("docker-entrypoint.sh", "postgres"),
    "redis": (
        "docker-entrypoint.sh",
        "redis-server",
        "valkey-server",
        "redis-sentinel",
        "valkey-sentinel",
    ),
    "valkey": (
        "docker-entrypoint.sh",
        "valkey-server",
        "redis-server",
        "valkey-sentinel",
        "redis-sentinel",
    ),
    "nats": ("nats-server", "/nats-server"),
    "memcached": ("docker-entrypoint.sh", "memcached"),
    "mariadb": ("docker-entrypoint.sh", "mariadbd", "mysqld"),
    "nginx": ("/docker-entrypoint.sh", "docker-entrypoint.sh", "nginx", "nginx-debug"),
    "rabbitmq": ("docker-entrypoint.sh", "rabbitmq-server"),
}
NGINX_CONF = "/etc/nginx/nginx.conf"
NGINX_CONF_D = "/etc/nginx/conf.d"
NGINX_HTML = "/usr/share/nginx/html"
MARIADB_OWNED = {
    "port": "the server listens on the port stacktest gives it (the published port, if any)",
    "bind-address": "the server listens on 127.0.0.1 only",
    "socket": "the socket is in the run's private directory",
    "datadir": "the data directory is the run's own",
    "user": "the server runs as you",
    "pid-file": "stacktest tracks the process itself",
    "skip-networking": "clients use TCP",
    "log-error": "the server's log is the service's log (`stacktest logs`)",
}
#: memcached flags stacktest owns.
MEMCACHED_OWNED = {
    ("-l", "--listen"): "the server listens on 127.0.0.1 only",
    ("-p", "--port"): "the server listens on the port stacktest gives it (the published port, "
    "if any)",
    ("-U", "--udp-port"): "UDP is off (stacktest's fault proxies are TCP)",
    ("-s", "--unix-socket"): "the server listens on TCP",
    ("-d", "--daemon"): "the server runs in the foreground, supervised",
    ("-u", "--user"): "the server runs as the user running stacktest (nobody as root)",
    ("-P", "--pidfile"): "stacktest tracks the process itself",
}
#: postgres' one-letter options that stand for a setting (postgres --help).
PG_SHORT = {"-B": "shared_buffers", "-N": "max_connections", "-S": "work_mem",
            "-d": "log_min_messages", "-p": "port", "-h": "listen_addresses",
            "-D": "data_directory", "-k": "unix_socket_directories"}  # fmt: skip
PG_OWNED = {
    "port": "the server listens on the port stacktest gives it (the published port, if any)",
    "listen_addresses": "the server listens on 127.0.0.1 only",
    "unix_socket_directories": "the socket is in the run's private directory",
    "data_directory": "the data directory is the run's own",
    "logging_collector": "the server's log is the service's log (`stacktest logs`)",
}
PG_FILES = ("config_file", "hba_file", "ident_file")
REDIS_OWNED = {
    "port": "the server listens on the port stacktest gives it (the published port, if any)",
    "bind": "the server listens on 127.0.0.1 only",
    "dir": "the data directory is the run's own",
    "daemonize": "the server runs in the foreground, supervised",
    "unixsocket": "the socket is the run's own", "unixsocketperm": "the socket is the run's own",
    "logfile": "the server's log is the service's log (`stacktest logs`)",
    "pidfile": "stacktest tracks the process itself",
    "protected-mode": "the server listens on 127.0.0.1 only",
}  # fmt: skip
#: nats-server flags stacktest owns, with how many values each takes.
NATS_OWNED = {
    ("-a", "--addr", "--net", "--host"): "the server listens on 127.0.0.1 only",
    ("-p", "--port"): "the server listens on the port stacktest gives it (the published "
    "port, if any)",
    ("-m", "--http_port", "-ms", "--https_port"): "monitoring is on the port stacktest gives "
    "it ({SERVICE.monitor_port}, in `stacktest status`)",
    ("-sd", "--store_dir"): "JetStream's store is in the run's data directory",
    ("-P", "--pid"): "stacktest tracks the process itself",
    ("-l", "--log"): "the server's log is the service's log (`stacktest logs`)",
    ("--cluster_advertise", "--client_advertise"): "not passed: the servers reach each "
    "other on 127.0.0.1 at the ports stacktest gives them",
}
NATS_BARE = {"-js", "--jetstream", "-D", "-V", "-DV", "-DVV", "--debug", "--trace", "-T",
             "--logtime", "-s", "--syslog"}  # fmt: skip


class Mounts:
    """The service's bind mounts: a container path -> the host path it stands for."""

    def __init__(self, volumes: list[Any], project_dir: Path) -> None:
        self.binds: list[tuple[str, Path]] = []
        for item in volumes:
            parts = volume_parts(item)
            if parts and is_bind(parts[0]):
                host = (project_dir / os.path.expanduser(parts[0])).resolve()
                self.binds.append((parts[1], host))
        self.binds.sort(key=lambda pair: -len(pair[0]))
        #: Container targets whose files an argument or variable used.
        self.used: set[str] = set()

    def host_path(self, path: str) -> Path | None:
        for target, host in self.binds:
            if path == target:
                self.used.add(target)
                return host
            if path.startswith(target.rstrip("/") + "/"):
                self.used.add(target)
                return host / path[len(target.rstrip("/")) + 1 :]
        return None

    def initdb(self) -> list[str]:
        """What is mounted in /docker-entrypoint-initdb.d, in the order the image runs it
        (by the name inside the container)."""
        found = [(target, host) for target, host in self.binds if target.startswith(INITDB)]
        self.used.update(target for target, _ in found)
        return [str(host) for _, host in sorted(found)]


class Image:
    """One built-in service's command and environment, read as its image reads them."""

    def __init__(
        self, key: str, kind: str, failing: Failing, mounts: Mounts,
        peers: Mapping[str, int | None], kinds: Mapping[str, str | None],
    ) -> None:  # fmt: skip
        #: Every service's container port, and its built-in kind (None: a process).
        self.peers, self.kinds = peers, kinds
        #: A Redis/Valkey command that runs the sentinel (redis-sentinel, --sentinel).
        self.sentinel = False
        self.key = key
        self.kind = kind
        self.failing = failing
        self.mounts = mounts
        self.options: dict[str, Any] = {}
        self.notes: list[tuple[str, str]] = []

    def note(self, field: str, what: str) -> None:
        self.notes.append((f"{self.key}.{field}", what))

    def server_args(self, command: Any, entrypoint: Any) -> list[str]:
        """The arguments the server gets, by the image's entrypoint's rules; a command that
        runs another program is a note (the server runs, the program does not)."""
        if entrypoint:
            self.note("entrypoint", "not run: stacktest starts the server itself (put what "
                      "it did in x-stacktest, or a one-shot service)")  # fmt: skip
        args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command or []]
        while args and Path(args[0]).name in {Path(p).name for p in PROGRAMS[self.kind]}:
            self.sentinel = self.sentinel or Path(args[0]).name.endswith("-sentinel")
            args = args[1:]
        if (
            args
            and not args[0].startswith("-")
            and not (self.kind in ("redis", "valkey") and args[0].endswith(".conf"))
        ):
            self.note("command", f"{shlex.join(args)}: not run: it is not the server, which "
                      "stacktest runs with the image's defaults")  # fmt: skip
            return []
        return args

    def container_file(self, field: str, path: str) -> str:
        """The host file a container path in an argument stands for."""
        host = self.mounts.host_path(path)
        if host is None or not host.is_file():
            self.failing.fail(
                f"{self.key}.{field}",
                f"{path} is a path inside the container and no file is mounted there",
                f"mount it (volumes: [./{Path(path).name}:{path}]), so stacktest can hand the "
                "host file to the server",
            )
        return str(host)

    # -- postgres -------------------------------------------------------------------------
    def postgres(self, args: list[str], env: Mapping[str, str]) -> None:
        settings: dict[str, str] = {}
        i = 0
        while i < len(args):
            arg, i = args[i], i + 1
            name = value = None
            if arg == "-c" and i < len(args):
                (name, _, value), i = args[i].partition("="), i + 1
            elif (arg.startswith("-c") and "=" in arg) or (arg.startswith("--") and "=" in arg):
                name, _, value = arg[2:].partition("=")
            elif arg in PG_SHORT and i < len(args):
                name, value, i = PG_SHORT[arg], args[i], i + 1
                if name == "log_min_messages":
                    value = f"debug{value}" if value != "0" else "notice"
            elif arg == "-F":
                name, value = "fsync", "off"
            elif arg == "-i":
                self.note("command", "-i: the server listens on TCP on 127.0.0.1 anyway")
                continue
            else:
                self.note("command", f"{arg}: not a postgres option stacktest knows; not passed")
                continue
            name = name.strip().lower().replace("-", "_")
            if name in PG_OWNED:
                self.note("command", f"{arg} {name}={value}: {PG_OWNED[name]}")
                continue
            # a file is the mounted host file; braces are the server's, not references
            file = name in PG_FILES
            settings[name] = self.container_file("command", value) if file else literal(value)
        if settings:
            self.options["settings"] = settings
        self.postgres_env(env)
        initdb = self.mounts.initdb()
        if initdb:
            self.options["initdb"] = initdb

    def postgres_env(self, env: Mapping[str, str]) -> None:
        user = env.get("POSTGRES_USER") or "postgres"
        self.options.update(user=user, databases=[env.get("POSTGRES_DB") or user])
        password = env.get("POSTGRES_PASSWORD")
        if env.get("POSTGRES_PASSWORD_FILE"):
            path = self.container_file("environment.POSTGRES_PASSWORD_FILE",
                                       env["POSTGRES_PASSWORD_FILE"])  # fmt: skip
            password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        method = env.get("POSTGRES_HOST_AUTH_METHOD")
        if password:
            self.options["password"] = password
        elif method != "trust":
            self.note("environment", "POSTGRES_PASSWORD is not set: the image would refuse to "
                      "start; stacktest makes one up ({SERVICE.password})")  # fmt: skip
        if method:
            self.options["host_auth_method"] = method
        if env.get("POSTGRES_INITDB_ARGS"):
            self.options["initdb_args"] = shlex.split(env["POSTGRES_INITDB_ARGS"])
        if env.get("POSTGRES_INITDB_WALDIR"):
            # a directory of its own, as asked; where it is, is the run's (beside the data)
            self.options["waldir"] = True
            self.note("environment.POSTGRES_INITDB_WALDIR",
                      "the WAL is in a directory of its own, the run's (pg_wal links to it)")
        if env.get("PGDATA"):
            self.note("environment.PGDATA", "not used: the data directory is the run's own")

    # -- redis / valkey -------------------------------------------------------------------
    def redis(self, args: list[str], env: Mapping[str, str]) -> None:
        if args and not args[0].startswith("-"):
            self.options["config"] = self.container_file("command", args[0])
            args = args[1:]
        if "--sentinel" in args or self.sentinel:
            # a sentinel: its config (which it rewrites) names the masters it watches
            args = [a for a in args if a != "--sentinel"]
            self.options["sentinel"] = True
            if "config" not in self.options:
                self.failing.fail(
                    f"{self.key}.command",
                    "a sentinel needs its config file "
                    "(sentinel.conf, with `sentinel monitor ...`) and none is "
                    "named",
                    "mount it and name it: redis-sentinel /etc/sentinel.conf",
                )
            self.options["addresses"] = {
                f"{name} {port}": f"{{{name}.host}} {{{name}.port}}"
                for name, port in self.peers.items()
                if port is not None and self.kinds.get(name) in ("redis", "valkey")
                and name != self.key.split(".", 1)[1]
            }
        settings: dict[str, str] = {}
        i = 0
        while i < len(args):
            if not args[i].startswith("--"):
                self.note("command", f"{args[i]}: not an option (--name value); not passed")
                i += 1
                continue
            name, i = args[i][2:], i + 1
            values = []
            while i < len(args) and not args[i].startswith("--"):
                values.append(args[i])
                i += 1
            value = " ".join(values) if values != [""] else ""
            if name in REDIS_OWNED:
                self.note("command", f"--{name} {value}: {REDIS_OWNED[name]}")
            elif name == "requirepass":
                self.options["password"] = value
            elif name == "appendonly" and value in ("yes", "no"):
                self.options["persistence"] = value == "yes"
            elif name in ("replicaof", "slaveof") and len(values) == 2:
                settings["replicaof"] = self.peer_address(values[0], values[1], f"--{name}")
            else:
                settings[name] = literal(value)
        if settings:
            self.options["settings"] = settings
        if "password" not in self.options and env.get("REDIS_PASSWORD"):
            self.options["password"] = env["REDIS_PASSWORD"]

    # -- nats -----------------------------------------------------------------------------
    def nats(self, args: list[str]) -> None:
        passed: list[str] = []
        owned = {flag: why for flags, why in NATS_OWNED.items() for flag in flags}
        i = 0
        while i < len(args):
            arg, i = args[i], i + 1
            flag, eq, inline = arg.partition("=")
            takes_value = not eq and flag not in NATS_BARE and i < len(args) and (
                not args[i].startswith("-") or flag in owned
            )  # fmt: skip
            value = inline if eq else args[i] if takes_value else None
            if takes_value:
                i += 1
            if flag in ("-js", "--jetstream"):
                self.options["jetstream"] = True
            elif flag in ("-c", "--config") and value is not None:
                self.options["config"] = self.container_file("command", value)
            elif flag in ("--cluster", "--cluster_listen") and value is not None:
                # the cluster listener: on 127.0.0.1, at a port of its own
                passed += [flag, "nats://127.0.0.1:{cluster_port}"]
            elif flag == "--routes" and value is not None:
                passed += [flag, ",".join(self.route(r) for r in value.split(",") if r)]
            elif flag in owned:
                shown = arg if value is None or eq else f"{arg} {value}"
                self.note("command", f"{shown}: {owned[flag]}")
            else:
                passed += [literal(arg)] if value is None or eq else [literal(arg), literal(value)]
        if self.options.get("config"):
            passed += self.nats_config_cluster(Path(self.options["config"]), passed)
        if passed:
            self.options["args"] = passed

    def nats_config_cluster(self, config: Path, passed: list[str]) -> list[str]:
        """A config file's ``cluster {}`` block, made to run here: its listener on
        127.0.0.1 at the cluster port, its routes to the stack's NATS services (as flags,
        which win over the file); other listeners it declares are said."""
        text = config.read_text(encoding="utf-8", errors="replace")
        extra: list[str] = []
        block = re.search(r"^\s*cluster\s*[:=]?\s*\{(?P<body>.*?)^\s*\}", text, re.M | re.S)
        if block is not None:
            if "--cluster" not in passed and "--cluster_listen" not in passed:
                extra += ["--cluster", "nats://127.0.0.1:{cluster_port}"]
            urls = re.findall(r"nats(?:-route)?://[^\s,\]\"']+", block["body"])
            if urls and "--routes" not in passed:
                extra += ["--routes", ",".join(self.route(u) for u in urls)]
            self.note("command", f"-c {config.name}: its cluster listener is on 127.0.0.1 at "
                      "the service's cluster port and its routes reach the stack's services "
                      "(as --cluster/--routes, which win over the file)")  # fmt: skip
        for other in ("gateway", "leafnodes", "websocket", "mqtt"):
            if re.search(rf"^\s*{other}\s*[:=]?\s*\{{", text, re.M):
                self.note("command", f"-c {config.name}: its {other} listener is used as "
                          "written (stacktest does not move it to 127.0.0.1: check its address)")
        return extra

    def route(self, url: str) -> str:
        """A cluster route to another NATS service of the stack -> its local cluster port."""
        match = re.match(r"^(?P<scheme>nats(?:-route)?://)(?P<auth>[^@/]*@)?(?P<host>[^:/]+)"
                         r"(?::(?P<port>\d+))?/?$", url.strip())  # fmt: skip
        if match and self.kinds.get(match["host"]) == "nats":
            auth = literal(match["auth"] or "")
            return f"{match['scheme']}{auth}127.0.0.1:{{{match['host']}.cluster_port}}"
        self.note("command", f"--routes {url}: not a NATS service of this stack; passed as is")
        return literal(url)

    def peer_address(self, host: str, port: str, flag: str) -> str:
        """``SERVICE PORT`` (a container address) -> that service's local host and port."""
        if host in self.peers and str(self.peers[host]) == port:
            return f"{{{host}.host}} {{{host}.port}}"
        if host in ("127.0.0.1", "localhost"):
            return f"{host} {port}"
        return self.failing.fail(  # type: ignore[no-any-return]
            f"{self.key}.command",
            f"{flag} {host} {port}: {host!r} is not a service of this stack listening on {port}",
            "name the service and its container port (redis-primary 6379)",
        )

    # -- mariadb / mysql ------------------------------------------------------------------
    def mariadb(self, args: list[str], env: Mapping[str, str], image: str) -> None:
        def var(name: str) -> str | None:  # MARIADB_X, or the image's older MYSQL_X
            return env.get(f"MARIADB_{name}", env.get(f"MYSQL_{name}"))

        if image.split("@")[0].rsplit("/", 1)[-1].split(":")[0] == "mysql":
            self.note(
                "image",
                f"{image}: MariaDB runs in its place (the same protocol and "
                "SQL for most uses; MySQL 8's own features and version differ)",
            )
        database, user = var("DATABASE"), var("USER")
        if database:
            self.options["databases"] = [database]
        if user and user != "root":
            self.options["user"] = user
            if var("PASSWORD") is not None:
                self.options["password"] = var("PASSWORD")
        root = var("ROOT_PASSWORD")
        if var("ROOT_PASSWORD_FILE"):
            path = self.container_file("environment", str(var("ROOT_PASSWORD_FILE")))
            root = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        if root is not None:
            self.options["root_password"] = root
        elif (var("ALLOW_EMPTY_ROOT_PASSWORD") or var("ALLOW_EMPTY_PASSWORD")) in ("1", "yes"):
            self.options["root_password"] = ""
        elif not var("RANDOM_ROOT_PASSWORD"):
            self.note(
                "environment",
                "no root password is set: the image would refuse to "
                "start; stacktest makes one up ({SERVICE.root_password})",
            )
        if var("INITDB_SKIP_TZINFO"):  # the image: any value skips them
            self.options["timezones"] = False
        passed: list[str] = []
        for arg in args:
            name = arg.removeprefix("--").partition("=")[0].replace("_", "-")
            if arg.startswith("--") and name in MARIADB_OWNED:
                self.note("command", f"{arg}: {MARIADB_OWNED[name]}")
            else:
                passed.append(literal(arg))
        if passed:
            self.options["args"] = passed
        initdb = self.mounts.initdb()
        if initdb:
            self.options["initdb"] = initdb
        cnf = [host for target, host in self.mounts.binds
               if target.startswith(("/etc/mysql/conf.d", "/etc/mysql/mariadb.conf.d"))
               or target in ("/etc/mysql/my.cnf", "/etc/my.cnf")]  # fmt: skip
        if cnf:  # read after stacktest's defaults; port, socket, datadir stay the run's
            self.options["conf_d"] = sorted(str(h) for h in cnf)
            self.mounts.used.update(t for t, h in self.mounts.binds if h in cnf)

    # -- rabbitmq -------------------------------------------------------------------------
    def rabbitmq(self, args: list[str], env: Mapping[str, str], image: str) -> None:
        if args:
            self.note(
                "command",
                f"{shlex.join(args)}: not passed (rabbitmq-server takes its "
                "settings from rabbitmq.conf)",
            )
        for name, option in (("USER", "user"), ("PASS", "password"), ("VHOST", "vhost")):
            if env.get(f"RABBITMQ_DEFAULT_{name}"):
                self.options[option] = env[f"RABBITMQ_DEFAULT_{name}"]
        if "management" in image.rpartition(":")[2]:
            self.options["management"] = True
        binds = dict(self.mounts.binds)
        for target, host in binds.items():
            if target in ("/etc/rabbitmq/rabbitmq.conf", "/etc/rabbitmq/conf.d/10-defaults.conf"):
                self.options["config"] = str(host)
                self.mounts.used.add(target)
            elif target == "/etc/rabbitmq/enabled_plugins":
                text = host.read_text(encoding="utf-8") if host.is_file() else ""
                plugins = re.findall(r"[a-z_]+", text)
                self.options["plugins"] = [p for p in plugins if p.startswith("rabbitmq_")]
                self.mounts.used.add(target)
        if env.get("RABBITMQ_ERLANG_COOKIE"):
            self.note("environment.RABBITMQ_ERLANG_COOKIE", "not used: each node has its own")

    # -- nginx ----------------------------------------------------------------------------
    def nginx(self, args: list[str], me: str) -> None:
        """The image's configuration files where it reads them, the other files the
        configuration names, and the addresses of the stack's services in it."""
        if args and args != ["-g", "daemon off;"]:
            self.note(
                "command",
                f"{shlex.join(args)}: not passed (nginx runs in the "
                "foreground with its configuration; -g directives go in the file)",
            )
        binds = dict(self.mounts.binds)
        conf_d = [host for target, host in self.mounts.binds
                  if target == NGINX_CONF_D or target.startswith(NGINX_CONF_D + "/")]  # fmt: skip
        if NGINX_CONF in binds:
            self.options["config"] = str(binds[NGINX_CONF])
        elif conf_d:
            self.options["conf_d"] = sorted(str(h) for h in conf_d)
        if NGINX_HTML in binds:
            self.options["root"] = str(binds[NGINX_HTML])
        templates = [h for t, h in self.mounts.binds if t.startswith("/etc/nginx/templates")]
        if templates:  # rendered with the service's environment, into conf.d, as the image
            self.options["templates"] = sorted(str(h) for h in templates)
        self.options["mounts"] = {t: str(h) for t, h in self.mounts.binds}
        self.options["listen"] = self.peers.get(me) or 80  # its container port
        self.mounts.used.update(t for t, _ in self.mounts.binds)
        addresses = {
            f"{name}:{port}": f"{{{name}.host}}:{{{name}.port}}"
            for name, port in self.peers.items() if port is not None and name != me
        }  # fmt: skip
        for name, port in self.peers.items():
            if port == 80 and name != me:  # no port written: HTTP's, 80
                addresses[f"http://{name}"] = f"http://{{{name}.host}}:{{{name}.port}}"
                addresses[f"server {name}"] = f"server {{{name}.host}}:{{{name}.port}}"
        self.options["addresses"] = addresses

    # -- memcached ------------------------------------------------------------------------
    def memcached(self, args: list[str]) -> None:
        owned = {flag: why for flags, why in MEMCACHED_OWNED.items() for flag in flags}
        passed: list[str] = []
        i = 0
        while i < len(args):
            arg, i = args[i], i + 1
            flag = arg.partition("=")[0]
            if flag in owned:
                takes_value = "=" not in arg and flag != "-d" and flag != "--daemon"
                shown = f"{arg} {args[i]}" if takes_value and i < len(args) else arg
                i += 1 if takes_value else 0
                self.note("command", f"{shown}: {owned[flag]}")
            else:
                passed.append(literal(arg))
        if passed:
            self.options["args"] = passed


def read_image(
    key: str, kind: str, body: Mapping[str, Any], env: Mapping[str, str], project_dir: Path,
    failing: Failing, peers: Mapping[str, int | None], kinds: Mapping[str, str | None],
) -> tuple[dict[str, Any], list[tuple[str, str]], set[str]]:  # fmt: skip
    """A built-in service's provider options, the notes of what is not passed, and the
    container paths of the mounts it used."""
    mounts = Mounts(list(body.get("volumes") or []), project_dir)
    image = Image(key, kind, failing, mounts, peers, kinds)
    args = image.server_args(body.get("command"), body.get("entrypoint"))
    read: Callable[[], None] = {
        "postgres": lambda: image.postgres(args, env),
        "redis": lambda: image.redis(args, env),
        "valkey": lambda: image.redis(args, env),
        "nats": lambda: image.nats(args),
        "memcached": lambda: image.memcached(args),
        "mariadb": lambda: image.mariadb(args, env, str(body.get("image"))),
        "nginx": lambda: image.nginx(args, key.split(".", 1)[1]),
        "rabbitmq": lambda: image.rabbitmq(args, env, str(body.get("image"))),
    }[kind]
    read()
    image.options["image"] = str(body.get("image"))
    version = tag_version(body.get("image"))
    if version is not None:
        image.options["version"] = version
    return {"use": kind, **image.options}, image.notes, image.mounts.used


def tag_version(image: Any) -> str | None:
    """The server version an image tag names: ``postgres:16.4-alpine`` -> ``16.4``,
    ``nats:2.10`` -> ``2.10``; None for ``latest``, ``alpine`` or no tag."""
    name = str(image or "").split("@")[0].rsplit("/", 1)[-1]
    tag = name.partition(":")[2]
    match = re.match(r"v?(\d+(?:\.\d+)*)", tag)
    return match.group(1) if match else None
