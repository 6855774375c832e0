"""Validating a stack table (a parsed ``stack.toml``, or a translated compose file) into
a frozen :class:`StackSpec`.

Every problem becomes one :class:`ConfigError` naming the file, the key path
(``services.api.depends_on.db``) and, when it can be found, the line.
"""

from __future__ import annotations

import difflib
import re
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from stacktest.durations import parse_duration
from stacktest.errors import ConfigError
from stacktest.spec import schema
from stacktest.spec.model import (
    PROVIDERS,
    TOXIPROXY_PORT,
    Condition,
    Dependency,
    ReadyCheck,
    ServiceSpec,
    StackSpec,
)
from stacktest.spec.options import (
    backend_of,
    container_fields,
    container_kind,
    default_toxiproxy_port,
    provider_options,
)
from stacktest.spec.template import TemplateSyntaxError, references

STACK_KEYS = frozenset({"name", "run_dir", "proxy", "toxiproxy_port", "volumes", "tmpfs",
                        "backend"})  # fmt: skip
#: More would be a typo (each replica is a process and a port).
MAX_REPLICAS = 1000
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
def parse_stack(data: Mapping[str, Any], *, source: Path, text: str = "") -> StackSpec:
    """Validate already-parsed TOML data; ``text`` (the file's source) locates lines."""
    return _Parser(source, text).stack(data)


