"""The ``stacktest`` command line.

Commands read the run directory (``.stacktest/`` beside the stack file) so that
``up -d`` in one shell and ``status`` / ``logs`` / ``exec`` / ``down`` in another
work together. Heavy modules are imported inside commands to keep start-up fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from stacktest.redact import redact

if TYPE_CHECKING:
    from stacktest.engine.rundir import RunDir
    from stacktest.spec.model import StackSpec

app = typer.Typer(
    name="stacktest",
    help="Real multi-service stacks (Postgres, NATS, Valkey, your processes) for tests. No Docker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

FileOpt = Annotated[
    Path,
    typer.Option(
        "--file", "-f", envvar="STACKTEST_FILE", help="Stack file (default: ./stack.toml)."
    ),
]
DEFAULT_FILE = Path("stack.toml")

EXIT_ERROR = 1
EXIT_USAGE = 2


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    _console(stderr=True).print(f"[bold red]error:[/] {_escape(message)}")
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _load(file: Path) -> StackSpec:
    from stacktest.errors import ConfigError
    from stacktest.spec.load import load_stack

    try:
        return load_stack(file)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _run_dir(file: Path) -> RunDir:
    from stacktest.engine.rundir import RunDir

    return RunDir(_load(file).run_dir)


def _running_state(file: Path) -> dict[str, Any]:
    from stacktest.errors import StackNotRunning

    try:
        return _run_dir(file).running_state()
    except StackNotRunning as exc:
        _fail(str(exc))


def _uptime(started: float | None) -> str:
    if not started:
        return "-"
    seconds = int(time.time() - started)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _status_table(state: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"stack {state.get('stack')} ({state.get('state')})", title_justify="left")
    for column in ("service", "state", "pid", "address", "uptime", "restarts"):
        table.add_column(column)
    colors = {"ready": "green", "running": "green", "completed": "cyan", "starting": "yellow"}
    for name, info in state.get("instances", {}).items():
        st = info.get("state", "?")
        color = colors.get(st, "red" if st.startswith(("exited", "failed")) else "white")
        table.add_row(
            name,
            f"[{color}]{st}[/]",
            str(info.get("pid") or "-"),
            _escape(redact(info.get("fields", {}).get("url", ""))),
            _uptime(info.get("started_at")),
            str(info.get("restarts", 0)),
        )
    return table


# -- up / down ------------------------------------------------------------------------------
@app.command()
def up(
    file: FileOpt = DEFAULT_FILE,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Start in the background and return.")
    ] = False,
    quiet: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Start the stack: every service healthy, in dependency order.

    In the foreground, Ctrl-C stops everything. With -d, a background runner keeps
    the stack up until `stacktest down`.
    """
    spec = _load(file)
    if detach:
        _up_detached(spec, file)
        return
    from stacktest.cli_up import run_foreground

    code = run_foreground(spec, quiet=quiet)
    raise typer.Exit(code)


def _start_detached_showing_progress(spec: StackSpec, console: Any) -> dict[str, Any]:
    """``start_detached`` under a spinner naming the services still starting; errors exit 1."""
    from stacktest.cli_up import start_detached
    from stacktest.errors import StackError

    with console.status("starting services...") as progress:
        try:
            return start_detached(
                spec, on_progress=lambda w: progress.update(f"starting: {', '.join(w) or '...'}")
            )
        except StackError as exc:
            _fail(str(exc))


def _up_detached(spec: StackSpec, file: Path) -> None:
    console = _console()
    started = time.monotonic()
    state = _start_detached_showing_progress(spec, console)
    console.print(_status_table(state))
    console.print(
        f"[green]ready[/] in {time.monotonic() - started:.2f}s "
        f"(runner pid {state.get('owner_pid')}); stop with `stacktest down`"
    )


@app.command()
def down(
    file: FileOpt = DEFAULT_FILE,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean stop.")] = 30.0,
) -> None:
    """Stop the stack (and anything a killed runner left behind)."""
    from stacktest.cli_up import stop_running

    message = stop_running(_run_dir(file), timeout)
    _console().print(message)


