"""``stacktest cache`` and ``stacktest cache clean``: what stacktest keeps between runs.

Postgres starts fast because stacktest keeps an initialised data directory per server
version, user, databases and ``init`` files (``~/.cache/stacktest/postgres``), and a few
ready copies of it ("spares", in /dev/shm when that is a roomy tmpfs, where they use RAM).
Spares of a stack nobody started for an hour are removed on the next start; this command
removes them now.
"""

from __future__ import annotations

from typing import Annotated

import typer

from stacktest.cli.common import escape, new_console

cache_app = typer.Typer(
    name="cache",
    help="What stacktest keeps between runs (Postgres data directories), and cleaning it.",
    invoke_without_command=True,
)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


@cache_app.callback()
def show(ctx: typer.Context) -> None:
    """Where the caches are and how big."""
    if ctx.invoked_subcommand is not None:
        return
    from stacktest.providers.pgdata import cache_entries

    console = new_console()
    entries = cache_entries()
    if not entries:
        console.print("nothing cached")
        return
    for entry in entries:
        console.print(
            f"postgres {entry.what}: {entry.entries} in {escape(str(entry.path))}"
            f" ({_size(entry.size)})",
            soft_wrap=True,
        )
    console.print("remove the spare copies with `stacktest cache clean` (--all: everything)")


@cache_app.command()
def clean(
    everything: Annotated[
        bool,
        typer.Option(
            "--all", help="Also the initialised data directories (the next start rebuilds one)."
        ),
    ] = False,
) -> None:
    """Remove the spare copies of Postgres data directories (with --all, everything).

    Safe while stacks run: a start that finds its spare gone copies from the cache
    instead. With --all, do not run it while a stack is starting."""
    from stacktest.providers.pgdata import clean_cache

    console = new_console()
    removed = clean_cache(everything=everything)
    if not removed:
        console.print("nothing to remove")
    for entry in removed:
        console.print(
            f"removed postgres {entry.what}: {escape(str(entry.path))} ({_size(entry.size)})",
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app)
