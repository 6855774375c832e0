"""The provider-specific keys of a service table (``databases``, ``settings``,
``initdb`` ...): types from :data:`schema.OPTIONS`, then each key's own rules; paths are
resolved against the stack file and must exist."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol

from stacktest.spec import schema
from stacktest.spec.model import TOXIPROXY_PORT

#: PostgreSQL's host authentication methods (``POSTGRES_HOST_AUTH_METHOD``).
HOST_AUTH_METHODS = ("scram-sha-256", "md5", "password", "trust")
#: Server settings that name a file on this machine.
FILE_SETTINGS = frozenset({"config_file", "hba_file", "ident_file"})
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


class Parser(Protocol):
    source: Path

    def fail(self, key: str, problem: str, hint: str | None = None) -> NoReturn: ...

    def expect(self, key: str, value: Any, types: tuple[type, ...], what: str) -> Any: ...

    def str_list(self, key: str, value: Any) -> tuple[str, ...]: ...


def provider_options(
    parser: Parser, key: str, kind: str, table: Mapping[str, Any]
) -> dict[str, Any]:
    """The provider-specific keys of a service table (``schema.OPTIONS``), checked."""
    options: dict[str, Any] = {}
    for option, (types, what) in schema.OPTIONS[kind].items():
        if option not in table:
            continue
        value = parser.expect(f"{key}.{option}", table[option], types, what)
        if option in ("databases", "args", "initdb_args", "plugins"):
            value = list(parser.str_list(f"{key}.{option}", value))
        if option == "databases":
            for i, db in enumerate(value):
                if not _NAME.match(db):
                    parser.fail(f"{key}.databases[{i}]", f"bad database name {db!r}")
        elif option == "init":
            value = resolve_paths(parser, key, option, value, what="SQL file", files_only=True)
        elif option == "version":
            value = str(value)
            if not re.fullmatch(r"\d+(\.\d+)*", value) or isinstance(table[option], bool):
                parser.fail(f"{key}.version", f"{value!r} is not a version",
                            'write the major version ("16") or more ("7.2")')  # fmt: skip
        elif option == "config":
            value = resolve_paths(parser, key, option, value, what="file", files_only=True)[0]
        elif option == "mounts":  # container path -> a path here, relative to the stack file
            value = {
                str(target): str(Path(str(host)) if Path(str(host)).is_absolute()
                                 else parser.source.parent / str(host))
                for target, host in value.items()
            }  # fmt: skip
        elif option in ("conf_d", "root", "initdb", "templates"):
            value = resolve_paths(parser, key, option, value, what="file or directory")
            value = value[0] if option == "root" else value
        elif option == "host_auth_method" and value not in HOST_AUTH_METHODS:
            parser.fail(f"{key}.host_auth_method", f"unknown method {value!r}",
                      f"use one of {', '.join(HOST_AUTH_METHODS)}")  # fmt: skip
        elif option == "tmpfs" and value not in (True, False, "auto"):
            parser.fail(f"{key}.tmpfs", f'expected true, false or "auto", got {value!r}')
        elif option == "settings":
            for setting, item in value.items():
                parser.expect(f"{key}.settings.{setting}", item, (str, int, float, bool), "a value")
            value = setting_files(parser, key, value)
        options[option] = value
    return options


def resolve_paths(
    parser: Parser, key: str, option: str, value: Any, *, what: str, files_only: bool = False
) -> list[str]:
    """Paths (one, or a list) that exist, relative to the stack file; absolute after."""
    items = [value] if isinstance(value, str) else list(parser.str_list(f"{key}.{option}", value))
    resolved = []
    for i, item in enumerate(items):
        path = Path(item) if Path(item).is_absolute() else parser.source.parent / item
        if not (path.is_file() if files_only else path.exists()):
            where = f"{key}.{option}" if isinstance(value, str) else f"{key}.{option}[{i}]"
            parser.fail(where, f"{what} {item!r} not found (looked at {path})",
                        f"paths in `{option}` are relative to the stack file")  # fmt: skip
        resolved.append(str(path))
    return resolved


def setting_files(parser: Parser, key: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A server setting that names a file (``config_file``, ``hba_file``...) must name
    one that exists; a relative path is relative to the stack file."""
    out = dict(settings)
    for name in FILE_SETTINGS & set(settings):
        found = resolve_paths(parser, f"{key}.settings", name, str(settings[name]), what="file",
                              files_only=True)  # fmt: skip
        out[name] = found[0]
    return out


