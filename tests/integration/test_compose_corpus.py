"""Compose files written the way real projects write them (tests/compose/), brought up for
real; real clients connect at the ports the files publish; nothing is left after."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
import urllib.request
from pathlib import Path

import nats
import psycopg
import pytest
import redis

from stacktest import Stack, eventually, load_stack
from stacktest.engine import procs
from stacktest.errors import ConfigError

pytestmark = pytest.mark.integration
CORPUS = Path(__file__).resolve().parent.parent / "compose"


def copy(case: str, tmp_path: Path) -> Path:
    target = tmp_path / case
    shutil.copytree(CORPUS / case, target)
    return target


def nothing_left(run_dir: Path) -> bool:
    return not list(procs.tagged(**{procs.TAG_RUN_DIR: str(run_dir)}))


def test_a_web_project_with_dotenv_override_anchors_and_healthchecks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("DB_USER", "DB_PASSWORD", "DB_PORT", "REDIS_PASSWORD", "REDIS_PORT", "LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    project = copy("webapp", tmp_path)
    spec = load_stack(project / "stack.toml")  # no stack.toml: the compose file and its override
    assert [f.name for f in spec.files] == ["docker-compose.yml", "docker-compose.override.yml"]
    web = spec.services["web"]
    assert web.env["LOG_LEVEL"] == "debug" and web.env["TZ"] == "UTC"  # override, anchor
    notes = "\n".join(spec.warnings)
    for said in ("volume pgdata:/var/lib/postgresql/data: not mounted", "redis.tmpfs: /data: not mounted",
                 "web.tmpfs: /var/cache/web is RUN_DIR/tmpfs/web-var_cache_web",
                 "a built-in server's data volume is not used"):
        assert said in notes, notes
    # the servers' own healthchecks run, as well as stacktest's protocol checks
    postgres, cache = spec.services["postgres"], spec.services["redis"]
    assert postgres.ready is not None and postgres.ready.argv == ("pg_isready -U ${{POSTGRES_USER}}",)
    assert cache.ready is not None and cache.ready.argv == ("redis-cli", "-a", "{redis.password}", "ping")
    with Stack(spec) as stack:
        url = "postgresql://webapp:dev%20pass@127.0.0.1:15432/webapp"  # the .env's password
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM visits").fetchone() == (1,)  # initdb
        cache = redis.Redis(host="127.0.0.1", port=16379, password="redis-webapp")
        assert cache.ping() and cache.config_get("appendonly")["appendonly"] == "yes"
        cache.close()
        # the tmpfs is a directory of the run, empty at start: the web service serves it
        with urllib.request.urlopen("http://127.0.0.1:18080/probe.txt", timeout=10) as response:
            assert response.status == 200 and response.read() == b"ok\n"
        tmpfs = stack.run_dir.path / "tmpfs" / "web-var_cache_web"
        assert [p.name for p in tmpfs.iterdir()] == ["probe.txt"]
        (tmpfs / "left-behind.txt").write_text("gone next run")
        run_dir = stack.run_dir.path
    assert eventually(lambda: nothing_left(run_dir), timeout=10)
    with Stack(load_stack(project / "stack.toml")):  # the next run's tmpfs starts empty
        assert [p.name for p in tmpfs.iterdir()] == ["probe.txt"]


def test_a_platform_repo_with_include_extends_profiles_and_env_file_chains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_engine: None
) -> None:
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    project = copy("platform", tmp_path)
    spec = load_stack(project / "compose.yaml")
    assert spec.name == "platform"
    assert set(spec.services) == {"bus", "worker", "worker-high", "cache"}  # admin: a profile
    assert spec.services["worker"].env["ZONE"] == "eu-1"  # env_file: an earlier key
    assert spec.services["worker-high"].env["QUEUE"] == "high"  # extends extends
    assert spec.services["bus"].options["jetstream"] is True
    assert "bus.command: --http_port 8222: monitoring is on the port stacktest gives it" in (
        "\n".join(spec.warnings)
    )  # (--jetstream is read)
    with Stack(spec) as stack:
        async def jetstream_at_the_published_port() -> str:
            nc = await nats.connect("nats://127.0.0.1:14222")
            info = await nc.jetstream().account_info()
            await nc.close()
            return str(info.limits)

        assert asyncio.run(jetstream_at_the_published_port())
        assert redis.Redis(host="127.0.0.1", port=16380).ping()
        log = stack["worker"].log_path.read_text()
        assert f"worker default nats://127.0.0.1:{stack['bus'].port}" in log
        assert "worker high" in stack["worker-high"].log_path.read_text()
        run_dir = stack.run_dir.path
    assert eventually(lambda: nothing_left(run_dir), timeout=10)
    # with its profile active, the admin UI is in, and said to have no local equivalent
    with pytest.raises(ConfigError, match=r"services\.admin: image 'dpage/pgadmin4' has no local"):
        load_stack(project / "compose.yaml", profiles=["tools"])


def test_a_monorepo_with_an_included_infra_project_and_every_healthcheck_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("API_PORT", "FALLBACK_PORT", "ORDERS_PW", "ORDERS_DB", "FLAGS", "UNSET_FLAGS"):
        monkeypatch.delenv(var, raising=False)
    project = copy("shopfront", tmp_path)
    spec = load_stack(project / "compose.yaml")
    api, db = spec.services["api"], spec.services["orders-db"]
    # the including project's .env wins over the included project's env file; that file
    # fills in what the project does not set (ORDERS_DB)
    assert db.options["password"] == "ci-orders-pw" and db.options["databases"] == ["orders"]
    assert db.ready is not None and db.ready.argv == ("pg_isready", "-U", "orders", "-d", "orders")
    assert api.port == 18500  # ${API_PORT:-${FALLBACK_PORT:-18500}}
    assert api.env["FEATURE_ARGS"] == "--flags=beta" and api.env["NO_FLAGS"] == ""  # :+
    assert api.ready is not None and api.ready.shell  # a string test is CMD-SHELL
    assert {d.service: d.restart for d in api.depends_on} == {"orders-db": True, "cache": False}
    assert spec.services["notifier"].ready is None  # test: [NONE]
    assert spec.services["metrics-agent"].ready is None  # disable: true
    notes = "\n".join(spec.warnings)
    assert "api.ports: 18600-18601:9000-9001: not published" in notes
    with Stack(spec) as stack:
        # init scripts found in the included project's directory ran
        with psycopg.connect(stack["orders-db"].url + "/orders") as conn:
            assert conn.execute("SELECT item FROM orders").fetchall() == [("first",)]
        with urllib.request.urlopen("http://127.0.0.1:18500/", timeout=10) as response:
            assert response.status == 200
        before = {name: stack[name].pids[0] for name in stack.services}
        stack.restart("orders-db")  # api asked to follow it; notifier did not
        after = {name: stack[name].pids[0] for name in stack.services}
        assert {n for n in before if before[n] != after[n]} == {"orders-db", "api"}
        with urllib.request.urlopen("http://127.0.0.1:18500/", timeout=10) as response:
            assert response.status == 200  # the same published port after the restart
        run_dir = stack.run_dir.path
    assert eventually(lambda: nothing_left(run_dir), timeout=10)


def test_named_volumes_outlive_a_run_and_down_v_removes_them(tmp_path: Path) -> None:
    from tests.helpers import run_stacktest

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "greeting.txt").write_text("hello from the bind mount\n")
    (tmp_path / "compose.yaml").write_text(
        textwrap.dedent(
            """\
            services:
              app:
                build: .
                volumes: ["./conf:/etc/app:ro", "state:/var/lib/app"]
                environment: { GREETING_FILE: /etc/app/greeting.txt, STATE: /var/lib/app }
                x-stacktest:
                  command: ["python", "-c", "import os, time; n = os.path.join(os.environ['STATE'], 'runs'); open(n, 'a').write('x'); print(open(os.environ['GREETING_FILE']).read().strip(), len(open(n).read())); time.sleep(600)"]
                  ready: { log: "hello from the bind mount" }
            volumes:
              state: {}
            """
        )
    )
    for expected in ("1", "2"):  # the second run finds what the first wrote
        assert run_stacktest("up", "-d", cwd=tmp_path).returncode == 0
        log = run_stacktest("logs", "app", cwd=tmp_path).stdout
        assert f"hello from the bind mount {expected}" in log, log
        assert run_stacktest("down", cwd=tmp_path).returncode == 0
    assert (tmp_path / ".stacktest" / "volumes" / "state" / "runs").read_text() == "xx"
    removed = run_stacktest("down", "-v", cwd=tmp_path)
    assert "removed volumes: state" in removed.stdout
    assert not (tmp_path / ".stacktest" / "volumes").exists()


def test_a_rails_style_file_with_a_migration_job_and_env_file_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("DB_PASSWORD", "DB_PORT", "WEB_PORT", "RAILS_ENV"):
        monkeypatch.delenv(var, raising=False)
    project = copy("rails", tmp_path)
    spec = load_stack(project / "docker-compose.yml")
    web = spec.services["web"]
    assert web.env["SECRET_KEY_BASE"] == "dev-only-development"  # an earlier key of the file
    assert web.env["DATABASE_URL"] == "postgres://rails:{db.password}@{db.host}:{db.port}/rails_dev"
    notes = "\n".join(spec.warnings)
    assert spec.services["cache"].options["settings"] == {"save": ""}  # passed to the server
    assert "web.stdin_open: ignored" in notes and "version: obsolete" in notes
    with Stack(spec) as stack:
        assert stack["migrate"].pids  # it ran, and web waited for it to complete
        with psycopg.connect("postgresql://rails:rails-pw@127.0.0.1:25432/rails_dev") as conn:
            assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [("20261201",)]
        with urllib.request.urlopen("http://127.0.0.1:13000/", timeout=10) as response:
            assert response.status == 200
        cache = redis.Redis.from_url(stack["cache"].url)
        assert cache.config_get("save") == {"save": ""}  # --save "" reached the server
        cache.close()
        run_dir = stack.run_dir.path
    assert eventually(lambda: nothing_left(run_dir), timeout=10)


def test_replicated_workers_with_healthchecks_and_resource_limits(tmp_path: Path) -> None:
    project = copy("workers", tmp_path)
    spec = load_stack(project / "compose.yaml")
    worker = spec.services["worker"]
    assert worker.replicas == 3 and worker.restart == "always" and worker.port is None
    assert worker.start_timeout == 5 * (1 + 30)  # retries x (interval + the default timeout)
    notes = "\n".join(spec.warnings)
    assert "worker.deploy.resources: ignored" in notes
    assert "nats.ports: 28222:8222: not published (only the service's main port" in notes
    assert "nats.command: -sd /data: JetStream's store is in the run's data directory" in notes
    assert "nats.command: -m 8222: monitoring is on the port stacktest gives it" in notes
    with Stack(spec) as stack:
        names = [r["name"] for r in stack.status() if r["service"] == "worker"]
        assert names == ["worker.1", "worker.2", "worker.3"]
        for name in names:
            assert f"worker {name} up" in (stack.run_dir.path / "logs" / f"{name}.log").read_text()

        async def published() -> bool:
            nc = await nats.connect("nats://127.0.0.1:24222")
            await nc.close()
            return True

        assert asyncio.run(published())


def test_a_servers_own_healthcheck_that_cannot_pass_fails_the_start(tmp_path: Path) -> None:
    from stacktest.errors import ServiceStartTimeout

    (tmp_path / "compose.yaml").write_text(
        "services:\n  cache:\n    image: valkey/valkey:8\n    healthcheck:\n"
        "      test: [CMD-SHELL, 'echo no such key; exit 3']\n"
        "      interval: 1s\n      timeout: 1s\n      retries: 1\n"
    )
    spec = load_stack(tmp_path / "compose.yaml")
    assert spec.services["cache"].start_timeout == 2
    with pytest.raises(ServiceStartTimeout) as caught, Stack(spec):
        pass
    message = str(caught.value)
    assert "then its own check 'echo no such key; exit 3'" in message
    assert "its healthcheck exited 3: no such key" in message