@app.command(
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
) -> None:
    """Start the stack, run pytest against it, stop it, write a report; the exit code is
    pytest's.

    Arguments after `--` go to pytest: `stacktest test -- -x -n 2 tests/`. Every
    pytest worker attaches to the one stack (--stack-attach). A stack already running
    from the stack file is used as it is and left running. The report (Markdown summary,
    self-contained HTML) covers the tests (JUnit XML: yours if you pass --junitxml),
    the services, the timeline of events and faults, and load runs.
    """
    import subprocess

    from stacktest.cli_up import stop_running
    from stacktest.engine.rundir import RunDir

    spec = _load(file)
    run_dir = RunDir(spec.run_dir)
    console = _console(stderr=True)
    already = run_dir.owner_alive()
    if already:
        console.print(f"stacktest: using the stack already running from {spec.run_dir}")
    else:
        started = time.monotonic()
        _start_detached_showing_progress(spec, console)
        console.print(f"stacktest: stack ready in {time.monotonic() - started:.2f}s")
    argv = [sys.executable, "-m", "pytest", f"--stack={spec.source}", "--stack-attach", *ctx.args]
    report_dir = (report or spec.run_dir / "report").absolute()
    junit = _junit_path(ctx.args)
    if junit is None and not no_report:
        junit = report_dir / "junit.xml"
        junit.unlink(missing_ok=True)
        argv.append(f"--junitxml={junit}")
    code = 1
    try:
        proc = subprocess.Popen(argv)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # pytest got the Ctrl-C too; let it finish its report
            code = proc.wait()
    finally:
        if not already and not keep:
            console.print(f"stacktest: {stop_running(run_dir, timeout=30)}")
    if not no_report:
        _write_report(spec.run_dir, junit, report_dir, console)
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


def _write_report(run_dir: Path, junit: Path | None, out: Path, console: Any) -> None:
    from stacktest.errors import StackError
    from stacktest.report import collect, write_reports

    try:
        md, html = write_reports(collect(run_dir, junit), out)
    except (StackError, OSError) as exc:  # the tests' exit code stands; say why, plainly
        console.print(f"stacktest: no report: {_escape(str(exc))}")
        return
    console.print(f"stacktest: report: {_escape(str(html))} (summary: {_escape(str(md))})")


@app.command()
def report(
    file: FileOpt = DEFAULT_FILE,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="JUnit XML of the tests to include.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory to write to (default: RUN_DIR/report).")
    ] = None,
) -> None:
    """Write summary.md and report.html for the last run of the stack (running or stopped):
    services, timeline of events and faults, load runs, and the tests of --junit."""
    spec = _load(file)
    if junit is not None and not junit.exists():
        _fail(f"no JUnit XML at {junit}\n  hint: pass the file pytest wrote with --junitxml")
    target = out or spec.run_dir / "report"
    default_junit = target / "junit.xml"
    _write_report(
        spec.run_dir,
        junit or (default_junit if default_junit.exists() else None),
        target,
        _console(),
    )


# -- looking at it ----------------------------------------------------------------------
@app.command()
def status(
    file: FileOpt = DEFAULT_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each service: state, pid, address, uptime, restarts."""
    run_dir = _run_dir(file)
    state = run_dir.read_state()
    alive = run_dir.owner_alive()
    if state is None or not alive:
        if as_json:
            print(json.dumps({"state": "stopped", "instances": {}}))
        else:
            _console().print(f"no stack is running from {run_dir.path}")
        raise typer.Exit(3)
    if as_json:
        print(json.dumps(_public_state(state), indent=2))
        return
    console = _console()
    console.print(_status_table(state))
    proxies = state.get("proxies") or {}
    if proxies:
        edges = ", ".join(
            f"{name}{'' if p['enabled'] else ' (down)'}"
            + (f" [{len(p['toxics'])} toxic(s)]" if p["toxics"] else "")
            for name, p in proxies.items()
        )
        console.print(f"fault proxies: {edges}")
        console.print(f"Toxiproxy API: {state.get('toxiproxy_api')}")


def _public_state(state: dict[str, Any]) -> dict[str, Any]:
    from stacktest.spec.schema import SECRET_FIELDS

    out = {k: v for k, v in state.items() if k not in ("instances", "owner_argv")}
    out["instances"] = {}
    for name, info in state.get("instances", {}).items():
        fields = {
            k: ("****" if k in SECRET_FIELDS and v else redact(v))
            for k, v in info.get("fields", {}).items()
        }
        out["instances"][name] = {
            k: v
            for k, v in info.items()
            if k not in ("fields", "client_env", "client_args", "client_bin_dirs", "private_dir")
        } | {"fields": fields}
    return out


@app.command()
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
    """Print the services' output (stdout and stderr)."""
    from stacktest.cli_logs import show_logs

    run_dir = _run_dir(file)
    state = run_dir.read_state()
    if state is None:
        _fail(f"no stack has run from {run_dir.path} yet\n  hint: `stacktest up -d` first")
    code = show_logs(state, service, follow=follow, tail=tail, alive=run_dir.owner_alive)
    raise typer.Exit(code)


@app.command(
    name="exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service whose connection settings to use.")],
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Run a command wired to a service: `stacktest exec db -- psql -c 'select 1'`.

    The provider's own clients (psql, valkey-cli) are put first on PATH and the
    connection settings (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, NATS_URL,
    REDISCLI_AUTH ...) are in the environment.
    """
    argv = list(ctx.args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    state = _running_state(file)
    info = _find_instance(state, service)
    if not argv:
        argv = {"postgres": ["psql"], "valkey": ["valkey-cli"], "redis": ["redis-cli"]}.get(
            info["kind"], [os.environ.get("SHELL", "/bin/sh")]
        )
    env = dict(os.environ)
    env.update(info.get("client_env", {}))
    bin_dirs = info.get("client_bin_dirs", [])
    env["PATH"] = os.pathsep.join([*bin_dirs, env.get("PATH", "")])
    program = Path(argv[0]).name
    argv = [argv[0], *info.get("client_args", {}).get(program, []), *argv[1:]]
    import shutil

    resolved = shutil.which(argv[0], path=env["PATH"])
    if resolved is None:
        _fail(
            f"command {argv[0]!r} not found on PATH (looked first in: {', '.join(bin_dirs) or '-'})"
        )
    sys.stdout.flush()
    os.execve(resolved, argv, env)


def _find_instance(state: dict[str, Any], service: str) -> dict[str, Any]:
    instances: dict[str, Any] = state.get("instances", {})
    if service in instances:
        return dict(instances[service])
    for info in instances.values():
        if info.get("service") == service:
            return dict(info)
    _fail(f"no service {service!r} in this stack (services: {', '.join(instances)})")


@app.command()
def restart(
    service: Annotated[str, typer.Argument(help="Service to restart (data is kept).")],
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Restart a service of a running stack, keeping its data, ports and password."""
    from stacktest.cli_up import control

    state = _running_state(file)
    started = time.monotonic()
    reply = control(state, {"op": "restart", "service": service}, timeout=120)
    if not reply.get("ok"):
        _fail(str(reply.get("error")))
    _console().print(f"restarted {service} in {time.monotonic() - started:.2f}s")


