"""docker-compose files -> the stack model: what maps to what, and clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stacktest.engine import graph
from stacktest.errors import ConfigError
from stacktest.spec.load import load_stack
from stacktest.spec.model import Condition

COMPOSE = """
name: shop
services:
  db:
    image: docker.io/library/postgres:16-alpine
    environment:
      - POSTGRES_USER=shop
      - SHOP_UNSET_VAR
      - POSTGRES_PASSWORD=${SHOP_PW:-s3cret}
    volumes:
      - ./initdb:/docker-entrypoint-initdb.d
      - data:/var/lib/postgresql/data
  cache:
    image: redis:7
    command: redis-server --requirepass hunter22 --appendonly yes
  bus:
    image: nats:latest
    command: ["--jetstream", "-m", "8222"]
  api:
    build: ./api
    ports: ["127.0.0.1:8080:8000"]
    environment:
      DATABASE_URL: postgres://shop:${SHOP_PW:-s3cret}@db:5432/shop
      REDIS_URL: redis://:hunter22@cache:6379/0
      NATS: nats://bus:4222
      BUS_DEFAULT_PORT: nats://bus
      DB_NO_PORT: postgresql://shop@db/shop?sslmode=disable
      WEB_NO_PORT: http://api/health
      PGHOST: db
      PGPORT: "5432"
      PORT: 8000
      GREETING: "{not a reference}"
      RELEASE: $RELEASE
    env_file: [api.env, { path: missing.env, required: false }]
    depends_on:
      db: { condition: service_healthy, restart: true }
      migrate: { condition: service_completed_successfully }
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8000/health"]
      timeout: 2s
    restart: on-failure:3
    deploy: { replicas: 2 }
    x-stacktest:
      command: ["python", "-m", "api", "--port", "{port}"]
  migrate:
    build: ./api
    depends_on: [db, admin]
    x-stacktest: { command: ["python", "-m", "api.migrate"] }
  admin:
    image: dpage/pgadmin4
    x-stacktest: { skip: true }
  debug:
    image: busybox
    profiles: [debug]
x-stacktest:
  proxy: true
