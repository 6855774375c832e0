"""Looking at a stack: ``status``, ``exec``, ``env``, ``doctor``, ``config``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stacktest.cli.common import (
    DEFAULT_FILE,
    EXIT_ERROR,
    EXIT_USAGE,
    Commands,
    EnvFileOpt,
    FileOpt,
    ProfileOpt,
    StrictOpt,
    escape,
    fail,
    find_instance,
    load_spec,
    new_console,
    run_dir_for,
    running_state,
    status_table,
)
from stacktest.redact import redact

if TYPE_CHECKING:
    from stacktest.spec.model import Dependency, StackSpec

commands = Commands()
register = commands.register


@commands.command()
def status(
    file: FileOpt = DEFAULT_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each service: state, pid, address, uptime, restarts."""
    run_dir = run_dir_for(file)
    state = run_dir.read_state()
    alive = run_dir.owner_alive()
    if state is None or not alive:
        if as_json:
            print(json.dumps({"state": "stopped", "instances": {}}))
        else:
            new_console().print(f"no stack is running from {run_dir.path}")
        raise typer.Exit(3)
    if as_json:
        print(json.dumps(_public_state(state), indent=2))
        return
    console = new_console()
    console.print(status_table(state))
    proxies = state.get("proxies") or {}
    if proxies:
        edges = ", ".join(
            f"{name}{'' if p['enabled'] else ' (down)'}"
            + (f" [{len(p['toxics'])} toxic(s)]" if p["toxics"] else "")
            for name, p in proxies.items()
        )
        console.print(f"fault proxies: {edges}")
    if state.get("toxiproxy_api"):
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