@app.command()
def env(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Print connection settings as shell `export` lines: eval "$(stacktest env)"."""
    import shlex

    state = _running_state(file)
    instances = state.get("instances", {})
    if service is not None:
        _find_instance(state, service)
    for name, info in instances.items():
        if service is not None and service not in (name, info.get("service")):
            continue
        prefix = name.upper().replace("-", "_").replace(".", "_")
        for key, value in info.get("fields", {}).items():
            if key in ("name", "run_dir", "data_dir"):
                continue
            print(f"export {prefix}_{key.upper()}={shlex.quote(str(value))}")


@app.command()
def doctor(file: FileOpt = DEFAULT_FILE) -> None:
    """Which server binaries stacktest finds, where, and how to get what is missing."""
    from rich.table import Table

    from stacktest.providers import ALL_KINDS, provider_for

    table = Table(title="server binaries")
    for column in ("provider", "binary", "found at", "version"):
        table.add_column(column)
    missing = []
    for kind in ALL_KINDS:
        for report in provider_for(kind).doctor():
            if report.path is None:
                missing.append(report)
            table.add_row(
                report.provider,
                report.binary,
                str(report.path) if report.path else "[red]not found[/]",
                report.version or "-",
            )
    console = _console()
    console.print(table)
    for report in missing:
        console.print(f"[red]{report.provider}[/]: looked in:")
        for place in report.looked_in:
            console.print(f"  - {_escape(place)}")
        console.print(f"  hint: {_escape(report.hint)}")
    if file.exists():
        spec = _load(file)
        console.print(f"stack file {spec.source}: {len(spec.services)} services, valid")
    if missing:
        raise typer.Exit(EXIT_ERROR)


@app.command()
def config(
    file: FileOpt = DEFAULT_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Validate the stack file and print it as stacktest understands it."""
    spec = _load(file)
    data = spec_to_dict(spec)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    from rich.pretty import Pretty

    _console().print(Pretty(data))


def spec_to_dict(spec: StackSpec) -> dict[str, Any]:
    """The validated stack as plain data, secrets redacted."""
    services = {}
    for name in spec.start_order():
        s = spec.services[name]
        entry: dict[str, Any] = {"use": s.use}
        if s.is_process:
            entry.update(command=list(s.command), shell=s.shell, cwd=s.cwd, replicas=s.replicas)
            if s.ready:
                entry["ready"] = {k: v for k, v in vars(s.ready).items() if v not in ("", (), None)}
        options = dict(s.options)
        if options.get("password"):
            options["password"] = "****"
        entry.update(options)
        entry.update(
            env=dict(s.env),
            depends_on={d.service: d.condition.value for d in s.depends_on},
            start_timeout=s.start_timeout,
            stop_timeout=s.stop_timeout,
            stop_signal=s.stop_signal.name,
            restart=s.restart,
        )
        services[name] = entry
    return {
        "name": spec.name,
        "source": str(spec.source),
        "run_dir": str(spec.run_dir),
        "start_order": spec.start_order(),
        "proxied_edges": [f"{client}->{server}" for client, server in spec.proxied_edges()],
        "services": services,
    }


if __name__ == "__main__":
    main()


def _register_more_commands() -> None:
    from stacktest import cli_cache, cli_faults, cli_load

    cli_cache.register(app)
    cli_faults.register(app)
    cli_load.register(app)


_register_more_commands()
