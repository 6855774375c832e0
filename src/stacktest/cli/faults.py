"""``stacktest fault ...`` and ``stacktest kill|terminate|pause|resume|stop|start SERVICE``.

All of them talk to the owner of a running stack (``stacktest up -d``) over its
control socket; the owner applies the fault and records it in the event log.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from stacktest.cli.common import DEFAULT_FILE, FileOpt, fail, new_console, running_state

fault_app = typer.Typer(
    name="fault",
    help="Faults on the links between services (the stack must run with `up -d`).",
    no_args_is_help=True,
)


def _ask(req: dict[str, Any], file: Any) -> dict[str, Any]:
    from stacktest.engine.control import request

    state = running_state(file)
    reply = request(state, req, timeout=120)
    if not reply.get("ok"):
        fail(str(reply.get("error")))
    return reply


def _service_command(op: str, done: str, doc: str) -> Any:
    def command(
        service: Annotated[str, typer.Argument(help="Service, or one replica (worker.2).")],
        file: FileOpt = DEFAULT_FILE,
    ) -> None:
        started = time.monotonic()
        _ask({"op": op, "service": service}, file)
        new_console().print(f"{done} {service} in {time.monotonic() - started:.2f}s")

    command.__doc__ = doc
    return command


SERVICE_COMMANDS = {
    "kill": ("kill", "killed", "SIGKILL a service's processes; it stays down until `start`."),
    "terminate": (
        "terminate",
        "terminated",
        "SIGTERM a service (SIGKILL after its stop_timeout); it stays down until `start`.",
    ),
    "stop": ("stop", "stopped", "Stop a service gracefully; `start` brings it back."),
    "start": ("start", "started", "Start a stopped or killed service and wait until ready."),
    "pause": (
        "pause",
        "paused",
        "Freeze a service (SIGSTOP): it keeps its sockets but answers nothing.",
    ),
    "resume": ("resume", "resumed", "Unfreeze a paused service (SIGCONT)."),
}


@fault_app.command("add")
def fault_add(
    edge: Annotated[str, typer.Argument(help="CLIENT->SERVER, e.g. api->db.")],
    toxic: Annotated[
        list[str],
        typer.Argument(
            help="`down`, or TYPE=VALUE [key=value ...]: latency=200ms jitter=20ms, "
            "bandwidth=100KB/s, timeout=1s, reset_peer=0, slicer=64, limit_data=1KB, "
            "slow_close=500ms, http_error=503 first=2; stream=upstream, toxicity=0.5, name=x."
        ),
    ],
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Add a toxic to an edge (or take the link down)."""
    from stacktest.errors import FaultError
    from stacktest.faults.toxics import Toxic

    if toxic == ["down"]:
        _ask({"op": "link", "edge": edge, "up": False}, file)
        new_console().print(f"{edge}: link down (new connections refused, open ones reset)")
        return
    spec = {}
    for word in toxic:
        key, sep, value = word.partition("=")
        if not sep:
            fail(f"{word!r}: expected key=value (e.g. latency=200ms), or `down`", 2)
        spec[key.strip()] = value.strip()
    try:
        parsed = Toxic.parse(spec)
    except FaultError as exc:
        fail(str(exc), 2)
    reply = _ask({"op": "add_toxic", "edge": edge, "toxic": parsed.to_json()}, file)
    added = Toxic.from_json(reply["toxic"])
    new_console().print(f"{edge}: added {added.name}: {added.describe()}")


@fault_app.command("remove")
def fault_remove(
    edge: Annotated[str, typer.Argument(help="CLIENT->SERVER.")],
    name: Annotated[str, typer.Argument(help="The toxic's name (see `fault list`).")],
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Remove one toxic."""
    _ask({"op": "remove_toxic", "edge": edge, "name": name}, file)
    new_console().print(f"{edge}: removed {name}")


@fault_app.command("up")
def fault_up(
    edge: Annotated[str, typer.Argument(help="CLIENT->SERVER.")],
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Bring a link taken down with `fault add EDGE down` back up."""
    _ask({"op": "link", "edge": edge, "up": True}, file)
    new_console().print(f"{edge}: link up")


@fault_app.command("list")
def fault_list(
    file: FileOpt = DEFAULT_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every fault proxy, its toxics, and paused or stopped services."""
    import json

    from rich.table import Table

    from stacktest.faults.toxics import Toxic

    reply = _ask({"op": "faults"}, file)
    if as_json:
        print(json.dumps({k: reply[k] for k in ("proxies", "paused", "stopped")}, indent=2))
        return
    console = new_console()
    if not reply["proxies"]:
        console.print(
            "no fault proxies: add `proxy = true` to a dependency "
            "(depends_on.db = { proxy = true }) or to [stack]"
        )
    else:
        table = Table(title="fault proxies", title_justify="left")
        for column in ("edge", "listen", "upstream", "link", "toxics"):
            table.add_column(column)
        for name, proxy in reply["proxies"].items():
            toxics = [f"{t['name']}: {Toxic.from_json(t).describe()}" for t in proxy["toxics"]]
            link = "[green]up[/]" if proxy["enabled"] else "[red]down[/]"
            table.add_row(name, proxy["listen"], proxy["upstream"], link, "\n".join(toxics) or "-")
        console.print(table)
    for what in ("paused", "stopped"):
        if reply[what]:
            console.print(f"{what}: {', '.join(reply[what])}")


@fault_app.command("clear")
def fault_clear(
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Undo every fault: toxics removed, links up, paused resumed, stopped started."""
    reply = _ask({"op": "heal"}, file)
    healed = reply.get("healed") or []
    new_console().print(f"healed: {', '.join(healed)}" if healed else "no faults to clear")


def restart(
    service: Annotated[str, typer.Argument(help="Service to restart (data is kept).")],
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Restart a service of a running stack, keeping its data, ports and password."""
    started = time.monotonic()
    _ask({"op": "restart", "service": service}, file)
    new_console().print(f"restarted {service} in {time.monotonic() - started:.2f}s")


def register(app: typer.Typer) -> None:
    app.command()(restart)
    app.add_typer(fault_app)
    for name, (op, done, doc) in SERVICE_COMMANDS.items():
        app.command(name)(_service_command(op, done, doc))
