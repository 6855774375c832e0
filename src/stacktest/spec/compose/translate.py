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
from collections.abc import Mapping
from typing import Any, NoReturn

from stacktest.errors import ConfigError
from stacktest.spec.compose.containers import container_table
from stacktest.spec.compose.dotenv import DotenvError, read_dotenv
from stacktest.spec.compose.images import read_image
from stacktest.spec.compose.keys import (
    ALWAYS_HONOURED,
    IGNORED_REASONS,
    IGNORED_TOP_LEVEL,
    SERVICE_KEYS,
    TOP_LEVEL,
)
from stacktest.spec.compose.model import Project, line_of
from stacktest.spec.compose.values import (
    go_duration,
    health_deadline,
    image_kind,
    is_bind,
    literal,
    port_mapping,
    replicas,
    stacktest_ext,
    tmpfs_name,
    tmpfs_targets,
    volume_parts,
    volume_text,
)

#: URL schemes whose default port a host without one implies.
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379,
                 "valkey": 6379, "nats": 4222, "memcached": 11211, "mysql": 3306,
                 "mariadb": 3306, "amqp": 5672, "http": 80,
                 "https": 443}  # fmt: skip
_RESTART = {"no": "no", "on-failure": "on-failure", "always": "always",
            "unless-stopped": "always"}  # fmt: skip
