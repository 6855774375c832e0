"""The shape of a compose file, checked before anything reads it: every key Compose
defines holds the kind of value the Compose specification gives it (a list, a mapping, a
string...), each service is a mapping under a name. A value of the wrong kind is one
:class:`ConfigError` naming the file, the key path and its line, and what was expected,
instead of a crash deep in the translation.

Only the kinds are checked here; what the values mean is the translation's
(:mod:`.translate`) and the stack validator's (``spec/parse.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stacktest.errors import ConfigError

SCALAR = (str, int, float, bool)
#: Compose's service names (the specification's pattern).
SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")

Check = Callable[[Any], str | None]  # None: fine; else what was expected


def kinds(*types: type | None, what: str) -> Check:
    allowed = tuple(type(None) if t is None else t for t in types)

    def check(value: Any) -> str | None:
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        return None if ok else what

    return check


def list_of(item: tuple[type, ...], what: str, *, single: tuple[type, ...] = ()) -> Check:
    """A list whose items are ``item`` (or one value of ``single``)."""

    def check(value: Any) -> str | None:
        if value is None or (single and isinstance(value, single)):
            return None
        if isinstance(value, list) and all(isinstance(v, item) for v in value):
            return None
        return what

    return check


def mapping_or_list(values: tuple[type, ...], what: str) -> Check:
    """``{KEY: value}`` or ``[KEY=value, ...]``: keys strings, values of ``values``."""

    def check(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, dict):
            ok = all(isinstance(k, str) and (v is None or isinstance(v, values))
                     for k, v in value.items())  # fmt: skip
            return None if ok else what
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return None
        return what

    return check


STRING = kinds(str, None, what="a string")
COMMAND = list_of(SCALAR, 'a string or a list of strings (["a", "b"])', single=(str,))
MAPPING = kinds(dict, None, what="a mapping (key: value)")
SERVICE: dict[str, Check] = {
    "image": STRING,
    "command": COMMAND,
    "entrypoint": COMMAND,
    "build": kinds(str, dict, None, what="a path, or a mapping (context: ...)"),
    "environment": mapping_or_list(SCALAR, "a mapping (KEY: value) or a list of KEY=value"),
    "labels": mapping_or_list(SCALAR, "a mapping or a list of key=value"),
    "env_file": list_of((str, dict), "a path, or a list of paths", single=(str,)),
    "depends_on": kinds(list, dict, None, what="a list of service names, or a mapping of them"),
    "ports": list_of((str, int, dict), 'a list ("8080:80", 5432, or mappings)'),
    "expose": list_of((str, int), 'a list of ports ("8000", 9000)'),
    "volumes": list_of((str, dict), 'a list ("./data:/data", or mappings)'),
    "tmpfs": list_of((str,), "a path, or a list of paths", single=(str,)),
    "healthcheck": MAPPING,
    "deploy": MAPPING,
    "profiles": list_of((str,), "a list of profile names"),
    "restart": STRING,
    "stop_signal": STRING,
    "stop_grace_period": kinds(str, int, float, None, what='a duration ("10s")'),
    "scale": kinds(int, None, what="a whole number"),
    "extends": kinds(str, dict, None, what="a service name, or a mapping (service: ...)"),
    "networks": kinds(list, dict, None, what="a list or a mapping of networks"),
    "x-stacktest": MAPPING,
}
TOP: dict[str, Check] = {
    "version": kinds(str, int, float, None, what="a string"),
    "name": STRING,
    "services": MAPPING,
    "networks": MAPPING,
    "volumes": MAPPING,
    "secrets": MAPPING,
    "configs": MAPPING,
    "include": list_of((str, dict), "a path, or a list of paths or mappings", single=(str,)),
}
NESTED: dict[str, dict[str, Check]] = {
    "build": {"context": STRING, "dockerfile": STRING, "target": STRING,
              "args": mapping_or_list(SCALAR, "a mapping or a list of NAME=value")},
    "healthcheck": {"test": COMMAND, "disable": kinds(bool, None, what="true or false"),
                    "retries": kinds(int, None, what="a whole number")},
    "deploy": {"replicas": kinds(int, None, what="a whole number"),
               "resources": MAPPING, "restart_policy": MAPPING},
    "extends": {"service": STRING, "file": STRING},
}  # fmt: skip


def describe(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "nothing"}  # fmt: skip
    kind = names.get(type(value), "a value")
    shown = repr(value)
    return f"{kind} ({shown[:40]}{'...' if len(shown) > 40 else ''})"


def check_document(
    data: dict[Any, Any], path: Path, line_of: Callable[[str], int | None]
) -> None:
    """Raise one ConfigError for the first value of the wrong kind in a compose file
    (``line_of``: a key path's line in it)."""

    def fail(key: str, expected: str, value: Any) -> None:
        raise ConfigError(f"expected {expected}, got {describe(value)}", file=path, key=key,
                          line=line_of(key))  # fmt: skip

    for key, value in data.items():
        if not isinstance(key, str):
            fail(str(key), "a string as the key", key)
        check = TOP.get(key)
        if check is not None and (expected := check(value)):
            fail(key, expected, value)
    for name, body in (data.get("services") or {}).items():
        if not isinstance(name, str) or not SERVICE_NAME.match(name):
            raise ConfigError(
                f"service name {name!r}: a name is letters, digits, and . _ - after the first",
                file=path, key="services", line=line_of("services"),
                hint="quote nothing, rename the service (Compose refuses it too)",
            )  # fmt: skip
        if body is None:
            continue
        if not isinstance(body, dict):
            fail(f"services.{name}", "a mapping (image: ..., command: ...)", body)
        for key, value in body.items():
            where = f"services.{name}.{key}"
            if not isinstance(key, str):
                fail(f"services.{name}", "string keys", key)
            check = SERVICE.get(key)
            if check is not None and (expected := check(value)):
                fail(where, expected, value)
            if isinstance(value, dict):
                for inner, inner_value in value.items():
                    if not isinstance(inner, str):
                        fail(where, "string keys", inner)
                    check = NESTED.get(key, {}).get(inner)
                    if check is not None and (expected := check(inner_value)):
                        fail(f"{where}.{inner}", expected, inner_value)
        depends = body.get("depends_on")
        if isinstance(depends, list) and not all(isinstance(d, str) for d in depends):
            fail(f"services.{name}.depends_on", "a list of service names", depends)
        if isinstance(depends, dict):
            for other, condition in depends.items():
                if condition is not None and not isinstance(condition, dict):
                    fail(f"services.{name}.depends_on.{other}",
                         "a mapping (condition: service_healthy)", condition)  # fmt: skip
