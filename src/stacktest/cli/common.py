"""What every command shares: the --file option, exit codes, output, loading the stack
file and finding its running state, the status table. An error ends the command here,
as one message on stderr naming what is wrong and a hint, never a traceback."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from stacktest.redact import redact

if TYPE_CHECKING:
    from stacktest.engine.rundir import RunDir
    from stacktest.spec.model import StackSpec

F = TypeVar("F", bound=Callable[..., Any])

FileOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--file",
        "-f",
        envvar="STACKTEST_FILE",
        help="Stack file (default: ./stack.toml, else the compose file beside it); "
        "repeat for compose files merged in order: -f compose.yml -f compose.test.yml.",
    ),
]
DEFAULT_FILE: list[Path] | None = None
ProfileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--profile",
        help="Compose profile to activate (repeatable; default: $COMPOSE_PROFILES).",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Compose files: an unset variable, or anything not honoured as written, is an "
        "error instead of a warning.",
    ),
]
RemapOpt = Annotated[
    bool,
    typer.Option(
        "--remap-ports",
        help="Move every pinned port (`port`, a compose file's published ports) to a free "
        "one; the mapping is printed and in `status` and `env`.",
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="'container': run the built-in servers that can (nats, valkey, redis) from their "
        "images in a container engine (docs/containers.md); 'native' (the default): local "
        "binaries. A service's own `backend` wins.",
    ),
]
EnvFileOpt = Annotated[
    list[Path] | None,
    typer.Option("--env-file", help="Compose files: variables from this file instead of ./.env."),
]

EXIT_ERROR = 1
EXIT_USAGE = 2



#: Output that is not a terminal (a CI log, a pipe) is not wrapped at 80 columns:
#: paths and messages stay whole, for people and for grep.
UNWRAPPED_WIDTH = 1000


def new_console(stderr: bool = False) -> Any:
    """A rich console; when the output is not a terminal (and COLUMNS is not set), wide
    and without soft wrapping, so nothing is cut or split."""
    import os

    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, highlight=False, width=UNWRAPPED_WIDTH, soft_wrap=True)
    return console


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    new_console(stderr=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def load_spec(
    file: list[Path] | None,
    *,
    profiles: list[str] | None = None,
    strict: bool = False,
    env_files: list[Path] | None = None,
    remap_ports: bool = False,
    backend: str | None = None,
) -> StackSpec:
    import os
    from dataclasses import replace

    from stacktest.errors import ConfigError
    from stacktest.spec.load import load_stack

    if backend is not None:  # (read by the parser; `up -d`'s runner inherits it)
        os.environ["STACKTEST_BACKEND"] = backend
    try:
        spec = load_stack(
            [str(f) for f in file or []], profiles=profiles or None, strict=strict,
            env_files=env_files or (),
        )  # fmt: skip
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    notes = server_notes(spec)
    if notes and strict:
        fail("--strict: a server that would run is not the one asked for:\n  "
             + "\n  ".join(notes), EXIT_USAGE)  # fmt: skip
    spec = replace(spec, warnings=(*spec.warnings, *notes))
    return replace(spec, remap_ports=True) if remap_ports else spec


def server_notes(spec: StackSpec) -> list[str]:
    """Per built-in service, what the server that would run is, when it is not the one
    asked for (an image tag's version, Redis rather than Valkey): said before the start."""
    from stacktest.providers import provider_for

    notes = []
    for name, service in spec.services.items():
        if not service.is_process and service.backend == "native":
            note = provider_for(service.use).server_note(service)
            if note:
                notes.append(f"services.{name}: {note}")
    return notes


def show_remapped(spec: StackSpec, state: dict[str, Any], console: Any) -> None:
    """Where each pinned port went, when the ports were remapped."""
    if not spec.remap_ports:
        return
    for name, service in spec.services.items():
        info = state.get("instances", {}).get(name)
        if service.port is not None and info:
            console.print(f"{name}: port {service.port} remapped to 127.0.0.1:{info.get('port')}")


def show_warnings(spec: StackSpec, console: Any) -> None:
    """What a compose file asked for that is not honoured, once, before anything runs."""
    if spec.warnings:
        console.print(f"[yellow]warning:[/] {len(spec.warnings)} thing(s) in {spec.source.name} "
                      "not honoured as written (`stacktest config` lists them):")  # fmt: skip
        for warning in spec.warnings:
            console.print(f"  - {escape(warning)}", soft_wrap=True)  # paths stay whole


def run_dir_for(file: list[Path] | None) -> RunDir:
    from stacktest.engine.rundir import RunDir

    # every profile active: where the run directory is does not depend on them
    return RunDir(load_spec(file, profiles=["*"]).run_dir)


def running_state(file: list[Path] | None) -> dict[str, Any]:
    from stacktest.errors import StackNotRunning

    try:
        return run_dir_for(file).running_state()
    except StackNotRunning as exc:
        fail(str(exc))


def uptime(started: float | None) -> str:
    if not started:
        return "-"
    seconds = int(time.time() - started)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def status_table(state: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"stack {state.get('stack')} ({state.get('state')})", title_justify="left")
    for column in ("service", "state", "pid", "address", "server", "uptime", "restarts"):
        table.add_column(column)
    colors = {"ready": "green", "running": "green", "completed": "cyan", "starting": "yellow"}
    for name, info in state.get("instances", {}).items():
        st = info.get("state", "?")
        color = colors.get(st, "red" if st.startswith(("exited", "failed")) else "white")
        table.add_row(
            name,
            f"[{color}]{st}[/]",
            str(info.get("pid") or "-"),
            escape(redact(info.get("fields", {}).get("url", ""))),
            escape(info.get("server") or "-"),
            uptime(info.get("started_at")),
            str(info.get("restarts", 0)),
        )
    return table


def find_instance(state: dict[str, Any], service: str) -> dict[str, Any]:
    instances: dict[str, Any] = state.get("instances", {})
    if service in instances:
        return dict(instances[service])
    for info in instances.values():
        if info.get("service") == service:
            return dict(info)
    fail(f"no service {service!r} in this stack (services: {', '.join(instances)})")


class Commands:
    """The commands one module defines, with typer's decorator; ``cli/__init__`` adds
    them to the app (so no command module imports the app, nor the app's package)."""

    def __init__(self) -> None:
        self._commands: list[tuple[tuple[Any, ...], dict[str, Any], Callable[..., Any]]] = []

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        def add(fn: F) -> F:
            self._commands.append((args, kwargs, fn))
            return fn

        return add

    def register(self, app: typer.Typer) -> None:
        for args, kwargs, fn in self._commands:
            app.command(*args, **kwargs)(fn)
