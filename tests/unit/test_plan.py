"""Planning a run is pure: ports, passwords, proxies and rendered commands, with
nothing started and nothing written."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from stacktest import load_stack
from stacktest.engine.plan import plan_stack
from stacktest.engine.rundir import RunDir

Write = Callable[..., Path]

STACK = """
[services.db]
use = "postgres"
databases = ["app"]

[services.cache]
use = "valkey"
password = true

[services.api]
command = ["python", "-m", "api", "--port", "{port}", "--worker", "{worker.port}"]
env = { DATABASE_URL = "{db.url}/app", CACHE = "{cache.url}" }
ready = { http = "http://127.0.0.1:{port}/health" }
depends_on = { db = { condition = "healthy", proxy = true }, cache = "healthy" }

[services.worker]
command = ["python", "-m", "worker", "{api.url}"]
replicas = 2
depends_on = ["api"]
"""


def _plan(write_stack: Write, tmp_path: Path):  # type: ignore[no-untyped-def]
    spec = load_stack(write_stack(STACK))
    ports = itertools.count(41000)
    run_dir = RunDir(tmp_path / "run")
    return spec, plan_stack(spec, run_dir, "f" * 32, allocate=lambda: next(ports))


def test_every_instance_gets_its_port_in_start_order(write_stack: Write, tmp_path: Path) -> None:
    spec, plan = _plan(write_stack, tmp_path)
    assert list(plan.services) == spec.start_order()
    ports = [i.port for instances in plan.services.values() for i in instances]
    assert len(set(ports)) == len(ports) == 5  # db, cache, api, worker.1, worker.2
    assert [i.name for i in plan.services["worker"]] == ["worker.1", "worker.2"]
    assert plan.api_port not in ports


def test_references_render_in_every_direction_and_through_the_proxy(
    write_stack: Write, tmp_path: Path
) -> None:
    _, plan = _plan(write_stack, tmp_path)
    db, cache = plan.services["db"][0], plan.services["cache"][0]
    api = plan.services["api"][0]
    worker = plan.services["worker"][0]
    edge = plan.edge("api", "db")
    assert edge is not None and edge.upstream == ("127.0.0.1", db.port)
    proxy_port = edge.listen[1]
    # api reaches db through the edge's proxy: same password, the proxy's port
    assert api.env["DATABASE_URL"] == db.fields["url"].replace(
        f":{db.port}", f":{proxy_port}"
    ) + "/app"
    assert db.fields["password"] and db.fields["password"] in api.env["DATABASE_URL"]
    # cache has no proxy: its own address, with its generated password
    assert api.env["CACHE"] == cache.fields["url"] and cache.fields["password"]
    # a reference to a service that starts later ({worker.port} in api) renders too
    assert api.command[-3:] == [str(api.port), "--worker", str(worker.port)]
    assert api.ready is not None and api.ready.target == f"http://127.0.0.1:{api.port}/health"
    assert worker.command[-1] == api.fields["url"]


def test_planning_starts_and_writes_nothing(write_stack: Write, tmp_path: Path) -> None:
    _plan(write_stack, tmp_path)
    assert not (tmp_path / "run").exists()