def line_from_message(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


class _Parser:
    def __init__(self, source: Path, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()

    # -- error helpers -------------------------------------------------------------------
    def fail(self, key: str, problem: str, hint: str | None = None) -> NoReturn:
        raise ConfigError(problem, file=self.source, key=key, line=self.line_of(key), hint=hint)

    def line_of(self, key: str) -> int | None:
        """Best-effort line of a dotted key path in the TOML text."""
        if not self.lines:
            return None
        parts = key.split(".")
        # the longest table header that is a prefix of the key path
        best, best_len = None, -1
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if not (line.startswith("[") and line.endswith("]")):
                continue
            header = [p.strip().strip('"') for p in line.strip("[]").split(".")]
            if header == parts[: len(header)] and len(header) > best_len:
                best, best_len = number, len(header)
        if best is None:
            best, best_len = 0, 0
        rest = parts[best_len:]
        if not rest:
            return best or None
        # a key line below that header (and before the next header)
        want = rest[0]
        for number in range(best + 1, len(self.lines) + 1):
            line = self.lines[number - 1].strip()
            if line.startswith("[") and number != best:
                break
            name = line.split("=", 1)[0].strip().strip('"')
            if name == want or name.startswith(want + "."):
                return number
        return best or None

    def unknown_key(self, key: str, name: str, allowed: set[str] | frozenset[str]) -> NoReturn:
        close = difflib.get_close_matches(name, sorted(allowed), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(sorted(allowed))}"
        self.fail(f"{key}.{name}" if key else name, "unknown key", hint)

    def expect(self, key: str, value: Any, types: tuple[type, ...], what: str) -> Any:
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            self.fail(key, f"expected {what}, got {schema.type_name(value)} ({value!r})")
        return value

    def str_list(self, key: str, value: Any) -> tuple[str, ...]:
        self.expect(key, value, (list,), "a list of strings")
        for i, item in enumerate(value):
            self.expect(f"{key}[{i}]", item, (str,), "a string")
        return tuple(value)

    def duration(self, key: str, value: Any, *, positive: bool = False) -> float:
        try:
            seconds = parse_duration(value, bare="s")
        except ValueError as exc:
            self.fail(key, str(exc))
        if positive and seconds <= 0:
            self.fail(key, f"must be more than 0, got {value!r}")
        return seconds

    def walk(self, key: str, value: Any) -> None:
        """Keys are strings; no string holds a NUL (no process can be given one)."""
        if isinstance(value, dict):
            for name, inner in value.items():
                if not isinstance(name, str):
                    self.fail(key or str(name), f"a key must be a string, not {name!r}")
                self.walk(f"{key}.{name}" if key else name, inner)
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                self.walk(f"{key}[{i}]", inner)
        elif isinstance(value, str) and "\x00" in value:
            self.fail(key, f"a NUL character in {value!r}: no program can be given one",
                      "remove it (an escape like \\u0000 in the file writes one)")  # fmt: skip

    # -- the file --------------------------------------------------------------------------
    def stack(self, data: Mapping[str, Any]) -> StackSpec:
        self.walk("", data)
        for name in data:
            if name not in ("stack", "services"):
                self.unknown_key("", name, {"stack", "services"})
        meta = self.expect("stack", data.get("stack", {}), (dict,), "a table")
        for name in meta:
            if name not in STACK_KEYS:
                self.unknown_key("stack", name, STACK_KEYS)
        proxy = self.expect("stack.proxy", meta.get("proxy", False), (bool,), "true or false")
        stack_name = self.expect(
            "stack.name", meta.get("name", self.source.parent.name or "stack"), (str,), "a string"
        )
        run_dir = Path(
            self.expect("stack.run_dir", meta.get("run_dir", ".stacktest"), (str,), "a path")
        )
        toxiproxy_port = self.expect(
            "stack.toxiproxy_port",
            meta.get("toxiproxy_port", default_toxiproxy_port(self)),
            (int,),
            "a port number (0: any free port)",
        )
        if isinstance(toxiproxy_port, bool) or not 0 <= toxiproxy_port <= 65535:
            self.fail(
                "stack.toxiproxy_port",
                f"{toxiproxy_port!r} is not a port number",
                f"use 0 to 65535 (0: any free port; default {TOXIPROXY_PORT}, Toxiproxy's own)",
            )
        if not run_dir.is_absolute():
            run_dir = self.source.parent / run_dir

        volumes = self.str_list("stack.volumes", meta.get("volumes", []))
        tmpfs = self.str_list("stack.tmpfs", meta.get("tmpfs", []))
        for key, names in (("volumes", volumes), ("tmpfs", tmpfs)):
            for volume in names:
                if not _NAME.match(volume):
                    self.fail(
                        f"stack.{key}",
                        f"bad {key} name {volume!r}",
                        f"use letters, digits, '-' and '_' (it becomes RUN_DIR/{key}/NAME)",
                    )
        raw_services = self.expect("services", data.get("services", {}), (dict,), "a table")
        if not raw_services:
            self.fail(
                "services",
                "the stack declares no services",
                'add a [services.NAME] table, e.g. [services.db] with use = "postgres"',
            )
        self.backend = backend_of(self, "stack", meta, None)
        self.notes: list[str] = []
        kinds = {}
        for name, table in raw_services.items():
            key = f"services.{name}"
            if not _NAME.match(name):
                self.fail(key, f"bad service name {name!r}", "use letters, digits, '-' and '_'")
            self.expect(key, table, (dict,), "a table")
            kinds[name] = self.kind(key, table)
        healthful = {
            name
            for name, table in raw_services.items()
            if kinds[name] != "process" or "ready" in table
        }
        services = {
            name: self.service(name, table, kinds, healthful)
            for name, table in raw_services.items()
        }
        self.check_graph(services)
        pinned: dict[int, str] = {}
        for name, spec in services.items():
            if spec.port is None:
                continue
            if spec.port in pinned:
                self.fail(
                    f"services.{name}.port",
                    f"port {spec.port} is also services.{pinned[spec.port]}'s",
                    "give each service its own port, or drop one `port`",
                )
            pinned[spec.port] = name
        return StackSpec(
            name=stack_name,
            source=self.source,
            run_dir=run_dir,
            services=services,
            proxy=proxy,
            toxiproxy_port=toxiproxy_port,
            volumes=volumes,
            tmpfs=tmpfs,
            warnings=tuple(self.notes),
        )

    def port(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.fail(key, f"{value!r} is not a port number", "use 1 to 65535")
        return value

    def kind(self, key: str, table: Mapping[str, Any]) -> str:
        use = table.get("use")
        if container_kind(self, key, table):
            return "container"
        if use is None:
            if "command" not in table:
                self.fail(
                    key,
                    "a service needs `use` (a built-in provider), `command` or `image`",
                    f'use one of {", ".join(PROVIDERS)}, command = ["program", "arg"], '
                    'or image = "NAME:TAG" (a container)',
                )
            return "process"
        self.expect(f"{key}.use", use, (str,), "a string")
        if use not in PROVIDERS:
            close = difflib.get_close_matches(use, PROVIDERS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(PROVIDERS)}"
            self.fail(f"{key}.use", f"unknown provider {use!r}", hint)
        if "command" in table:
            self.fail(
                f"{key}.command",
                f"a service cannot have both `use = {use!r}` and `command`",
                "drop `command` to use the built-in provider, or drop `use` to run your own",
            )
        return str(use)

    def service(
        self, name: str, table: Mapping[str, Any], kinds: dict[str, str], healthful: set[str]
    ) -> ServiceSpec:
        key = f"services.{name}"
        kind = kinds[name]
        allowed = set(schema.COMMON_KEYS)
        if kind == "process":
            allowed |= schema.PROCESS_KEYS
        elif kind == "container":
            allowed |= schema.PROCESS_KEYS - {"shell", "cwd"} | set(schema.OPTIONS[kind])
        else:
            allowed |= set(schema.OPTIONS[kind]) | {"ready"}
        for option in table:
            if option not in allowed:
                if option in ("shell", "cwd") and kind == "container":
                    self.fail(f"{key}.{option}", f"`{option}` is not for a container service",
                              "a string command is split as a shell would; the directory "
                              "inside the container is `working_dir`")  # fmt: skip
                if option in schema.PROCESS_KEYS and kind != "process":
                    self.fail(
                        f"{key}.{option}",
                        f"`{option}` is only for `command` services",
                        f"the {kind} provider manages its own process and readiness check",
                    )
                self.unknown_key(key, option, allowed)

        fields: dict[str, Any] = {"name": name, "use": kind}
        if "port" in table:
            fields["port"] = self.port(f"{key}.port", table["port"])
        shell = bool(
            self.expect(f"{key}.shell", table.get("shell", False), (bool,), "true or false")
        )
        if kind == "container":
            fields.update(container_fields(self, key, table))
            if "ready" in table:  # (a command runs inside the container, as a healthcheck)
                fields["ready"] = self.ready(f"{key}.ready", table["ready"])
        elif kind == "process":
            command = table["command"]
            if isinstance(command, str):
                if not shell:
                    self.fail(
                        f"{key}.command",
                        "command is a string but shell is not enabled",
                        'write an argv list, command = ["prog", "arg"], or set shell = true',
                    )
                fields["command"] = (command,)
            else:
                fields["command"] = self.str_list(f"{key}.command", command)
                if not fields["command"]:
                    self.fail(f"{key}.command", "command is empty")
            fields["shell"] = shell
            if "cwd" in table:
                fields["cwd"] = self.expect(f"{key}.cwd", table["cwd"], (str,), "a path")
            replicas = self.expect(
                f"{key}.replicas", table.get("replicas", 1), (int,), "an integer"
            )
            if not 1 <= replicas <= MAX_REPLICAS:
                self.fail(f"{key}.replicas",
                          f"replicas must be 1 to {MAX_REPLICAS}, got {replicas}")  # fmt: skip
            fields["replicas"] = replicas
            if replicas > 1 and "port" in fields:
                self.fail(
                    f"{key}.port",
                    f"{replicas} replicas cannot all listen on port {fields['port']}",
                    "drop `port` (each replica gets its own {port}), or use one replica",
                )
            if "ready" in table:
                fields["ready"] = self.ready(f"{key}.ready", table["ready"])
        else:
            fields["backend"] = backend_of(self, key, table, self.backend, kind, self.notes)
            fields["options"] = provider_options(self, key, kind, table)
            if "ready" in table:  # a check of its own, run as well as the server's protocol check
                ready = self.ready(f"{key}.ready", table["ready"])
                if ready.kind != "command":
                    self.fail(
                        f"{key}.ready",
                        f"a {kind} server's own ready check is a command (an image's healthcheck)",
                        "write ready = { command = [...] }; the protocol check is built in",
                    )
                fields["ready"] = ready

        env = self.expect(f"{key}.env", table.get("env", {}), (dict,), "a table of strings")
        clean_env = {}
        for var, value in env.items():
            if not var or "=" in var:  # the environment is NAME=value: no process takes it
                self.fail(f"{key}.env", f"{var!r} cannot be a variable's name (empty, or with =)")
            if isinstance(value, bool):
                value = "true" if value else "false"
            self.expect(f"{key}.env.{var}", value, (str, int, float), "a string")
            clean_env[var] = str(value)
        fields["env"] = clean_env

        fields["depends_on"] = self.depends_on(
            key, table.get("depends_on", []), kinds, name, healthful
        )
        if "stop_signal" in table:
            fields["stop_signal"] = self.signal(f"{key}.stop_signal", table["stop_signal"])
        elif kind == "postgres":
            fields["stop_signal"] = signal.SIGINT  # fast shutdown
        for timeout in ("stop_timeout", "start_timeout"):
            if timeout in table:
                # (a stop_timeout of 0 is SIGKILL at once, as Compose's stop_grace_period: 0s)
                fields[timeout] = self.duration(f"{key}.{timeout}", table[timeout],
                                                positive=timeout == "start_timeout")  # fmt: skip
        restart = self.expect(f"{key}.restart", table.get("restart", "no"), (str,), "a string")
        if restart not in ("no", "on-failure", "always"):
            self.fail(
                f"{key}.restart",
                f"unknown restart policy {restart!r}",
                "use 'no', 'on-failure' or 'always'",
            )
        fields["restart"] = restart
        fields["max_restarts"] = self.expect(
            f"{key}.max_restarts", table.get("max_restarts", 5), (int,), "an integer"
        )
        if fields["max_restarts"] < 0:
            self.fail(f"{key}.max_restarts", f"cannot be negative, got {fields['max_restarts']}",
                      "0 means never restart")  # fmt: skip

        spec = ServiceSpec(**fields)
        self.check_references(key, spec, kinds)
        return spec

    def ready(self, key: str, value: Any) -> ReadyCheck:
        self.expect(key, value, (dict,), 'a table such as { http = "/health" }')
        kinds = [k for k in ("tcp", "http", "command", "log") if k in value]
        allowed = {"tcp", "http", "command", "log", "status", "timeout", "shell"}
        for option in value:
            if option not in allowed:
                self.unknown_key(key, option, allowed)
        if len(kinds) != 1:
            self.fail(
                key,
                "a ready check needs exactly one of tcp, http, command, log"
                + (f" (found {', '.join(kinds)})" if kinds else ""),
                'e.g. ready = { http = "/health" } or ready = { tcp = true }',
            )
        kind = kinds[0]
        raw = value[kind]
        attempt = self.duration(f"{key}.timeout", value.get("timeout", 1.0), positive=True)
        if "status" in value and kind != "http":
            self.fail(f"{key}.status", "`status` only applies to http checks")
        if kind == "tcp":
            if raw is True:
                target = ""
            elif isinstance(raw, int) and not isinstance(raw, bool):
                if not 1 <= raw <= 65535:
                    self.fail(f"{key}.tcp", f"{raw} is not a port number (1-65535)")
                target = f"127.0.0.1:{raw}"
            elif isinstance(raw, str) and ":" in raw:
                target = raw
            else:
                self.fail(f"{key}.tcp", f"expected true, a port or 'host:port', got {raw!r}")
            return ReadyCheck("tcp", target=target, attempt_timeout=attempt)
        if kind == "http":
            self.expect(f"{key}.http", raw, (str,), "a path such as '/health' or a URL")
            if not (raw.startswith("/") or raw.startswith(("http://", "https://"))):
                self.fail(f"{key}.http", f"expected a path starting with '/' or a URL, got {raw!r}")
            status = self.expect(
                f"{key}.status", value.get("status", 200), (int,), "an HTTP status"
            )
            if not 100 <= status <= 599:
                self.fail(f"{key}.status", f"{status} is not an HTTP status (100-599)")
            return ReadyCheck("http", target=raw, status=status, attempt_timeout=attempt)
        if kind == "log":
            self.expect(f"{key}.log", raw, (str,), "a regular expression")
            try:
                re.compile(raw)
            except re.error as exc:
                self.fail(f"{key}.log", f"not a valid regular expression: {exc}")
            return ReadyCheck("log", target=raw, attempt_timeout=attempt)
        shell = bool(
            self.expect(f"{key}.shell", value.get("shell", False), (bool,), "true or false")
        )
        if isinstance(raw, str):
            return ReadyCheck("command", argv=(raw,), shell=True, attempt_timeout=attempt)
        argv = self.str_list(f"{key}.command", raw)
        if not argv:
            self.fail(f"{key}.command", "command is empty")
        return ReadyCheck("command", argv=argv, shell=shell, attempt_timeout=attempt)

    def depends_on(
        self, key: str, value: Any, kinds: dict[str, str], me: str, healthful: set[str]
    ) -> tuple[Dependency, ...]:
        dkey = f"{key}.depends_on"
        if isinstance(value, list):
            items = {
                self.expect(f"{dkey}[{i}]", v, (str,), "a service name"): None
                for i, v in enumerate(value)
            }
        else:
            items = self.expect(dkey, value, (dict, list), "a list of services or a table")
        deps = []
        for dep, raw in items.items():
            cond, proxy, restart = raw, None, False
            if dep not in kinds:
                close = difflib.get_close_matches(dep, list(kinds), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"services: {', '.join(kinds)}"
                self.fail(f"{dkey}.{dep}", f"unknown service {dep!r}", hint)
            if dep == me:
                self.fail(f"{dkey}.{dep}", "a service cannot depend on itself")
            if isinstance(cond, dict):  # Compose style { condition = "service_healthy" }
                for option in cond:
                    if option not in ("condition", "proxy", "restart"):
                        self.unknown_key(
                            f"{dkey}.{dep}", option, {"condition", "proxy", "restart"}
                        )
                if "proxy" in cond:
                    proxy = self.expect(
                        f"{dkey}.{dep}.proxy", cond["proxy"], (bool,), "true or false"
                    )
                if "restart" in cond:
                    restart = self.expect(
                        f"{dkey}.{dep}.restart", cond["restart"], (bool,), "true or false"
                    )
                cond = cond.get("condition")
            if cond is None:
                condition = None
            else:
                self.expect(f"{dkey}.{dep}", cond, (str,), "a condition")
                name = cond.removeprefix("service_").replace("completed_successfully", "completed")
                try:
                    condition = Condition(name)
                except ValueError:
                    self.fail(
                        f"{dkey}.{dep}",
                        f"unknown condition {cond!r}",
                        "use 'started', 'healthy' or 'completed'",
                    )
            dependency = self.dependency(f"{dkey}.{dep}", dep, condition, kinds, healthful)
            deps.append(Dependency(dependency.service, dependency.condition, proxy, restart))
        return tuple(deps)

    def dependency(
        self,
        key: str,
        dep: str,
        condition: Condition | None,
        kinds: dict[str, str],
        healthful: set[str],
    ) -> Dependency:
        if condition is None:
            # Without a ready check "healthy" cannot be told apart from "started".
            return Dependency(dep, Condition.HEALTHY if dep in healthful else Condition.STARTED)
        if condition is Condition.HEALTHY and dep not in healthful:
            self.fail(
                key,
                f"{dep!r} has no ready check, so it can never be 'healthy'",
                f"add ready = {{ tcp = true }} (or http, log, command) to services.{dep},"
                " or use 'started'",
            )
        if condition is Condition.COMPLETED and kinds[dep] != "process":
            self.fail(
                key,
                f"{dep!r} is a {kinds[dep]} server; it never completes",
                "'completed' is for one-shot command services (migrations, seeding)",
            )
        return Dependency(dep, condition)

    def signal(self, key: str, value: Any) -> signal.Signals:
        self.expect(key, value, (str, int), "a signal name such as 'SIGTERM'")
        try:
            if isinstance(value, int):
                return signal.Signals(value)
            name = value.upper()
            return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
        except (KeyError, ValueError):
            self.fail(key, f"unknown signal {value!r}", "e.g. 'SIGTERM', 'SIGINT', 'SIGQUIT'")

    def check_references(self, key: str, spec: ServiceSpec, kinds: dict[str, str]) -> None:
        templated: list[tuple[str, str]] = []
        if spec.own_ready_check:
            templated += [(f"{key}.command[{i}]", arg) for i, arg in enumerate(spec.command)]
            if spec.cwd is not None:
                templated.append((f"{key}.cwd", spec.cwd))
            if spec.ready and spec.ready.kind in ("http", "tcp", "command"):
                templated += [(f"{key}.ready", spec.ready.target)]
                templated += [
                    (f"{key}.ready.command[{i}]", a) for i, a in enumerate(spec.ready.argv)
                ]
        templated += [(f"{key}.env.{var}", value) for var, value in spec.env.items()]
        for listed in ("args", "volumes"):
            items = spec.options.get(listed) or []
            templated += [(f"{key}.{listed}[{i}]", str(a)) for i, a in enumerate(items)]
        for table in ("settings", "addresses"):
            values = spec.options.get(table) or {}
            templated += [(f"{key}.{table}.{k}", v) for k, v in values.items() if type(v) is str]
        for where, text in templated:
            try:
                refs = references(text)
            except TemplateSyntaxError as exc:
                self.fail(where, str(exc))
            for ref in refs:
                target = ref.service or spec.name
                if target not in kinds:
                    close = difflib.get_close_matches(target, list(kinds), n=1)
                    hint = (
                        f"did you mean {close[0]!r}?" if close else f"services: {', '.join(kinds)}"
                    )
                    self.fail(where, f"{ref} refers to unknown service {target!r}", hint)
                known = schema.FIELDS[kinds[target]]
                if ref.field not in known:
                    self.fail(
                        where,
                        f"{ref}: service {target!r} ({kinds[target]}) has no field {ref.field!r}",
                        f"fields: {', '.join(sorted(known))}",
                    )

    def check_graph(self, services: dict[str, ServiceSpec]) -> None:
        graph = {name: [d.service for d in spec.depends_on] for name, spec in services.items()}
        cycle = _find_cycle(graph)
        if cycle:
            self.fail(
                f"services.{cycle[0]}.depends_on",
                "dependency cycle: " + " -> ".join(cycle),
                "remove one of these depends_on entries",
            )


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A dependency cycle (``[a, b, a]``), or None. Iterative: a chain of thousands of
    services is as deep as it is long."""
    done: set[str] = set()
    for root in graph:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        todo = [iter(graph[root])]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                done.add(node := path.pop())
                on_path.discard(node)
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                todo.append(iter(graph[nxt]))
    return None