def container_fields(parser: Parser, key: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """A container service's ``image``/``build``, ``command`` and ``replicas``, checked:
    the ServiceSpec fields (``options`` holds image, build and the rest)."""
    options = provider_options(parser, key, "container", table)
    if "image" in table:
        options["image"] = parser.expect(f"{key}.image", table["image"], (str,), "an image name")
        if not options["image"].strip():
            parser.fail(f"{key}.image", "the image name is empty", 'e.g. image = "redis:7"')
    if "build" in options:
        build = options["build"]
        build = {"context": build} if isinstance(build, str) else dict(build)
        for name in build:
            if name not in schema.BUILD_KEYS:
                parser.fail(f"{key}.build.{name}", "unknown key",
                            f"allowed: {', '.join(sorted(schema.BUILD_KEYS))}")  # fmt: skip
        context = parser.expect(f"{key}.build.context", build.get("context", "."), (str,),
                                "a directory")  # fmt: skip
        build["context"] = resolve_paths(parser, f"{key}.build", "context", context,
                                         what="build context")[0]  # fmt: skip
        if not Path(build["context"]).is_dir():
            parser.fail(f"{key}.build.context", f"{context!r} is not a directory")
        dockerfile = parser.expect(f"{key}.build.dockerfile", build.get("dockerfile", "Dockerfile"),
                                   (str,), "a file in the context")  # fmt: skip
        if not (Path(build["context"]) / dockerfile).is_file():
            parser.fail(f"{key}.build.dockerfile", f"{dockerfile!r} not found in {context!r}",
                        "name a file relative to the build context")  # fmt: skip
        args = parser.expect(f"{key}.build.args", build.get("args", {}), (dict,), "a table")
        build["args"] = {str(k): str(v) for k, v in args.items()}
        build["dockerfile"] = dockerfile
        options["build"] = build
    if "volumes" in options:
        mounts = []
        for i, item in enumerate(parser.str_list(f"{key}.volumes", options["volumes"])):
            host, _, rest = item.partition(":")
            target, _, mode = rest.partition(":")
            if not host or not target.startswith("/") or mode not in ("", "ro", "rw"):
                example = '"./conf:/etc/app:ro" or "{run_dir}/volumes/data:/data"'
                parser.fail(f"{key}.volumes[{i}]", f"{item!r} is not HOST:CONTAINER[:ro]",
                            f"e.g. {example}")  # fmt: skip
            if not host.startswith(("/", "{")):
                host = str(parser.source.parent / host)
            mounts.append(f"{host}:{target}:{mode or 'rw'}")
        options["volumes"] = mounts
    if "entrypoint" in options:
        options["entrypoint"] = list(parser.str_list(f"{key}.entrypoint", options["entrypoint"]))
    fields: dict[str, Any] = {"options": options, "backend": "container"}
    if "command" in table:
        command = table["command"]
        if isinstance(command, str):  # as the engine reads it: split as a shell would
            command = shlex.split(command)
        fields["command"] = parser.str_list(f"{key}.command", command)
    replicas = parser.expect(f"{key}.replicas", table.get("replicas", 1), (int,), "an integer")
    if not 1 <= replicas <= 100:
        parser.fail(f"{key}.replicas", f"replicas must be 1 to 100, got {replicas}")
    fields["replicas"] = replicas
    return fields


def container_kind(parser: Parser, key: str, table: Mapping[str, Any]) -> bool:
    """Whether the service is a container (``image`` or ``build`` without ``use``); checks
    its ``backend``."""
    backend = table.get("backend")
    if backend is not None and backend not in ("native", "container"):
        parser.fail(f"{key}.backend", f"unknown backend {backend!r}", "'native' or 'container'")
    if table.get("use") is None and ("image" in table or "build" in table):
        if backend == "native":
            parser.fail(f"{key}.backend", "an `image`/`build` service is a container",
                        'drop backend = "native", or give `use` or `command`')  # fmt: skip
        return True
    if backend == "container" and table.get("use") is None:
        parser.fail(f"{key}.backend", "a command service cannot run as a container",
                    'give its image instead: image = "NAME:TAG" (and its command)')  # fmt: skip
    return False


def backend_of(
    parser: Parser, key: str, table: Mapping[str, Any], default: str | None,
    kind: str | None = None, notes: list[str] | None = None,
) -> str:  # fmt: skip
    """A built-in server's backend: its own ``backend``, else ``[stack] backend``, else
    ``STACKTEST_BACKEND`` (``--backend``), else native. A server that cannot run as a
    container yet: an error when its own table asks, a note when the default does."""
    import os

    own = table.get("backend")
    value = own or default or os.environ.get("STACKTEST_BACKEND") or "native"
    if value not in ("native", "container"):
        where = f"{key}.backend" if own or default else "STACKTEST_BACKEND (--backend)"
        parser.fail(where, f"unknown backend {value!r}", "'native' or 'container'")
    if value == "container" and kind is not None and kind not in schema.CONTAINER_KINDS:
        why = f"a {kind} server cannot run as a container yet"
        if own:
            kinds = ", ".join(schema.CONTAINER_KINDS)
            parser.fail(f"{key}.backend", why, f"drop it to run natively; as containers so "
                        f"far: {kinds} (docs/containers.md)")  # fmt: skip
        if notes is not None:
            notes.append(f"{key}.backend: {why}; it runs natively (docs/containers.md)")
        return "native"
    return str(value)


def default_toxiproxy_port(parser: Parser) -> int:
    """8474, or ``STACKTEST_TOXIPROXY_PORT`` (a suite of many stacks sets 0)."""
    import os

    raw = os.environ.get("STACKTEST_TOXIPROXY_PORT")
    if raw is None:
        return TOXIPROXY_PORT
    try:
        return int(raw)
    except ValueError:
        parser.fail(
            "stack.toxiproxy_port",
            f"STACKTEST_TOXIPROXY_PORT={raw!r} is not a port number",
            "set it to 0 (any free port) or a port from 1 to 65535",
        )
