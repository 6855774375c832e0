"""The taskflow CLI: ``taskflow task create|get|list``, ``taskflow worker list|status``,
``taskflow system health|info``.

The orchestrator's URL comes from ``--url``, then ``TASKFLOW_URL``, then ``url = "..."`` in
``~/.config/taskflow/config.toml`` (or the file ``TASKFLOW_CONFIG`` names).
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from taskflow.client import OrchestrationClient, TaskflowError, TaskNotFinished

app = typer.Typer(name="taskflow", help="Talk to a taskflow orchestrator.", no_args_is_help=True)
task_app = typer.Typer(help="Create, inspect and list tasks.", no_args_is_help=True)
worker_app = typer.Typer(help="The workers, from their heartbeats.", no_args_is_help=True)
system_app = typer.Typer(help="The system's health and shape.", no_args_is_help=True)
app.add_typer(task_app, name="task")
app.add_typer(worker_app, name="worker")
app.add_typer(system_app, name="system")

UrlOpt = Annotated[str | None, typer.Option("--url", help="The orchestrator's URL.")]


def config_file() -> Path:
    explicit = os.environ.get("TASKFLOW_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "taskflow" / "config.toml"


def resolve_url(url: str | None) -> str:
    if url:
        return url
    if os.environ.get("TASKFLOW_URL"):
        return os.environ["TASKFLOW_URL"]
    path = config_file()
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            fail(f"{path}: not valid TOML: {exc}")
        if isinstance(data.get("url"), str):
            return str(data["url"])
        fail(f'{path}: has no `url = "http://..."`')
    fail("no orchestrator URL: pass --url, set TASKFLOW_URL, or write url = \"...\" in "
         f"{path}")  # fmt: skip


def fail(message: str, code: int = 1) -> Any:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def client(url: str | None) -> OrchestrationClient:
    return OrchestrationClient(resolve_url(url))


def show(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def call(fn: Any) -> Any:
    import httpx

    try:
        return fn()
    except TaskflowError as exc:
        fail(
            str(exc) + (f"\n{json.dumps(exc.body, indent=2)}" if isinstance(exc.body, dict) else "")
        )
    except TaskNotFinished as exc:
        fail(str(exc), 3)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the orchestrator: {exc}")


@task_app.command("create")
def task_create(
    namespace: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Argument(help="Workflow: linear_workflow, diamond_workflow ...")],
    context: Annotated[str, typer.Option(help="The task's context, as JSON.")] = "{}",
    wait: Annotated[float | None, typer.Option(help="Wait up to this many seconds for it.")] = None,
    url: UrlOpt = None,
) -> None:
    """Create a task; with --wait, print it once finished."""
    try:
        parsed = json.loads(context)
    except json.JSONDecodeError as exc:
        fail(f"--context is not JSON: {exc}", 2)
    with client(url) as c:
        created = call(lambda: c.create_task(namespace, name, parsed))
        if wait is None:
            show({"task_uuid": created.task_uuid, "status": created.status})
            return
        task = call(lambda: c.wait_for_completion(created.task_uuid, timeout=wait))
        show({"task_uuid": task.task_uuid, "status": task.status, "result": task.result,
              "error": task.error})  # fmt: skip


@task_app.command("get")
def task_get(task_uuid: str, url: UrlOpt = None) -> None:
    """One task: status, steps, transitions."""
    with client(url) as c:
        task = call(lambda: c.get_task(task_uuid))
        show(task.__dict__ | {"steps": [s.__dict__ for s in task.steps]})


@task_app.command("list")
def task_list(
    namespace: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    cursor: Annotated[str | None, typer.Option()] = None,
    url: UrlOpt = None,
) -> None:
    """Tasks, oldest first; follow next_cursor for more."""
    with client(url) as c:
        show(call(lambda: c.list_tasks(namespace, status, limit, cursor)))


@worker_app.command("list")
def worker_list(url: UrlOpt = None) -> None:
    """Every worker that sent a heartbeat."""
    with client(url) as c:
        show(call(c.workers))


@worker_app.command("status")
def worker_status(url: UrlOpt = None) -> None:
    """How many workers are alive; exit 1 if none."""
    with client(url) as c:
        workers = call(c.workers)
    alive = [w for w in workers if w["alive"]]
    print(f"{len(alive)} of {len(workers)} worker(s) alive: {', '.join(w['id'] for w in alive)}")
    if not alive:
        raise typer.Exit(1)


@system_app.command("health")
def system_health(url: UrlOpt = None) -> None:
    """The orchestrator's /health; exit 1 when unhealthy."""
    with client(url) as c:
        code, body = call(c.health)
    show(body)
    if code != 200:
        raise typer.Exit(1)


@system_app.command("info")
def system_info(url: UrlOpt = None) -> None:
    """Namespaces with their counts, workers, health."""
    with client(url) as c:
        show({"url": c.url, "health": call(c.health)[1], "namespaces": call(c.namespaces),
              "workers": call(c.workers)})  # fmt: skip


def main() -> None:
    app()


if __name__ == "__main__":
    main()
