"""``stacktest logs``: the services' output, prefixed per service, optionally followed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from stacktest.cli.common import DEFAULT_FILE, Commands, FileOpt, fail, run_dir_for
from stacktest.engine.rundir import log_tail

commands = Commands()
register = commands.register


@commands.command()
def logs(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    file: FileOpt = DEFAULT_FILE,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int, typer.Option("--tail", "-n", help="Lines per service to start with (0 = all).")
    ] = 100,
) -> None:
    """Print the services' output (stdout and stderr). `-f` is --follow, as in `docker
    compose logs -f`; the stack file is --file."""
    if service is not None and Path(service).suffix in (".toml", ".yaml", ".yml", ".json"):
        fail(
            f"{service!r} is a file name, not a service: `-f` here is --follow (as in "
            f"`docker compose logs -f`)\n  hint: stacktest logs --file {service} [-f]"
        )
    run_dir = run_dir_for(file)
    state = run_dir.read_state()
    if state is None:
        fail(f"no stack has run from {run_dir.path} yet\n  hint: `stacktest up -d` first")
    code = show_logs(state, service, follow=follow, tail=tail, alive=run_dir.owner_alive)
    raise typer.Exit(code)


COLORS = ["36", "35", "33", "32", "34", "31"]


def show_logs(
    state: dict[str, Any],
    service: str | None,
    *,
    follow: bool,
    tail: int,
    alive: Callable[[], bool],
) -> int:
    instances = state.get("instances", {})
    chosen = {
        name: Path(info["log"])
        for name, info in instances.items()
        if service is None or service in (name, info.get("service"))
    }
    if not chosen:
        print(
            f"error: no service {service!r} in this stack (services: {', '.join(instances)})",
            file=sys.stderr,
        )
        return 1
    width = max(len(n) for n in chosen)
    color = sys.stdout.isatty()
    prefixes = {}
    for i, name in enumerate(chosen):
        label = f"{name:<{width}} | " if len(chosen) > 1 else ""
        if color and label:
            label = f"\033[{COLORS[i % len(COLORS)]}m{label}\033[0m"
        prefixes[name] = label
    offsets = {}
    for name, path in chosen.items():
        lines = log_tail(path, tail) if tail > 0 else _all_lines(path)
        for line in lines:
            sys.stdout.write(f"{prefixes[name]}{line}\n")
        offsets[name] = path.stat().st_size if path.exists() else 0
    sys.stdout.flush()
    if not follow:
        return 0
    pending = dict.fromkeys(chosen, "")
    last_check = time.monotonic()
    while True:
        wrote = False
        for name, path in chosen.items():
            try:
                with open(path, "rb") as fh:
                    fh.seek(offsets[name])
                    chunk = fh.read()
            except FileNotFoundError:
                continue
            if not chunk:
                continue
            offsets[name] += len(chunk)
            text = pending[name] + chunk.decode(errors="replace")
            *lines, pending[name] = text.split("\n")
            for line in lines:
                sys.stdout.write(f"{prefixes[name]}{line}\n")
                wrote = True
        if wrote:
            sys.stdout.flush()
        if time.monotonic() - last_check > 1:
            last_check = time.monotonic()
            if not alive():
                return 0
        time.sleep(0.1)


def _all_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
