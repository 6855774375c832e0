"""``stacktest up`` (foreground, or -d: a background runner), ``down``, and ``test``:
start the stack, run pytest against it, stop it, write the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stacktest.cli.common import (
    DEFAULT_FILE,
    BackendOpt,
    Commands,
    EnvFileOpt,
    FileOpt,
    ProfileOpt,
    RemapOpt,
    StrictOpt,
    escape,
    fail,
    load_spec,
    new_console,
    run_dir_for,
    show_remapped,
    show_warnings,
    status_table,
)
from stacktest.cli.report import write_report

if TYPE_CHECKING:
    from stacktest.spec.model import StackSpec

commands = Commands()
register = commands.register


@commands.command()
def up(
    file: FileOpt = DEFAULT_FILE,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start in the background and return.")
    ] = False,
    profile: ProfileOpt = None,
    strict: StrictOpt = False,
    env_file: EnvFileOpt = None,
    remap_ports: RemapOpt = False,
    backend: BackendOpt = None,
    quiet: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Start the stack: every service healthy, in dependency order.

    In the foreground, Ctrl-C stops everything. With -d, a background runner keeps
    the stack up until `stacktest down`.
    """
    spec = load_spec(
        file, profiles=profile, strict=strict, env_files=env_file, remap_ports=remap_ports,
        backend=backend,
    )  # fmt: skip
    if not quiet:  # (the runner of `up -d` says nothing: `up -d` said it)
        show_warnings(spec, new_console(stderr=True))
    if detach:
        _up_detached(spec, file)
        return
    code = run_foreground(spec, quiet=quiet)
    raise typer.Exit(code)


def _start_detached_showing_progress(spec: StackSpec, console: Any) -> dict[str, Any]:
    """``start_detached`` under a spinner naming the services still starting; errors exit 1."""
    from stacktest.engine.detached import start_detached
    from stacktest.errors import StackError

    with console.status("starting services...") as progress:
        try:
            return start_detached(
                spec, on_progress=lambda w: progress.update(f"starting: {', '.join(w) or '...'}")
            )
        except StackError as exc:
            fail(str(exc))


def _up_detached(spec: StackSpec, file: list[Path] | None) -> None:
    console = new_console()
    started = time.monotonic()
    state = _start_detached_showing_progress(spec, console)
    console.print(status_table(state))
    show_remapped(spec, state, console)
    console.print(
        f"[green]ready[/] in {time.monotonic() - started:.2f}s "
        f"(runner pid {state.get('owner_pid')}); stop with `stacktest down`"
    )


@commands.command()
def down(
    file: FileOpt = DEFAULT_FILE,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean stop.")] = 30.0,
    volumes: Annotated[
        bool, typer.Option("--volumes", "-v", help="Remove the named volumes too.")
    ] = False,
) -> None:
    """Stop the stack (and anything a killed runner left behind)."""
    from stacktest.engine.detached import stop_running

    run_dir = run_dir_for(file)
    message = stop_running(run_dir, timeout)
    console = new_console()
    console.print(message)
    if volumes:
        removed = run_dir.remove_volumes()
        console.print(f"removed volumes: {', '.join(removed)}" if removed else "no volumes")