"""


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SHOP_PW", raising=False)
    (tmp_path / "initdb").mkdir()
    (tmp_path / "initdb" / "2-data.sql").write_text("insert into t values (1);\n")
    (tmp_path / "initdb" / "1-schema.sql").write_text("create table t (x int);\n")
    (tmp_path / ".env").write_text("# release from .env\nRELEASE='2.1'\n")
    (tmp_path / "api.env").write_text("LOG_LEVEL=debug\nPORT=1\n")  # environment wins
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    return tmp_path


def test_images_become_providers(shop: Path) -> None:
    spec = load_stack(shop / "docker-compose.yml")
    assert spec.name == "shop" and spec.proxy is True
    assert sorted(spec.services) == ["api", "bus", "cache", "db", "migrate"]  # skip, profiles
    db = spec.services["db"]
    assert db.use == "postgres"
    assert db.options["user"] == "shop" and db.options["password"] == "s3cret"
    assert db.options["databases"] == ["shop"]  # Compose: POSTGRES_DB defaults to the user
    assert [Path(p).name for p in db.options["init"]] == ["1-schema.sql", "2-data.sql"]
    cache = spec.services["cache"]
    assert cache.use == "redis" and cache.options["password"] == "hunter22"
    assert cache.options["persistence"] is True
    assert spec.services["bus"].use == "nats" and spec.services["bus"].options["jetstream"]


def test_own_services_become_processes_wired_to_the_local_servers(shop: Path) -> None:
    spec = load_stack(shop / "docker-compose.yml")
    api = spec.services["api"]
    assert api.command == ("python", "-m", "api", "--port", "{port}")
    assert api.cwd == "./api" and api.replicas == 2
    assert (api.restart, api.max_restarts) == ("on-failure", 3)
    assert api.env["DATABASE_URL"] == "postgres://shop:{db.password}@{db.host}:{db.port}/shop"
    assert api.env["REDIS_URL"] == "redis://:{cache.password}@{cache.host}:{cache.port}/0"
    assert api.env["NATS"] == "nats://{bus.host}:{bus.port}"
    assert api.env["BUS_DEFAULT_PORT"] == "nats://{bus.host}:{bus.port}"  # nats' default port
    assert api.env["DB_NO_PORT"] == "postgresql://shop@{db.host}:{db.port}/shop?sslmode=disable"
    assert api.env["WEB_NO_PORT"] == "http://api/health"  # port 80 is not api's 8000: kept
    assert (api.env["PGHOST"], api.env["PGPORT"]) == ("{db.host}", "{db.port}")
    assert api.env["PORT"] == "{port}"  # its own container port
    assert api.env["GREETING"] == "{{not a reference}}"  # literal braces stay literal
    assert api.env["RELEASE"] == "2.1"  # from .env
    assert api.env["LOG_LEVEL"] == "debug"  # from env_file
    assert api.ready is not None and api.ready.kind == "command"
    assert api.ready.argv == ("curl", "-f", "http://127.0.0.1:{port}/health")
    assert api.ready.attempt_timeout == 2.0
    conditions = {d.service: d.condition for d in api.depends_on}
    assert conditions == {"db": Condition.HEALTHY, "migrate": Condition.COMPLETED}
    assert {d.service: d.restart for d in api.depends_on} == {"db": True, "migrate": False}
    assert graph.restart_order(spec, "db") == ["api"]  # stacktest restart db restarts api too
    assert [(d.service, d.condition) for d in spec.services["migrate"].depends_on] == [
        ("db", Condition.STARTED)  # the short form is service_started; admin, skipped, is not
    ]


def test_a_directory_with_only_a_compose_file_is_read(shop: Path) -> None:
    assert load_stack(shop).source.name == "docker-compose.yml"
    assert load_stack(shop / "stack.toml").source.name == "docker-compose.yml"  # the default
    (shop / "stack.toml").write_text('[services.db]\nuse = "postgres"\n')
    assert load_stack(shop).source.name == "stack.toml"  # which wins when both are there


def test_the_environment_wins_over_dotenv_and_defaults(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_PW", "from-env")
    monkeypatch.setenv("RELEASE", "3.0")
    spec = load_stack(shop / "docker-compose.yml")
    assert spec.services["db"].options["password"] == "from-env"
    assert spec.services["api"].env["RELEASE"] == "3.0"


@pytest.mark.parametrize(
    ("compose", "message"),
    [
        (
            "services:\n  api:\n    image: mycorp/api:1.2\n",
            r"docker-compose.yml:2: services\.api: image 'mycorp/api:1\.2' has no local "
            r"equivalent.*\n  hint: add `x-stacktest: \{ command: \[\.\.\.\] \}`",
        ),
        (
            "services:\n  api:\n    build: .\n",
            r"services\.api: a `build:` service has no local equivalent",
        ),
        (
            "services:\n  api:\n    build: .\n    environment:\n      TOKEN: ${NOPE_TOKEN:?give a token}\n"
            "    x-stacktest: { command: [x] }\n",
            r"docker-compose.yml:5: services\.api\.environment\.TOKEN: required variable "
            r"NOPE_TOKEN is missing a value: give a token",
        ),
        ("services:\n  db: [\n", r"docker-compose.yml:3: not valid YAML"),
        (
            "services:\n  api:\n    build: .\n    env_file: nope.env\n    x-stacktest: { command: [x] }\n",
            r"services\.api\.env_file: no env file at .*nope\.env\n  hint: create it, or mark it",
        ),
        ("version: '3'\n", r"a compose file needs a `services:` mapping"),
        (
            "services:\n  api:\n    build: .\n    x-stacktest: { command: [x], replicas: 0 }\n",
            r"services\.api\.replicas: replicas must be at least 1",  # the stack file's own rules
        ),
        (
            "services:\n  api:\n    build: .\n    depends_on: [dbb]\n    x-stacktest: { command: [x] }\n"
            "  db:\n    image: postgres\n",
            r"services\.api\.depends_on\.dbb: unknown service 'dbb'\n  hint: did you mean 'db'",
        ),
    ],
)
def test_bad_compose_files_are_clear_errors(tmp_path: Path, compose: str, message: str) -> None:
    (tmp_path / "docker-compose.yml").write_text(compose)
    with pytest.raises(ConfigError) as caught:
        load_stack(tmp_path / "docker-compose.yml")
    assert caught.match(message), str(caught.value)


def test_shell_init_scripts_are_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "init").mkdir()
    (tmp_path / "init" / "setup.sh").write_text("psql -c 'select 1'\n")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        services:
          db:
            image: postgres
            volumes: ["./init:/docker-entrypoint-initdb.d"]
    """))  # fmt: skip
    with pytest.raises(ConfigError, match=r"setup\.sh: only \.sql init scripts are run"):
        load_stack(tmp_path / "compose.yaml")


def test_a_bare_list_variable_passes_through_only_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ST_PASSED", "a$b")
    monkeypatch.delenv("ST_NOT_SET", raising=False)
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        services:
          app:
            build: .
            environment: [ST_PASSED, ST_NOT_SET, PLAIN=1]
            x-stacktest: { command: [x] }
    """))  # fmt: skip
    env = load_stack(tmp_path / "compose.yaml").services["app"].env
    assert env == {"ST_PASSED": "a$b", "PLAIN": "1"}


def test_an_unset_variable_is_empty_with_a_warning_and_an_error_when_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    (tmp_path / "compose.yaml").write_text(
        "services:\n  api:\n    build: .\n    environment:\n      TOKEN: ${NOPE_TOKEN}\n"
        "    x-stacktest: { command: [x] }\n"
    )
    spec = load_stack(tmp_path / "compose.yaml")
    assert spec.services["api"].env["TOKEN"] == ""
    assert any(w.startswith("variable NOPE_TOKEN is not set") for w in spec.warnings)
    with pytest.raises(ConfigError, match=r"variable NOPE_TOKEN is not set \(strict"):
        load_stack(tmp_path / "compose.yaml", strict=True)
