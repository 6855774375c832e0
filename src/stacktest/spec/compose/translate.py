"""A merged compose document -> the same table a ``stack.toml`` is, and every note.

The table goes to ``parse_stack``, so every rule and error of ``stack.toml`` holds. Images
stacktest runs itself (``postgres``, ``redis`` / ``valkey``, ``nats``) become built-in
services; others run as local processes from ``x-stacktest`` (at least ``command``). Addresses
of other services in ``environment`` (``db:5432``, ``postgres://db/app``, ``DB_HOST: db``)
are rewritten to the local ones. What is not honoured as written is a note naming the key
and why (``stacktest config`` lists them, ``up`` prints them, ``--strict`` refuses them).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from typing import Any, NoReturn

from stacktest.errors import ConfigError
from stacktest.spec.compose.dotenv import DotenvError, read_dotenv
from stacktest.spec.compose.model import Project, line_of

#: image repository (last path part) -> (provider, container port)
IMAGES: dict[str, tuple[str, int]] = {
    "postgres": ("postgres", 5432),
    "postgresql": ("postgres", 5432),
    "postgis": ("postgres", 5432),
    "redis": ("redis", 6379),
    "redis-stack-server": ("redis", 6379),
    "valkey": ("valkey", 6379),
    "nats": ("nats", 4222),
}
INITDB = "/docker-entrypoint-initdb.d"
#: URL schemes whose default port a host without one implies.
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379,
                 "valkey": 6379, "nats": 4222, "http": 80, "https": 443}  # fmt: skip
_RESTART = {"no": "no", "on-failure": "on-failure", "always": "always",
            "unless-stopped": "always"}  # fmt: skip
#: ``restart: always`` without a count: restarted as often as it exits.
ALWAYS_RESTARTS = 1_000_000
TOP_LEVEL = {"version", "name", "services", "networks", "volumes", "secrets", "configs"}
IGNORED_TOP_LEVEL = {
    "networks": "ignored: every service is on loopback, reached by its address",
    "volumes": "named volumes are not created (a local process uses the run dir)",
    "secrets": "ignored: pass secrets through environment or env_file",
    "configs": "ignored: a local process reads its config files where they are",
}
#: Keys the translation uses as written (the others get a note each).
ALWAYS_HONOURED = {"environment", "env_file", "depends_on", "restart", "stop_signal",
                   "stop_grace_period", "profiles", "build", "extends"}  # fmt: skip
SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus",
    "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "driver_opts", "entrypoint",
    "env_file", "environment", "expose", "extends", "external_links", "extra_hosts",
    "gpus", "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation",
    "labels", "label_file", "links", "logging", "mac_address", "mem_limit", "mem_reservation",
    "mem_swappiness", "memswap_limit", "network_mode", "networks", "oom_kill_disable",
    "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start", "pre_stop",
    "privileged", "profiles", "pull_policy", "read_only", "restart", "runtime", "scale",
    "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal",
    "storage_opt", "sysctls", "tmpfs", "tty", "ulimits", "user", "userns_mode", "uts",
    "volumes", "volumes_from", "working_dir",
}  # fmt: skip
IGNORED_REASONS = {
    "networks": "every service is on loopback",
    "network_mode": "every service is on loopback",
    "container_name": "services are named by the compose file",
    "hostname": "other services' names are rewritten to 127.0.0.1 where they appear",
    "user": "services run as the user running stacktest",
    "working_dir": "set x-stacktest.cwd for a local process",
    "entrypoint": "set x-stacktest.command for a local process",
    "tmpfs": "a local process uses the run dir",
    "labels": "metadata for a container engine",
}


class Translator:
    """One merged compose document -> a stack-file table, and what it did not honour."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.source = project.files[0]
        self.lines = self.source.read_text(encoding="utf-8").splitlines()
        self.env = project.environment  # the shell, then .env
        self.left_out: set[str] = set(project.left_out)
        #: ``services.NAME.key: what happened`` for everything not honoured as written.
        self.notes: list[str] = []

    def note(self, key: str, what: str) -> None:
        self.notes.append(f"{key}: {what}")

    # -- errors ---------------------------------------------------------------------------
    def fail(self, key: str, problem: str, hint: str | None = None) -> NoReturn:
        raise ConfigError(problem, file=self.source, key=key, line=self._line(key), hint=hint)

    def _line(self, key: str) -> int | None:
        return line_of(self.lines, key)

    # -- the file -------------------------------------------------------------------------
    def stack(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
            self.fail("services", "a compose file needs a `services:` mapping")
        meta = dict(data.get("x-stacktest") or {})
        if "name" in data and "name" not in meta:
            meta["name"] = str(data["name"])
        services: dict[str, Any] = data["services"]
        for name, body in services.items():
            if not isinstance(body, dict) and body is not None:
                self.fail(f"services.{name}", "a service must be a mapping")
        kept = {
            str(name): body or {}
            for name, body in services.items()
            if not _ext(body).get("skip")
        }
        self.left_out |= set(map(str, services)) - set(kept)
        for key in data:
            if key not in TOP_LEVEL and not str(key).startswith("x-"):
                self.note(str(key), "not a Compose top-level key; ignored")
        for key in ("networks", "volumes", "secrets", "configs"):
            if data.get(key):
                self.note(key, IGNORED_TOP_LEVEL[key])
        self.refuse_unrunnable(kept)
        ports = {name: self.container_port(name, body) for name, body in kept.items()}
        out = {name: self.service(name, body, ports) for name, body in kept.items()}
        self.refer_to_passwords(out)
        if not out:
            self.fail(
                "services",
                "every service was left out (profiles or x-stacktest.skip)",
                "activate a profile with --profile NAME (or COMPOSE_PROFILES)",
            )
        return {"stack": meta, "services": out}

    def refuse_unrunnable(self, services: Mapping[str, Any]) -> None:
        """Every service with nothing stacktest can run, in one message."""
        problems = []
        for name, body in services.items():
            ext = _ext(body)
            if _image_kind(body.get("image")) is None and "command" not in ext and "use" not in ext:
                what = f"image {body['image']!r}" if body.get("image") else "a `build:` service"
                problems.append(
                    f"services.{name}: {what} has no local equivalent stacktest can run"
                )
        if problems:
            first = problems[0].split(":")[0]
            self.fail(
                first,
                ("\n  ".join(problems) if len(problems) > 1 else problems[0].split(": ", 1)[1]),
                "add `x-stacktest: { command: [...] }` to each (how to run it as a local "
                "process; any stack.toml key may go there), or `x-stacktest: { skip: true }`",
            )

    def container_port(self, name: str, body: Mapping[str, Any]) -> int | None:
        image = _image_kind(body.get("image"))
        if image is not None and "command" not in _ext(body):
            return image[1]
        for item in list(body.get("expose") or []) + list(body.get("ports") or []):
            target = item.get("target") if isinstance(item, dict) else str(item).split("/")[0]
            target = str(target).rsplit(":", 1)[-1]
            if target.isdigit():
                return int(target)
        return None

    def service(self, name: str, body: Mapping[str, Any], ports: dict[str, int | None]) -> Any:
        key = f"services.{name}"
        if not isinstance(body, dict):
            self.fail(key, "a service must be a mapping")
        ext = dict(_ext(body))
        ext.pop("skip", None)
        env = {**self.env_files(key, body.get("env_file")),
               **self.environment(key, body.get("environment"))}  # fmt: skip
        image = _image_kind(body.get("image"))
        self.note_unhonoured(key, body, builtin=image is not None and "command" not in ext)
        if image is not None and "command" not in ext:
            table = self.provider(key, image[0], body, env)
        else:
            table = {"env": self.rewrite_env(env, ports, own=ports.get(name))}
            build = body.get("build")
            context = build.get("context") if isinstance(build, dict) else build
            if isinstance(context, str) and "cwd" not in ext:
                table["cwd"] = context
            health = self.healthcheck(key, body.get("healthcheck"), ports.get(name))
            if health is not None and "ready" not in ext:
                table["ready"] = health
                timeout = _health_deadline(key, body.get("healthcheck") or {}, self)
                if timeout is not None and "start_timeout" not in ext:
                    table["start_timeout"] = timeout
            replicas = (body.get("deploy") or {}).get("replicas")
            if replicas is not None:
                table["replicas"] = replicas
        if "depends_on" in body:
            deps = self.depends_on(key, body["depends_on"])
            # a dependency left out (x-stacktest.skip, a profile) is not waited for
            table["depends_on"] = (
                {d: c for d, c in deps.items() if d not in self.left_out}
                if isinstance(deps, dict)
                else [d for d in deps if d not in self.left_out]
            )
        restart = body.get("restart")
        if restart is not None:
            policy, _, count = str(restart).partition(":")  # on-failure:3
            table["restart"] = _RESTART.get(policy, policy)
            if count.isdigit():
                table["max_restarts"] = int(count)
            elif table["restart"] == "always":
                table["max_restarts"] = ALWAYS_RESTARTS
        if "stop_signal" in body:
            table["stop_signal"] = body["stop_signal"]
        if "stop_grace_period" in body:
            table["stop_timeout"] = body["stop_grace_period"]
        env_ext = ext.pop("env", None)
        if env_ext:
            table["env"] = {**table.get("env", {}), **env_ext}
        table.update(ext)
        return table

    def refer_to_passwords(self, services: dict[str, Any]) -> None:
        """A server's password written out in a client's env (a whole value, or a URL's
        ``:password@``) becomes ``{server.password}``: the same value, and redacted
        wherever stacktest shows the stack."""
        secrets = {
            str(table["password"]): name
            for name, table in services.items()
            if isinstance(table.get("password"), str) and len(table["password"]) >= 4
        }
        for table in services.values():
            env = table.get("env") or {}
            for var, value in env.items():
                for secret, server in secrets.items():
                    escaped = _literal(secret)
                    ref = f"{{{server}.password}}"
                    # PGPASSWORD: secret / scheme://user:secret@host, redis://:secret@host
                    whole = value == escaped
                    value = ref if whole else value.replace(f":{escaped}@", f":{ref}@")
                env[var] = value

    def note_unhonoured(self, key: str, body: Mapping[str, Any], *, builtin: bool) -> None:
        """Say what of a service is not honoured as written, key by key."""
        ext = _ext(body)
        for field_name, value in body.items():
            name = str(field_name)
            where = f"{key}.{name}"
            if name.startswith("x-") or name in ALWAYS_HONOURED:
                continue
            if name == "ports" or name == "expose":
                for item in value or []:
                    published = _published(item)
                    if published:
                        self.note(
                            where,
                            f"published port {published} is not honoured yet: the service "
                            "listens on a free loopback port (`stacktest status`, "
                            "`stacktest env --client`)",
                        )
            elif name == "volumes":
                for item in value or []:
                    if not _is_initdb(item) or not builtin:
                        self.note(
                            where,
                            f"{_volume_text(item)}: not mounted (a local process reads files "
                            "where they are; data lives in the run dir)",
                        )
            elif name == "deploy" and isinstance(value, dict):
                for sub in value:
                    if sub != "replicas":
                        self.note(f"{where}.{sub}", "ignored: no meaning for a local process")
            elif name == "image":
                if not builtin:
                    self.note(where, f"{value}: not run; x-stacktest.command runs instead")
                elif ":" in str(value).rsplit("/", 1)[-1]:
                    self.note(where, f"{value}: the installed server runs, whatever its version "
                              "(`stacktest doctor` shows which)")  # fmt: skip
            elif name == "command" and builtin:
                self.note(where, "the image's command arguments are not passed to the server "
                          "(only --requirepass, --appendonly and -js are read)")  # fmt: skip
            elif name == "command" and "command" in ext:
                self.note(where, "not run: x-stacktest.command is what runs")
            elif name == "healthcheck":
                if builtin:
                    self.note(where, "not run for a built-in server: stacktest's own protocol "
                              "check decides readiness")  # fmt: skip
            elif name not in SERVICE_KEYS:
                self.note(where, "not a Compose service key; ignored")
            else:
                reason = IGNORED_REASONS.get(name, "no meaning for a local process")
                self.note(where, f"ignored: {reason}")

    # -- pieces ---------------------------------------------------------------------------
    def environment(self, key: str, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if isinstance(value, list):
            pairs = {}
            for item in value:
                var, sep, val = str(item).partition("=")
                if not sep:  # `- VAR`: passed through from the environment when it is set
                    found = self.env.get(var)
                    if found is None:
                        continue
                    val = found
                pairs[var] = val
            value = pairs
        if not isinstance(value, dict):
            self.fail(f"{key}.environment", "environment must be a mapping or a list")
        out = {}
        for var, val in value.items():
            if val is None:  # `VAR:` with no value: passed through when set, as `- VAR`
                if str(var) in self.env:
                    out[str(var)] = self.env[str(var)]
                continue
            out[str(var)] = "true" if val is True else "false" if val is False else str(val)
        return out

    def env_files(self, key: str, value: Any) -> dict[str, str]:
        """``env_file``: a path, a list of paths, or ``{path, required}`` entries."""
        items = value if isinstance(value, list) else [] if value is None else [value]
        out: dict[str, str] = {}
        for item in items:
            path, required = (item.get("path"), item.get("required", True)) if isinstance(
                item, dict) else (item, True)  # fmt: skip
            file = self.source.parent / str(path)
            if not file.is_file():
                if required:
                    self.fail(f"{key}.env_file", f"no env file at {file}",
                              "create it, or mark it `required: false`")  # fmt: skip
                continue
            try:
                # values may refer to the shell (and .env) and to the keys above them
                out.update(read_dotenv(file, lambda name: out.get(name, self.env.get(name))))
            except DotenvError as exc:
                raise ConfigError(exc.problem, file=file, line=exc.line) from None
        return out

    def rewrite_env(
        self, env: Mapping[str, str], ports: Mapping[str, int | None], own: int | None
    ) -> dict[str, str]:
        """Escape stacktest's braces, then point service addresses at the local ones."""
        out = {var: _literal(value) for var, value in env.items()}
        for var, value in list(out.items()):
            for other, port in ports.items():
                if port is None:
                    continue
                local = f"{{{other}.host}}:{{{other}.port}}"
                value = re.sub(rf"(?<![\w.-]){re.escape(other)}:{port}(?!\d)", local, value)

                def no_port(match: re.Match[str], port: int = port, local: str = local) -> str:
                    # scheme://[user@]service/...: the scheme's default port is implied
                    if DEFAULT_PORTS.get(match["scheme"].lower()) != port:
                        return match[0]
                    return f"{match['scheme']}://{match['userinfo'] or ''}{local}"

                value = re.sub(
                    rf"(?P<scheme>[A-Za-z][\w+.-]*)://(?P<userinfo>[^@/\s]*@)?"
                    rf"{re.escape(other)}(?=[/?#]|$)",
                    no_port,
                    value,
                )
            if own is not None and value == str(own):
                value = "{port}"
            out[var] = value
        for var, value in env.items():  # DB_HOST: db  /  DB_PORT: "5432"
            if var.upper().endswith("HOST") and value in ports:
                prefix = var[: -len("HOST")]
                out[var] = f"{{{value}.host}}"
                port_var = next((v for v in env if v.upper() == f"{prefix}PORT".upper()), None)
                if port_var and env[port_var] == str(ports[value]):
                    out[port_var] = f"{{{value}.port}}"
        return out

    def provider(
        self, key: str, kind: str, body: Mapping[str, Any], env: Mapping[str, str]
    ) -> dict[str, Any]:
        command = body.get("command") or []
        args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if kind == "postgres":
            user = env.get("POSTGRES_USER") or "postgres"
            table: dict[str, Any] = {"use": "postgres", "user": user,
                                     "databases": [env.get("POSTGRES_DB") or user]}  # fmt: skip
            if env.get("POSTGRES_PASSWORD"):
                table["password"] = env["POSTGRES_PASSWORD"]
            init = self.init_scripts(key, body.get("volumes") or [])
            if init:
                table["init"] = init
            return table
        if kind in ("redis", "valkey"):
            table = {"use": kind}
            password = _flag_value(args, "--requirepass") or env.get("REDIS_PASSWORD")
            if password:
                table["password"] = password
            if _flag_value(args, "--appendonly") == "yes":
                table["persistence"] = True
            return table
        return {"use": "nats", "jetstream": bool({"-js", "--jetstream"} & set(args))}

    def init_scripts(self, key: str, volumes: list[Any]) -> list[str]:
        found: list[str] = []
        for index, volume in enumerate(volumes):
            if isinstance(volume, dict):
                src, target = str(volume.get("source", "")), str(volume.get("target", ""))
            else:
                src, _, rest = str(volume).partition(":")
                target = rest.split(":")[0]
            if not target.startswith(INITDB) or not src.startswith((".", "/", "~")):
                continue
            path = (self.source.parent / os.path.expanduser(src)).resolve()
            files = sorted(path.iterdir()) if path.is_dir() else [path]
            for file in files:
                if file.suffix == ".sql":
                    found.append(str(file))
                elif file.suffix in (".sh", ".gz", ".xz", ".zst"):
                    self.fail(
                        f"{key}.volumes",
                        f"volume {index}: {file.name}: only .sql init scripts are run "
                        "(stacktest runs no shell scripts from initdb.d)",
                        "turn it into a .sql file, or run it as a `completed` one-shot service",
                    )
        return found

    def healthcheck(self, key: str, check: Any, own: int | None) -> dict[str, Any] | None:
        if not isinstance(check, dict) or check.get("disable"):
            return None
        test = check.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not isinstance(test, list) or not test or test[0] == "NONE":
            return None
        kind = test[0]
        argv = [_literal(str(a)) for a in test[1:]]
        if own is not None:  # the container's own port is {port} here
            mine = re.compile(rf"\b(localhost|127\.0\.0\.1|0\.0\.0\.0):{own}\b")
            argv = [mine.sub("127.0.0.1:{port}", a) for a in argv]
        if kind == "CMD":
            ready: dict[str, Any] = {"command": argv}
        elif kind == "CMD-SHELL":
            ready = {"command": " ".join(argv)}
        else:
            self.fail(f"{key}.healthcheck.test", f"unknown healthcheck test {kind!r}",
                      "use CMD, CMD-SHELL or NONE")  # fmt: skip
        if "timeout" in check:
            ready["timeout"] = _go_duration(f"{key}.healthcheck.timeout", check["timeout"], self)
        return ready

    def depends_on(self, key: str, value: Any) -> Any:
        if isinstance(value, list):  # the short form means service_started (Compose's)
            return {str(v): "service_started" for v in value}
        if isinstance(value, dict):
            out = {}
            for name, spec in value.items():
                condition = (spec or {}).get("condition") if isinstance(spec, dict) else spec
                out[str(name)] = condition or "service_started"
                missing = str(name) not in self.project.document.get("services", {})
                if isinstance(spec, dict) and spec.get("required") is False and missing:
                    del out[str(name)]  # an optional dependency that is not there
                if isinstance(spec, dict) and spec.get("restart"):
                    self.note(f"{key}.depends_on.{name}.restart", "not honoured: a dependency's "
                              "restart does not restart this service")  # fmt: skip
            return out
        self.fail(f"{key}.depends_on", "depends_on must be a list or a mapping")


def _literal(text: str) -> str:
    """``text`` as a stack-file value: braces are not references."""
    return text.replace("{", "{{").replace("}", "}}")


def _ext(body: Any) -> Mapping[str, Any]:
    ext = body.get("x-stacktest") if isinstance(body, dict) else None
    return ext if isinstance(ext, dict) else {}


def _image_kind(image: Any) -> tuple[str, int] | None:
    if not isinstance(image, str):
        return None
    repository = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    return IMAGES.get(repository)


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _published(item: Any) -> str | None:
    """The host side of a ports entry (``"5432:5432"``, ``"127.0.0.1:H:C"``, long form)."""
    if isinstance(item, dict):
        published = item.get("published")
        return f"{published}->{item.get('target')}" if published else None
    text = str(item).split("/")[0]
    parts = text.rsplit(":", 2)
    if len(parts) >= 2 and parts[-2]:
        return f"{parts[-2]}->{parts[-1]}"
    return None


def _is_initdb(item: Any) -> bool:
    target = item.get("target", "") if isinstance(item, dict) else ([*str(item).split(":"), ""])[1]
    return str(target).startswith(INITDB)


def _volume_text(item: Any) -> str:
    if isinstance(item, dict):
        return f"volume {item.get('source', '')}:{item.get('target', '')}"
    return f"volume {item}"


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(key: str, value: Any, translator: Translator) -> float:
    """Compose's durations (Go's: ``1m30s``, ``500ms``, ``10s``) in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        translator.fail(key, f"{value!r} is not a duration", "write it like 10s, 1m30s or 500ms")
    return total


def _health_deadline(key: str, check: Mapping[str, Any], translator: Translator) -> float | None:
    """How long Compose waits before calling a service unhealthy: start_period, then
    retries checks of interval (each up to timeout). None when the file sets none of them."""
    if not any(k in check for k in ("interval", "timeout", "retries", "start_period")):
        return None

    def get(name: str, default: float) -> float:
        if name not in check:
            return default
        return _go_duration(f"{key}.healthcheck.{name}", check[name], translator)

    retries = check.get("retries", 3)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
        translator.fail(f"{key}.healthcheck.retries", f"{retries!r} is not a positive number")
    return get("start_period", 0.0) + retries * (get("interval", 30.0) + get("timeout", 30.0))
