"""The provider-specific keys of a service table (``databases``, ``settings``,
``initdb`` ...): types from :data:`schema.OPTIONS`, then each key's own rules; paths are
resolved against the stack file and must exist."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol

from stacktest.spec import schema

#: PostgreSQL's host authentication methods (``POSTGRES_HOST_AUTH_METHOD``).
HOST_AUTH_METHODS = ("scram-sha-256", "md5", "password", "trust")
#: Server settings that name a file on this machine.
FILE_SETTINGS = frozenset({"config_file", "hba_file", "ident_file"})
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


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
            value = (
                [value] if isinstance(value, str) else list(parser.str_list(f"{key}.init", value))
            )
            resolved = []
            for i, item in enumerate(value):
                path = Path(item)
                if not path.is_absolute():
                    path = parser.source.parent / path
                if not path.is_file():
                    parser.fail(
                        f"{key}.init[{i}]",
                        f"SQL file {item!r} not found (looked at {path})",
                        "paths in `init` are relative to the stack file",
                    )
                resolved.append(str(path))
            value = resolved
        elif option == "version":
            value = str(value)
            if not re.fullmatch(r"\d+(\.\d+)*", value) or isinstance(table[option], bool):
                parser.fail(f"{key}.version", f"{value!r} is not a version",
                            'write the major version ("16") or more ("7.2")')  # fmt: skip
        elif option == "config":
            value = existing_file(parser, f"{key}.config", value)
        elif option in ("conf_d", "root"):
            value = existing_paths(parser, f"{key}.{option}", value)
            value = value[0] if option == "root" else value
        elif option == "initdb":
            value = initdb_paths(parser, key, value)
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


def initdb_paths(parser: Parser, key: str, value: Any) -> list[str]:
    """``initdb``: files or directories (their files in name order, as the image reads
    /docker-entrypoint-initdb.d), relative to the stack file."""
    items = [value] if isinstance(value, str) else list(parser.str_list(f"{key}.initdb", value))
    resolved = []
    for i, item in enumerate(items):
        path = Path(item)
        if not path.is_absolute():
            path = parser.source.parent / path
        if not path.exists():
            parser.fail(
                f"{key}.initdb[{i}]",
                f"init script or directory {item!r} not found (looked at {path})",
                "paths in `initdb` are relative to the stack file",
            )
        resolved.append(str(path))
    return resolved


def existing_file(parser: Parser, key: str, value: str) -> str:
    """A path to a file that exists; a relative one is relative to the stack file."""
    path = Path(value)
    if not path.is_absolute():
        path = parser.source.parent / path
    if not path.is_file():
        parser.fail(key, f"no such file: {path}",
                    "point it at a file on this machine (relative to the stack file)")  # fmt: skip
    return str(path)


def existing_paths(parser: Parser, key: str, value: Any) -> list[str]:
    """Files or directories that exist; relative ones are relative to the stack file."""
    items = [value] if isinstance(value, str) else list(parser.str_list(key, value))
    out = []
    for item in items:
        path = Path(item) if Path(item).is_absolute() else parser.source.parent / item
        if not path.exists():
            parser.fail(key, f"no such file or directory: {path}",
                        "paths are relative to the stack file")  # fmt: skip
        out.append(str(path))
    return out


def setting_files(parser: Parser, key: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A server setting that names a file (``config_file``, ``hba_file``...) must name
    one that exists; a relative path is relative to the stack file."""
    out = dict(settings)
    for name in FILE_SETTINGS & set(settings):
        out[name] = existing_file(parser, f"{key}.settings.{name}", str(settings[name]))
    return out
