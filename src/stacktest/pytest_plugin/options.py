"""The plugin's settings: each from the command line, else the environment, else the ini file.

Every value remembers where it came from, so a bad one is reported as, say,
``STACKTEST_ATTACH (environment): 'maybe' is not true or false``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Option:
    flag: str
    ini: str
    env: str
    kind: str  # "path" | "bool" | "int"
    help: str
    default: Any = None


OPTIONS = {
    "file": Option(
        "--stack",
        "stack_file",
        "STACKTEST_FILE",
        "path",
        "the stack file the tests run against (default: stack.toml at the rootdir); compose "
        "files merged in order are written a.yml:b.yml",
    ),
    "profiles": Option(
        "--stack-profile",
        "stack_profiles",
        "STACKTEST_PROFILES",
        "str",
        "compose profiles to activate, comma-separated (default: COMPOSE_PROFILES)",
    ),
    "backend": Option(
        "--stack-backend",
        "stack_backend",
        "STACKTEST_BACKEND",
        "str",
        "'container': the built-in servers that can (nats, valkey, redis) run from their "
        "images in a container engine; 'native' (default): local binaries",
    ),
    "attach": Option(
        "--stack-attach",
        "stack_attach",
        "STACKTEST_ATTACH",
        "bool",
        "use the stack already running from the stack file (`stacktest up -d`) instead of "
        "starting one; every xdist worker shares it",
        False,
    ),
    "keep": Option(
        "--stack-keep",
        "stack_keep",
        "STACKTEST_KEEP",
        "bool",
        "leave the stack running after the session (as if `stacktest up -d`), and reuse it "
        "next time while the stack file is unchanged",
        False,
    ),
    "skip_if_unavailable": Option(
        "--stack-skip-if-unavailable",
        "stack_skip_if_unavailable",
        "STACKTEST_SKIP_IF_UNAVAILABLE",
        "bool",
        "SKIP (instead of ERROR) the tests that need the stack when it cannot start",
        False,
    ),
    "log_lines": Option(
        "--stack-log-lines",
        "stack_log_lines",
        "STACKTEST_LOG_LINES",
        "int",
        "at most this many log lines per service in a failed test's report (0: none)",
        100,
    ),
}


@dataclass(frozen=True)
class Settings:
    file: Path
    file_source: str
    attach: bool
    keep: bool
    skip_if_unavailable: bool
    log_lines: int
    sources: dict[str, str]
    #: Compose profiles (None: COMPOSE_PROFILES decides).
    profiles: tuple[str, ...] | None = None
    #: "native" or "container" for the built-in servers (None: the stack file decides).
    backend: str | None = None


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("stacktest", "stacktest: a real stack for the tests")
    for name, option in OPTIONS.items():
        where = f"[env {option.env}, ini {option.ini}]"
        if option.kind == "bool":
            group.addoption(
                option.flag,
                action="store_true",
                default=None,
                dest=f"stacktest_{name}",
                help=f"{option.help} {where}",
            )
        else:
            group.addoption(
                option.flag,
                default=None,
                dest=f"stacktest_{name}",
                metavar="FILE" if option.kind == "path" else "N",
                help=f"{option.help} {where}",
            )
        parser.addini(option.ini, f"stacktest: {option.help}", default="")


def _raw(config: pytest.Config, name: str) -> tuple[Any, str] | None:
    """The first value given for an option and where it came from, or None."""
    option = OPTIONS[name]
    value = config.getoption(f"stacktest_{name}")
    if value is not None:
        return value, f"{option.flag} (command line)"
    if os.environ.get(option.env, "") != "":
        return os.environ[option.env], f"{option.env} (environment)"
    ini = config.getini(option.ini)
    if ini not in ("", None):
        where = config.inipath or "the ini file"
        return ini, f"{option.ini} ({where})"
    return None


def _bool(value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise pytest.UsageError(
        f"stacktest: {source}: {value!r} is not true or false (use 1/0, true/false, yes/no)"
    )


def _int(value: Any, source: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if number < 0:
        raise pytest.UsageError(f"stacktest: {source}: {value!r} is not a whole number >= 0")
    return number


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def resolve(config: pytest.Config) -> Settings:
    """Read every option (command line > environment > ini); UsageError on a bad value."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, option in OPTIONS.items():
        found = _raw(config, name)
        if found is None:
            values[name], sources[name] = option.default, "default"
            continue
        value, source = found
        sources[name] = source
        if option.kind == "bool":
            values[name] = _bool(value, source)
        elif option.kind == "int":
            values[name] = _int(value, source)
        else:
            values[name] = value
    file = values["file"]
    source = sources["file"]
    if file is None:
        path = config.rootpath / "stack.toml"
        source = f"the default, stack.toml at the rootdir {config.rootpath}"
    else:
        base = (
            config.inipath.parent
            if source.startswith(OPTIONS["file"].ini) and config.inipath
            else config.invocation_params.dir
        )
        parts = [Path(p).expanduser() for p in str(file).split(os.pathsep) if p]
        path = Path(os.pathsep.join(str(p if p.is_absolute() else base / p) for p in parts))
    profiles = values["profiles"]
    return Settings(
        file=path,
        file_source=source,
        attach=values["attach"],
        keep=values["keep"],
        skip_if_unavailable=values["skip_if_unavailable"],
        log_lines=values["log_lines"],
        sources=sources,
        profiles=None if profiles is None else _names(str(profiles)),
        backend=_backend(values["backend"], sources["backend"]),
    )


def _backend(value: Any, source: str) -> str | None:
    if value is None:
        return None
    if str(value) not in ("native", "container"):
        raise pytest.UsageError(f"stacktest: {source}: backend is 'native' or 'container', "
                                f"not {value!r}")  # fmt: skip
    return str(value)