@commands.command(
    "test",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run_tests(
    ctx: typer.Context,
    file: FileOpt = DEFAULT_FILE,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the stack running afterwards.")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Directory for junit.xml, summary.md and report.html (default: RUN_DIR/report).",
        ),
    ] = None,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Write no report.")
    ] = False,
    python: Annotated[
        Path | None,
        typer.Option(
            "--python",
            help="The project's interpreter (or virtualenv) to run pytest with "
            "(default: the active virtualenv's, else python3 on PATH).",
        ),
    ] = None,
    profile: ProfileOpt = None,
    strict: StrictOpt = False,
    env_file: EnvFileOpt = None,
    remap_ports: RemapOpt = False,
    backend: BackendOpt = None,
) -> None:
    """Start the stack, run the project's pytest against it, stop it, write a report; the
    exit code is pytest's.

    Arguments after `--` go to pytest: `stacktest test -- -x -n 2 tests/`. Every
    pytest worker attaches to the one stack (--stack-attach). A stack already running
    from the stack file is used as it is and left running. The report (Markdown summary,
    self-contained HTML) covers the tests (JUnit XML: yours if you pass --junitxml),
    the services, the timeline of events and faults, and load runs.

    pytest gets the stack's client variables (DATABASE_URL, PGHOST..., REDIS_URL,
    NATS_URL, DB_URL ...: `stacktest env --client`) where its environment has none.
    """
    import os
    import subprocess

    from stacktest.cli import testrun
    from stacktest.client_env import with_client_environment
    from stacktest.engine.detached import stop_running
    from stacktest.engine.rundir import RunDir

    spec = load_spec(
        file, profiles=profile, strict=strict, env_files=env_file, remap_ports=remap_ports,
        backend=backend,
    )  # fmt: skip
    run_dir = RunDir(spec.run_dir)
    console = new_console(stderr=True)
    show_warnings(spec, console)
    try:
        interpreter, why = testrun.resolve_python(python)
    except ValueError as exc:
        fail(str(exc))
    plugin_args, plugin_env = testrun.plugin_wiring(interpreter, spec.run_dir / "pyshim")
    already = run_dir.owner_alive()
    if already:
        console.print(f"stacktest: using the stack already running from {spec.run_dir}")
        state = run_dir.read_state() or {}
    else:
        started = time.monotonic()
        state = _start_detached_showing_progress(spec, console)
        console.print(f"stacktest: stack ready in {time.monotonic() - started:.2f}s")
        show_remapped(spec, state, console)
    console.print(f"stacktest: pytest with {interpreter} ({why})")
    env = {**with_client_environment(state, os.environ), **plugin_env}
    files = os.pathsep.join(str(f) for f in spec.files or (spec.source,))
    argv = [interpreter, "-m", "pytest", *plugin_args, f"--stack={files}", "--stack-attach"]
    argv.append(f"--stack-profile={','.join(spec.profiles)}")
    argv += ctx.args
    report_dir = (report or spec.run_dir / "report").absolute()
    junit = _junit_path(ctx.args)
    if junit is None and not no_report:
        junit = report_dir / "junit.xml"
        junit.unlink(missing_ok=True)
        argv.append(f"--junitxml={junit}")
    code = 1
    try:
        proc = subprocess.Popen(argv, env=env)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # pytest got the Ctrl-C too; let it finish its report
            code = proc.wait()
    finally:
        if not already and not keep:
            console.print(f"stacktest: {stop_running(run_dir, timeout=30)}")
    if not no_report:
        write_report(spec.run_dir, junit, report_dir, console)
    raise typer.Exit(code)


def _junit_path(args: list[str]) -> Path | None:
    """The JUnit XML path among pytest's arguments (--junitxml=F, --junit-xml F)."""
    for i, arg in enumerate(args):
        for flag in ("--junitxml", "--junit-xml"):
            if arg.startswith(flag + "="):
                return Path(arg.split("=", 1)[1]).absolute()
            if arg == flag and i + 1 < len(args):
                return Path(args[i + 1]).absolute()
    return None


def run_foreground(spec: StackSpec, *, quiet: bool) -> int:
    """Start the stack, keep it up until Ctrl-C / SIGTERM / `stacktest down`, stop it.

    This is also the detached runner (``up --quiet``, started by ``up -d``): it logs
    one line per event instead of a spinner."""
    import asyncio

    return asyncio.run(_foreground(spec, quiet=quiet))


async def _foreground(spec: StackSpec, *, quiet: bool) -> int:
    import asyncio
    import signal

    from stacktest.engine.runtime import AsyncStack
    from stacktest.errors import StackError

    console = new_console()
    waiting: set[str] = set()
    status = None if quiet else console.status("starting services...")

    def on_event(service: str, what: str, detail: dict[str, Any]) -> None:
        if what == "starting":
            waiting.add(service)
        elif what in ("ready", "exited", "stopped", "completed"):
            waiting.discard(service)
        if quiet:
            extra = " ".join(f"{k}={v}" for k, v in detail.items())
            print(f"{time.strftime('%H:%M:%S')} {service}: {what} {extra}".rstrip(), flush=True)
        elif status is not None:
            status.update(f"starting: {', '.join(sorted(waiting)) or '...'}")

    stack = AsyncStack(spec, on_event=on_event, stop_on_shutdown=False)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    phase = {"starting": True}
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        if phase["starting"]:
            main_task.cancel()
        else:
            stack.shutdown_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    if status is not None:
        status.start()
    try:
        await stack.start()
    except asyncio.CancelledError:
        if status is not None:
            status.stop()
        console.print("interrupted: every service started so far was stopped")
        return 128 + (received[0] if received else signal.SIGINT)
    except StackError as exc:
        if status is not None:
            status.stop()
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 1
    finally:
        phase["starting"] = False
    if status is not None:
        status.stop()
    state = stack.run_dir.read_state() or {}
    took = (stack.ready_at or 0) - (stack.started_at or 0)
    if not quiet:
        if stack.reaped:
            console.print(f"reaped leftovers of a previous run: {', '.join(stack.reaped)}")
        console.print(status_table(state))
        show_remapped(spec, state, console)
        console.print(
            f"[green]ready[/] in {took:.2f}s. Ctrl-C to stop; "
            "`stacktest logs -f` to follow the output."
        )
    else:
        print(f"ready in {took:.2f}s", flush=True)
    await stack.shutdown_requested.wait()
    if not quiet:
        console.print("stopping...")
    await stack.stop()
    if not quiet:
        console.print("stopped")
    # stopped by a signal: the shell's convention (130 for Ctrl-C, 143 for SIGTERM); by
    # `stacktest down`: done as asked
    return 128 + received[0] if received else 0