@commands.command(
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
    state = running_state(file)
    info = find_instance(state, service)
    if not argv:
        argv = {"postgres": ["psql"], "valkey": ["valkey-cli"], "redis": ["redis-cli"]}.get(
            info["kind"], [os.environ.get("SHELL", "/bin/sh")]
        )
    from stacktest.client_env import with_client_environment

    # the stack's client variables where the environment has none; this service's own
    # connection settings (PGHOST ...) win: they are what `exec SERVICE` asks for
    env = with_client_environment(state, os.environ)
    env.update(info.get("client_env", {}))
    bin_dirs = info.get("client_bin_dirs", [])
    env["PATH"] = os.pathsep.join([*bin_dirs, env.get("PATH", "")])
    program = Path(argv[0]).name
    argv = [argv[0], *info.get("client_args", {}).get(program, []), *argv[1:]]
    import shutil

    resolved = shutil.which(argv[0], path=env["PATH"])
    if resolved is None:
        fail(
            f"command {argv[0]!r} not found on PATH (looked first in: {', '.join(bin_dirs) or '-'})"
        )
    sys.stdout.flush()
    os.execve(resolved, argv, env)


@commands.command()
def env(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    file: FileOpt = DEFAULT_FILE,
    client: Annotated[
        bool,
        typer.Option(
            "--client",
            help="What `stacktest test`, `exec` and `load` give user code: DB_URL..., "
            "DATABASE_URL, PGHOST..., REDIS_URL, NATS_URL, TOXIPROXY_URL.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    dotenv: Annotated[bool, typer.Option("--dotenv", help="KEY=\"value\" lines (.env).")] = False,
) -> None:
    """Print connection settings as shell `export` lines: eval "$(stacktest env)".

    Without --client: every field of every instance (DB_URL, DB_PASSWORD, WORKER_1_PORT
    ...). With --client: the variables user code gets (docs/cli.md).
    """
    from stacktest.client_env import client_environment, env_prefix

    if as_json and dotenv:
        fail("--json and --dotenv: choose one", EXIT_USAGE)
    state = running_state(file)
    instances = state.get("instances", {})
    chosen = find_instance(state, service) if service is not None else None
    variables: dict[str, str] = {}
    if client:
        if chosen is None:
            variables = client_environment(state)
        else:
            one = {"instances": {service: chosen}}
            variables = client_environment(one)
    else:
        for name, info in instances.items():
            if service is not None and service not in (name, info.get("service")):
                continue
            for key, value in info.get("fields", {}).items():
                if key not in ("name", "run_dir", "data_dir"):
                    variables[f"{env_prefix(name)}_{key.upper()}"] = str(value)
        if service is None and state.get("toxiproxy_api"):
            variables["TOXIPROXY_URL"] = str(state["toxiproxy_api"])
    _print_variables(variables, "json" if as_json else "dotenv" if dotenv else "shell")


def _print_variables(variables: dict[str, str], style: str) -> None:
    import shlex

    if style == "json":
        print(json.dumps(variables, indent=2))
        return
    for key, value in variables.items():
        if style == "dotenv":
            quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            print(f'{key}="{quoted}"')
        else:
            print(f"export {key}={shlex.quote(value)}")


@commands.command()
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
    console = new_console()
    console.print(table)
    for report in missing:
        console.print(f"[red]{report.provider}[/]: looked in:")
        for place in report.looked_in:
            console.print(f"  - {escape(place)}")
        console.print(f"  hint: {escape(report.hint)}")
    from stacktest.containers.engine import discover

    engine, tried = discover()
    if engine is not None:
        console.print(f"container engine: {escape(engine.describe())}")
    else:
        console.print("container engine: [yellow]none usable[/] (only needed for `image`/"
                      "`build` services; docs/containers.md); looked at:")  # fmt: skip
    for where, why in tried:
        console.print(f"  - {escape(where)}: {escape(why)}")
    from stacktest.spec.files import default_compose_fallback

    chosen = file or [Path("stack.toml")]
    if all(default_compose_fallback(f.absolute()).exists() for f in chosen):
        spec = load_spec(file)
        console.print(f"stack file {spec.source}: {len(spec.services)} services, valid")
    if missing:
        raise typer.Exit(EXIT_ERROR)


@commands.command()
def config(
    file: FileOpt = DEFAULT_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    profile: ProfileOpt = None,
    strict: StrictOpt = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Validate the stack file and print it as stacktest understands it, with every
    key of a compose file that is not honoured as written (`not_honoured`)."""
    spec = load_spec(file, profiles=profile, strict=strict, env_files=env_file)
    data = spec_to_dict(spec)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    from rich.pretty import Pretty

    new_console().print(Pretty(data))


def spec_to_dict(spec: StackSpec) -> dict[str, Any]:
    """The validated stack as plain data, secrets redacted."""
    services = {}
    for name in spec.start_order():
        s = spec.services[name]
        entry: dict[str, Any] = {"use": s.use}
        if s.port is not None:
            entry["port"] = s.port
        if s.is_process:
            entry.update(command=list(s.command), shell=s.shell, cwd=s.cwd, replicas=s.replicas)
        elif s.is_container:  # (image, build and the rest are in its options, below)
            entry.update(command=list(s.command) or None, replicas=s.replicas)
        if s.backend != "native":
            entry["backend"] = s.backend
        if s.ready:  # (a built-in server's own check, run after its protocol check)
            entry["ready"] = {k: v for k, v in vars(s.ready).items() if v not in ("", (), None)}
        options = dict(s.options)
        for key in [k for k in options if k.endswith("password") and options[k]]:
            options[key] = "****"  # password, root_password
        if options.get("args"):  # nats-server --pass X, --auth TOKEN
            options["args"] = _hide_flag_values(options["args"])
        if isinstance(options.get("settings"), dict):  # redis masterauth ...
            options["settings"] = {k: "****" if k in SECRET_SETTINGS else v
                                   for k, v in options["settings"].items()}  # fmt: skip
        entry.update(options)
        entry.update(
            env=dict(s.env),
            depends_on={d.service: _dependency(d) for d in s.depends_on},
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
        "toxiproxy_port": spec.toxiproxy_port,
        "files": [str(f) for f in spec.files],
        "profiles": list(spec.profiles),
        "volumes": list(spec.volumes),
        "tmpfs": list(spec.tmpfs),
        "not_honoured": [redact(w) for w in spec.warnings],
        "services": services,
    }


def _dependency(dep: Dependency) -> Any:
    """``"healthy"``, or the table when the edge says more (``restart``, ``proxy``)."""
    if not dep.restart and dep.proxy is None:
        return dep.condition.value
    table: dict[str, Any] = {"condition": dep.condition.value}
    if dep.restart:
        table["restart"] = True
    if dep.proxy is not None:
        table["proxy"] = dep.proxy
    return table


#: Server flags and settings whose value is a secret: shown as ****.
SECRET_FLAGS = frozenset({"--pass", "--password", "--auth", "--token", "--requirepass"})
SECRET_SETTINGS = frozenset({"requirepass", "masterauth", "password"})


def _hide_flag_values(args: list[str]) -> list[str]:
    shown: list[str] = []
    for arg in args:
        flag, eq, _ = arg.partition("=")
        if shown and shown[-1] in SECRET_FLAGS:
            shown.append("****")
        elif eq and flag in SECRET_FLAGS:
            shown.append(f"{flag}=****")
        else:
            shown.append(arg)
    return shown
