"""A docker-compose file -> the same stack model as ``stack.toml``, run without Docker.

The compose file is translated into a stack-file table and validated by the same code
(``parse_stack``), so every rule and error of ``stack.toml`` holds. What it maps:

- images stacktest runs itself: ``postgres`` (``POSTGRES_USER`` / ``_PASSWORD`` / ``_DB``,
  ``*.sql`` files mounted into ``/docker-entrypoint-initdb.d`` become ``init``),
  ``redis`` / ``valkey`` (``--requirepass``, ``--appendonly yes``), ``nats`` (``-js``);
- your own services (``build:`` or any other image) run as local processes: they need an
  ``x-stacktest`` block with at least ``command`` (any ``stack.toml`` service key may go
  there); ``x-stacktest: { skip: true }`` leaves a service out;
- ``environment`` (mapping or list, ``.env`` and ``${VAR:-default}`` interpolation as
  Compose does), where ``SERVICE:PORT`` (PORT the service's container port) becomes that
  service's loopback address, ``*_HOST: SERVICE`` its host and the matching ``*_PORT`` its
  port, and a value equal to the service's own container port becomes ``{port}``;
- ``depends_on`` (list or mapping with Compose's conditions), ``healthcheck`` of your own
  services (``CMD`` / ``CMD-SHELL``, ``localhost:PORT`` rewritten), ``restart``,
  ``deploy.replicas``, ``profiles`` (services with a profile are left out, as
  ``docker compose up`` does), and a top-level ``x-stacktest`` as the ``[stack]`` table.

Container-only keys (volumes other than the init scripts, networks, ports' host side,
labels, logging...) have no meaning for local processes and are ignored.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from stacktest.errors import ConfigError

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

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
_RESTART = {"no": "no", "on-failure": "on-failure", "always": "on-failure",
            "unless-stopped": "on-failure"}  # fmt: skip
_INTERPOLATION = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def is_compose_file(path: Path) -> bool:
    return path.name in COMPOSE_NAMES or path.suffix in (".yaml", ".yml")


def load_compose(path: Path) -> Any:
    """Read a compose file and translate it; the result goes to ``parse_stack``."""
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc}", file=path, line=line) from None
    return _Translator(path, text).stack(data)


class _Translator:
    def __init__(self, source: Path, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        self.dotenv = _read_dotenv(source.parent / ".env")
        self.left_out: set[str] = set()

    # -- errors ---------------------------------------------------------------------------
    def fail(self, key: str, problem: str, hint: str | None = None) -> NoReturn:
        raise ConfigError(problem, file=self.source, key=key, line=self._line(key), hint=hint)

    def _line(self, key: str) -> int | None:
        """The line of the key path's last part (after its parents, when they are found)."""
        start = 0
        found = None
        for part in key.split("."):
            pattern = re.compile(rf"^\s*-?\s*[\"']?{re.escape(part)}[\"']?\s*:")
            for number in range(start, len(self.lines)):
                if pattern.match(self.lines[number]):
                    found, start = number + 1, number + 1
                    break
        return found

    # -- the file -------------------------------------------------------------------------
    def stack(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
            self.fail("services", "a compose file needs a `services:` mapping")
        meta = dict(data.get("x-stacktest") or {})
        if "name" in data and "name" not in meta:
            meta["name"] = str(data["name"])
        services: dict[str, Any] = data["services"]
        kept = {
            name: body or {}
            for name, body in services.items()
            if not (body or {}).get("profiles") and not _ext(body).get("skip")
        }
        self.left_out = set(services) - set(kept)
        ports = {name: self.container_port(name, body) for name, body in kept.items()}
        out = {name: self.service(name, body, ports) for name, body in kept.items()}
        self.refer_to_passwords(out)
        if not out:
            self.fail("services", "every service was left out (profiles or x-stacktest.skip)")
        return {"stack": meta, "services": out}

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
        if image is not None and "command" not in ext:
            table = self.provider(key, image[0], body, env)
        else:
            if "command" not in ext and "use" not in ext:
                what = f"image {body['image']!r}" if body.get("image") else "a `build:` service"
                self.fail(
                    key,
                    f"{what} has no local equivalent stacktest can run",
                    "add `x-stacktest: { command: [...] }` (how to run it as a local process; "
                    "any stack.toml key may go there), or `x-stacktest: { skip: true }`",
                )
            table = {"env": self.rewrite_env(env, ports, own=ports.get(name))}
            build = body.get("build")
            context = build.get("context") if isinstance(build, dict) else build
            if isinstance(context, str) and "cwd" not in ext:
                table["cwd"] = context
            health = self.healthcheck(key, body.get("healthcheck"), ports.get(name))
            if health is not None and "ready" not in ext:
                table["ready"] = health
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

    # -- pieces ---------------------------------------------------------------------------
    def environment(self, key: str, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if isinstance(value, list):
            pairs = {}
            for item in value:
                var, sep, val = str(item).partition("=")
                if not sep:  # `- VAR`: passed through from the environment when it is set
                    found = os.environ.get(var, self.dotenv.get(var))
                    if found is None:
                        continue
                    val = found.replace("$", "$$")  # a value, not to be interpolated again
                pairs[var] = val
            value = pairs
        if not isinstance(value, dict):
            self.fail(f"{key}.environment", "environment must be a mapping or a list")
        out = {}
        for var, val in value.items():
            text = "" if val is None else ("true" if val is True else "false" if val is False
                                           else str(val))  # fmt: skip
            out[str(var)] = self.interpolate(f"{key}.environment.{var}", text)
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
            for var, raw in _read_dotenv(file).items():
                out[var] = self.interpolate(f"{key}.env_file", raw)
        return out

    def interpolate(self, key: str, text: str) -> str:
        """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``."""

        def one(match: re.Match[str]) -> str:
            if match["dollar"]:
                return "$"
            var = match["braced"] or match["bare"]
            value = os.environ.get(var, self.dotenv.get(var))
            op, arg = match["op"], match["arg"] or ""
            unset = value is None or (op is not None and op.startswith(":") and value == "")
            if op in ("-", ":-"):
                return arg if unset else str(value)
            if op in ("?", ":?") and unset:
                self.fail(key, f"${{{var}}} is not set: {arg or 'required'}",
                          f"set {var} in the environment or in .env")  # fmt: skip
            if value is None:
                self.fail(
                    key,
                    f"${{{var}}} is not set (Compose would use an empty string)",
                    f"set {var} in the environment or in .env, or write ${{{var}:-default}}",
                )
            return str(value)

        return _INTERPOLATION.sub(one, text)

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
            ready["timeout"] = check["timeout"]
        return ready

    def depends_on(self, key: str, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        if isinstance(value, dict):
            out = {}
            for name, spec in value.items():
                condition = (spec or {}).get("condition") if isinstance(spec, dict) else spec
                out[str(name)] = condition or "service_started"
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


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        var, _, value = line.removeprefix("export ").partition("=")
        values[var.strip()] = value.strip().strip("'\"")
    return values