#: ``restart: always`` without a count: restarted as often as it exits.
ALWAYS_RESTARTS = 1_000_000
class Translator:
    """One merged compose document -> a stack-file table, and what it did not honour."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.source = project.files[0]
        self.lines = self.source.read_text(encoding="utf-8", errors="replace").splitlines()
        self.env = project.environment  # the shell, then .env
        self.left_out: set[str] = set(project.left_out)
        #: Named volumes local processes use: ``[stack] volumes``.
        self.named_volumes: set[str] = set()
        #: tmpfs mounts of local processes: ``[stack] tmpfs``.
        self.tmpfs: set[str] = set()
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
            if not stacktest_ext(body).get("skip")
        }
        self.left_out |= set(map(str, services)) - set(kept)
        for key in data:
            if key not in TOP_LEVEL and not str(key).startswith("x-"):
                self.note(str(key), "not a Compose top-level key; ignored")
        if "version" in data:
            self.note("version", "obsolete: the Compose specification ignores it (so does this)")
        for key in ("networks", "volumes", "secrets", "configs"):
            if data.get(key):
                self.note(key, IGNORED_TOP_LEVEL[key])
        self.refuse_unrunnable(kept)
        ports = {name: self.container_port(name, body) for name, body in kept.items()}
        out = {name: self.service(name, body, ports) for name, body in kept.items()}
        self.refer_to_passwords(out)
        if self.named_volumes:
            meta["volumes"] = sorted(self.named_volumes | set(meta.get("volumes") or []))
        if self.tmpfs:
            meta["tmpfs"] = sorted(self.tmpfs | set(meta.get("tmpfs") or []))
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
        from stacktest.containers.engine import NoEngine, find_engine

        try:
            if any(self.is_container(body) for body in services.values()):
                find_engine()
                return  # they run as containers
        except NoEngine as exc:
            search = "\n  ".join(f"{w}: {why}" for w, why in exc.tried)
        for name, body in services.items():
            if self.is_container(body):
                what = f"image {body['image']!r}" if body.get("image") else "a `build:` service"
                problems.append(
                    f"services.{name}: {what} has no local equivalent stacktest can run"
                )
        if problems:
            first = problems[0].split(":")[0]
            self.fail(
                first,
                ("\n  ".join(problems) if len(problems) > 1 else problems[0].split(": ", 1)[1]),
                "start a container engine (Docker or Podman) to run it as a container "
                f"(looked at:\n  {search}),\n  or add `x-stacktest: {{ command: [...] }}` to "
                "each (how to run it as a local process; any stack.toml key may go there), "
                "or `x-stacktest: { skip: true }`",
            )

    @staticmethod
    def is_container(body: Any) -> bool:
        """No native equivalent and no local command: a container, given an engine."""
        ext = stacktest_ext(body) if isinstance(body, dict) else {}
        return (isinstance(body, dict) and image_kind(body.get("image")) is None
                and "command" not in ext and "use" not in ext)  # fmt: skip

    def container_port(self, name: str, body: Mapping[str, Any]) -> int | None:
        image = image_kind(body.get("image"))
        if image is not None and image[0] != "nginx" and "command" not in stacktest_ext(body):
            return image[1]  # (nginx listens where its configuration says: its ports tell)
        for item in list(body.get("expose") or []) + list(body.get("ports") or []):
            target = item.get("target") if isinstance(item, dict) else str(item).split("/")[0]
            target = str(target).rsplit(":", 1)[-1]
            if target.isdigit():
                return int(target)
        return image[1] if image is not None and "command" not in stacktest_ext(body) else None

    def service(self, name: str, body: Mapping[str, Any], ports: dict[str, int | None]) -> Any:
        key = f"services.{name}"
        if not isinstance(body, dict):
            self.fail(key, "a service must be a mapping")
        ext = dict(stacktest_ext(body))
        ext.pop("skip", None)
        env = {**self.env_files(key, body.get("env_file")),
               **self.environment(key, body.get("environment"))}  # fmt: skip
        image = image_kind(body.get("image"))
        builtin = image is not None and "command" not in ext
        used: set[str] = set()
        if self.is_container(body):
            table = container_table(self, key, name, body, env, ports)
            check = self.healthcheck(key, body.get("healthcheck"), ports.get(name))
            if check is not None and "ready" not in ext:  # (run inside the container)
                table["ready"] = check
                timeout = health_deadline(key, body.get("healthcheck") or {}, self)
                if timeout is not None and "start_timeout" not in ext:
                    table["start_timeout"] = timeout
            return self.common(key, body, table, ext, ports, published=False)

        if image is not None and builtin:
            table, used = self.provider(key, image[0], body, env, ports)
            if env:  # as a container's: its init scripts and templates read it
                table["env"] = self.rewrite_env(env, ports, own=None)
        self.note_unhonoured(key, body, builtin=builtin, used=used)
        if image is not None and builtin:
            others = {8222: "{monitor_port}"} if image[0] == "nats" else None
            check = body.get("healthcheck")
            test = check.get("test") if isinstance(check, dict) else None
            if "healthcheck.sh" in str(test):
                # the mariadb image's own script: not on this machine; its probe stands in
                self.note(f"{key}.healthcheck", "the image's healthcheck.sh is not run: "
                          "stacktest's own check (a real query) stands for it")
                check = None
            health = self.healthcheck(key, check, ports.get(name), others)
            if health is not None and "ready" not in ext:
                table["ready"] = health  # run as well as stacktest's own protocol check
                timeout = health_deadline(key, body.get("healthcheck") or {}, self)
                if timeout is not None and "start_timeout" not in ext:
                    table["start_timeout"] = timeout
        else:
            table = {"env": self.rewrite_env(env, ports, own=ports.get(name))}
            paths = self.volume_paths(name, body)
            if paths:
                table["env"] = {k: _map_paths(v, paths) for k, v in table["env"].items()}
            build = body.get("build")
            context = build.get("context") if isinstance(build, dict) else build
            if isinstance(context, str) and "cwd" not in ext:
                table["cwd"] = context
            health = self.healthcheck(key, body.get("healthcheck"), ports.get(name))
            if health is not None and "ready" not in ext:
                table["ready"] = health
                timeout = health_deadline(key, body.get("healthcheck") or {}, self)
                if timeout is not None and "start_timeout" not in ext:
                    table["start_timeout"] = timeout
            replicas = (body.get("deploy") or {}).get("replicas")
            if replicas is not None:
                table["replicas"] = replicas
        return self.common(key, body, table, ext, ports)

    def common(
        self, key: str, body: Mapping[str, Any], table: dict[str, Any], ext: dict[str, Any],
        ports: dict[str, int | None], *, published: bool = True,
    ) -> Any:  # fmt: skip
        """What every kind of service takes alike: its port, dependencies, restart policy,
        stop signal and grace period, and the x-stacktest keys over all."""
        name = key.split(".", 1)[1]
        pinned = self.published_port(body, ports.get(name))
        if published and pinned is not None and "port" not in ext:
            table["port"] = pinned
        elif not published and pinned is not None and pinned != ports.get(name):
            self.note(f"{key}.ports", f"published on {pinned}: a container shares the host's "
                      f"network here, so it is reached at 127.0.0.1:{ports.get(name)}, "
                      "its own port (docs/containers.md)")  # fmt: skip
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
        """A server's password (``password``, ``root_password``) written out in an env (a
        whole value, or a URL's ``:password@``) becomes ``{server.password}``: the same
        value, and redacted wherever stacktest shows the stack."""
        secrets = {  # the secret's text -> the reference to it
            str(value): f"{{{name}.{key}}}"
            for name, table in services.items()
            for key, value in table.items()
            if key.endswith("password") and isinstance(value, str) and len(value) >= 4
        }
        for table in services.values():
            env = table.get("env") or {}
            for var, value in env.items():
                for secret, ref in secrets.items():
                    escaped = literal(secret)
                    # PGPASSWORD: secret / scheme://user:secret@host, redis://:secret@host
                    whole = value == escaped
                    value = ref if whole else value.replace(f":{escaped}@", f":{ref}@")
                env[var] = value
            ready = table.get("ready")
            command = ready.get("command") if isinstance(ready, dict) else None
            if isinstance(command, list):  # a healthcheck's `-a PASSWORD`, as a reference
                by_literal = {literal(secret): ref for secret, ref in secrets.items()}
                ready["command"] = [by_literal.get(arg, arg) for arg in command]

    def note_unhonoured(
        self, key: str, body: Mapping[str, Any], *, builtin: bool, used: set[str]
    ) -> None:
        """Say what of a service is not honoured as written, key by key (``used``: the
        container paths of a built-in server's mounts its image contract used)."""
        ext = stacktest_ext(body)
        for field_name, value in body.items():
            name = str(field_name)
            where = f"{key}.{name}"
            if name.startswith("x-") or name in ALWAYS_HONOURED:
                continue
            if name == "ports":
                self.note_ports(where, body, value)
            elif name == "volumes":
                for item in value or []:
                    parts = volume_parts(item)
                    if builtin and not (parts and parts[1] in used):
                        self.note(
                            where,
                            f"{volume_text(item)}: not mounted (a built-in server's data lives "
                            "in the run dir, fresh each run)",
                        )
                    elif not builtin:
                        self.note_process_volume(where, item)
            elif name == "tmpfs":
                for target in tmpfs_targets({"tmpfs": value}):
                    if builtin:
                        self.note(where, f"{target}: not mounted (a built-in server's data "
                                  "lives in the run dir, fresh each run, in memory when "
                                  "/dev/shm has room: what a tmpfs data dir is for)")  # fmt: skip
                    else:
                        local = f"RUN_DIR/tmpfs/{tmpfs_name(key.split('.', 1)[1], target)}"
                        self.note(where, f"{target} is {local} for the local process, empty at "
                                  "each start (in environment values; a path the program "
                                  "itself names is not rewritten)")  # fmt: skip
            elif name == "deploy" and isinstance(value, dict):
                for sub in value:
                    if sub != "replicas":
                        self.note(f"{where}.{sub}", "ignored: no meaning for a local process")
            elif name == "image":
                if not builtin:
                    self.note(where, f"{value}: not run; x-stacktest.command runs instead")
                # a built-in's tag is its `version`: which runs is said before the start
            elif name in ("command", "entrypoint") and builtin:
                pass  # read as the image reads it (images.py), with notes of its own
            elif name == "command" and "command" in ext:
                self.note(where, "not run: x-stacktest.command is what runs")
            elif name == "healthcheck":
                pass  # run: for a built-in server as well as stacktest's protocol check
            elif name not in SERVICE_KEYS:
                self.note(where, "not a Compose service key; ignored")
            else:
                reason = IGNORED_REASONS.get(name, "no meaning for a local process")
                self.note(where, f"ignored: {reason}")

    def volume_paths(self, service: str, body: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(container path, local path) for a local process's volumes: a bind mount is its
        host directory, a named volume ``RUN_DIR/volumes/NAME`` (made at start, kept across
        runs, removed by ``down -v``), a tmpfs ``RUN_DIR/tmpfs/SERVICE-PATH`` (empty at each
        start). Longest paths first, for rewriting."""
        mapping = []
        for target in tmpfs_targets(body):
            name = tmpfs_name(service, target)
            self.tmpfs.add(name)
            mapping.append((target, f"{{run_dir}}/tmpfs/{name}"))
        for item in body.get("volumes") or []:
            parts = volume_parts(item)
            if parts is None:
                continue
            source, target, _ = parts
            if is_bind(source):
                local = literal(str((self.source.parent / os.path.expanduser(source)).resolve()))
            else:
                self.named_volumes.add(source)
                local = f"{{run_dir}}/volumes/{source}"
            mapping.append((target, local))
        return sorted(mapping, key=lambda pair: -len(pair[0]))

    def note_process_volume(self, where: str, item: Any) -> None:
        parts = volume_parts(item)
        if isinstance(item, dict) and item.get("type") == "tmpfs":
            service = where.split(".")[1]
            for target in tmpfs_targets({"volumes": [item]}):
                self.note(where, f"{volume_text(item)}: {target} is RUN_DIR/tmpfs/"
                          f"{tmpfs_name(service, target)} for the local process, empty at each "
                          "start (in environment values)")  # fmt: skip
            return
        if parts is None:
            self.note(where, f"{volume_text(item)}: not mounted (an anonymous volume)")
            return
        source, target, read_only = parts
        what = "its host directory" if is_bind(source) else f"RUN_DIR/volumes/{source}"
        self.note(where, f"{volume_text(item)}: {target} is {what} for the local process (in "
                  "environment values; a path the program itself names is not rewritten)"
                  + ("; read-only is not enforced" if read_only else ""))  # fmt: skip

    def published_port(self, body: Mapping[str, Any], container: int | None) -> int | None:
        """The host port the file publishes the service's main (container) port on."""
        if container is None or replicas(body) > 1:
            return None
        for item in body.get("ports") or []:
            mapping = port_mapping(item)
            if mapping and mapping[1] == container and mapping[0] is not None:
                return mapping[0]
        return None

    def note_ports(self, where: str, body: Mapping[str, Any], value: Any) -> None:
        container = self.container_port("", body)
        pinned = self.published_port(body, container)
        for item in value or []:
            mapping = port_mapping(item)
            if mapping is None or mapping[0] is None:
                continue  # a container port only: nothing published
            host, target, address = mapping
            if host == pinned and target == container:
                if address not in ("", "127.0.0.1", "0.0.0.0", "::", "localhost"):
                    self.note(where, f"{item}: listens on 127.0.0.1:{host}, not on {address}")
                elif address in ("0.0.0.0", "::"):
                    self.note(where, f"{item}: listens on 127.0.0.1:{host} only (loopback)")
                continue
            why = (
                f"{replicas(body)} replicas cannot share one port"
                if replicas(body) > 1
                else "only the service's main port is published"
            )
            self.note(where, f"{item}: not published ({why}); the service's ports are in "
                      "`stacktest status` and `stacktest env --client`")  # fmt: skip

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
        out = {var: literal(value) for var, value in env.items()}
        for var, value in list(out.items()):
            # the Docker host, seen from a container, is this machine for a local process
            value = re.sub(r"(?<![\w.-])(host\.docker\.internal|gateway\.docker\.internal)"
                           r"(?![\w-])", "127.0.0.1", value)  # fmt: skip
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
        self, key: str, kind: str, body: Mapping[str, Any], env: Mapping[str, str],
        ports: Mapping[str, int | None],
    ) -> tuple[dict[str, Any], set[str]]:  # fmt: skip
        """The image's contract (:mod:`.images`): its options, and the mounts it used."""
        services = self.project.document.get("services") or {}
        kinds = {str(n): (image_kind(b.get("image")) or (None,))[0] if isinstance(b, dict)
                 else None for n, b in services.items()}  # fmt: skip
        table, notes, used = read_image(
            key, kind, body, env, self.source.parent, self, ports, kinds
        )
        for where, what in notes:
            self.note(where, what.replace("{SERVICE.", f"{{{key.split('.', 1)[1]}."))
        return table, used

    def healthcheck(
        self, key: str, check: Any, own: int | None, others: Mapping[int, str] | None = None
    ) -> dict[str, Any] | None:
        if not isinstance(check, dict) or check.get("disable"):
            return None
        test = check.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not isinstance(test, list) or not test or test[0] == "NONE":
            return None
        kind = test[0]
        argv = [literal(str(a)) for a in test[1:]]
        ports = {**(others or {}), **({own: "{port}"} if own is not None else {})}
        for container, local in ports.items():  # the container's ports are the local ones
            mine = re.compile(rf"\b(localhost|127\.0\.0\.1|0\.0\.0\.0):{container}\b")
            argv = [mine.sub(f"127.0.0.1:{local}", a) for a in argv]
        if kind == "CMD":
            ready: dict[str, Any] = {"command": argv}
        elif kind == "CMD-SHELL":
            ready = {"command": " ".join(argv)}
        else:
            self.fail(f"{key}.healthcheck.test", f"unknown healthcheck test {kind!r}",
                      "use CMD, CMD-SHELL or NONE")  # fmt: skip
        if "timeout" in check:
            seconds = go_duration(f"{key}.healthcheck.timeout", check["timeout"], self)
            if seconds > 0:  # 0: Compose's default
                ready["timeout"] = seconds
        return ready

    def depends_on(self, key: str, value: Any) -> Any:
        if isinstance(value, list):  # the short form means service_started (Compose's)
            return {str(v): "service_started" for v in value}
        if isinstance(value, dict):
            out = {}
            for name, spec in value.items():
                condition = (spec or {}).get("condition") if isinstance(spec, dict) else spec
                entry: Any = condition or "service_started"
                if isinstance(spec, dict) and spec.get("restart") is not None:
                    entry = {"condition": entry, "restart": spec["restart"]}
                out[str(name)] = entry
                missing = str(name) not in self.project.document.get("services", {})
                if isinstance(spec, dict) and spec.get("required") is False and missing:
                    del out[str(name)]  # an optional dependency that is not there
            return out
        self.fail(f"{key}.depends_on", "depends_on must be a list or a mapping")


def _map_paths(value: str, paths: list[tuple[str, str]]) -> str:
    """A container path in a value (``/app/data``, ``/app/data/x.db``) -> the local one."""
    for target, local in paths:
        pattern = re.compile(rf"(?<![\w./-]){re.escape(target)}(?=$|[/\s:;,\"'])")
        value = pattern.sub(local.replace("\\", "\\\\"), value)  # (a \ is literal)
    return value
