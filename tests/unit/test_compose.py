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
    # the mounted initdb.d directory, run as the image runs it (its files in name order)
    assert db.options["initdb"] == [str(shop / "initdb")]
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
            r"equivalent.*\n  hint: start a container engine \(Docker or Podman\) to run it as "
            r"a container \(looked at:\n  unix:///nonexistent/docker.sock \(DOCKER_HOST\): no "
            r"such socket\),\n  or add `x-stacktest: \{ command: \[\.\.\.\] \}`",
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
            r"services\.api\.replicas: replicas must be 1 to 1000, got 0",  # the stack file's own rules
        ),
        (
            "services:\n  api:\n    build: .\n    depends_on: [dbb]\n    x-stacktest: { command: [x] }\n"
            "  db:\n    image: postgres\n",
            r"services\.api\.depends_on\.dbb: unknown service 'dbb'\n  hint: did you mean 'db'",
        ),
    ],
)
def test_bad_compose_files_are_clear_errors(
    tmp_path: Path, compose: str, message: str, no_engine: None
) -> None:
    (tmp_path / "docker-compose.yml").write_text(compose)
    with pytest.raises(ConfigError) as caught:
        load_stack(tmp_path / "docker-compose.yml")
    assert caught.match(message), str(caught.value)


def write_compose(tmp_path: Path, text: str) -> Path:
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    return tmp_path / "compose.yaml"


def test_a_postgres_command_and_environment_go_to_the_server(tmp_path: Path) -> None:
    """The image's contract: -c flags and long options are settings, container paths of
    mounted files are the host files, the entrypoint's variables are read, init files
    mounted one by one run in the order of their names in the container."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "postgresql.conf").write_text("wal_level = logical\n")
    (tmp_path / "pw.txt").write_text("from-a-file\n")
    (tmp_path / "b.sql").write_text("select 1;\n")
    (tmp_path / "a.sh").write_text("true\n")
    path = write_compose(tmp_path, """
        services:
          db:
            image: postgres:16
            command: >-
              postgres -c max_connections=200 -cshared_buffers=64MB --max-prepared-transactions=5
              -c config_file=/etc/postgresql/postgresql.conf -N 300 -F
              -c listen_addresses=* -p 5433
            environment:
              POSTGRES_PASSWORD_FILE: /run/secrets/pw
              POSTGRES_INITDB_ARGS: "--data-checksums --encoding=UTF8"
              POSTGRES_HOST_AUTH_METHOD: md5
              PGDATA: /var/lib/postgresql/data/pgdata
              POSTGRES_INITDB_WALDIR: /var/lib/postgresql/wal
            volumes:
              - ./conf/postgresql.conf:/etc/postgresql/postgresql.conf:ro
              - ./pw.txt:/run/secrets/pw
              - ./b.sql:/docker-entrypoint-initdb.d/01-schema.sql
              - ./a.sh:/docker-entrypoint-initdb.d/02-users.sh
    """)  # fmt: skip
    spec = load_stack(path)
    db = spec.services["db"].options
    assert db["settings"] == {
        "max_connections": "300", "shared_buffers": "64MB", "max_prepared_transactions": "5",
        "config_file": str(tmp_path / "conf" / "postgresql.conf"), "fsync": "off",
    }  # fmt: skip
    assert db["password"] == "from-a-file" and db["host_auth_method"] == "md5"
    assert db["initdb_args"] == ["--data-checksums", "--encoding=UTF8"]
    assert db["initdb"] == [str(tmp_path / "b.sql"), str(tmp_path / "a.sh")]  # 01-, 02-
    notes = "\n".join(spec.warnings)
    assert "-c listen_addresses=*: the server listens on 127.0.0.1 only" in notes
    assert "-p port=5433: the server listens on the port stacktest gives it" in notes
    assert "environment.PGDATA: not used" in notes
    assert db["waldir"] is True  # POSTGRES_INITDB_WALDIR: a directory of its own
    assert "volumes: volume ./conf" not in notes  # used: the config file, not "not mounted"


def test_an_argument_naming_a_container_path_that_is_not_mounted_is_an_error(
    tmp_path: Path,
) -> None:
    path = write_compose(tmp_path, """
        services:
          db:
            image: postgres
            command: ["-c", "config_file=/etc/postgresql/postgresql.conf"]
    """)  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_stack(path)
    message = str(caught.value)
    assert "services.db.command" in message and "no file is mounted there" in message
    assert "volumes: [./postgresql.conf:/etc/postgresql/postgresql.conf]" in message


def test_redis_and_nats_commands_pass_through(tmp_path: Path) -> None:
    (tmp_path / "redis.conf").write_text("maxmemory 64mb\n")
    (tmp_path / "nats.conf").write_text("max_payload: 2MB\n")
    path = write_compose(tmp_path, """
        services:
          cache:
            image: redis:7
            command: >-
              redis-server /usr/local/etc/redis/redis.conf --save 60 1 --loglevel warning
              --enable-debug-command yes --requirepass s3cret --port 6380 --appendonly yes
            volumes: ["./redis.conf:/usr/local/etc/redis/redis.conf"]
          plain:
            image: valkey/valkey:8
            command: ["--save", ""]
          bus:
            image: nats:2.10
            command: "-js -c /etc/nats/nats.conf --user app --pass pw -m 8222 -D --name hub"
            volumes: ["./nats.conf:/etc/nats/nats.conf"]
          other:
            image: nats
            command: ["sh", "-c", "nats-server -js"]
    """)  # fmt: skip
    spec = load_stack(path)
    cache = spec.services["cache"].options
    assert cache["config"] == str(tmp_path / "redis.conf")
    assert cache["settings"] == {"save": "60 1", "loglevel": "warning",
                                 "enable-debug-command": "yes"}  # fmt: skip
    assert cache["password"] == "s3cret" and cache["persistence"] is True
    assert spec.services["plain"].options["settings"] == {"save": ""}
    bus = spec.services["bus"].options
    assert bus["jetstream"] is True and bus["config"] == str(tmp_path / "nats.conf")
    assert bus["args"] == ["--user", "app", "--pass", "pw", "-D", "--name", "hub"]
    notes = "\n".join(spec.warnings)
    assert "cache.command: --port 6380: the server listens on the port stacktest gives it" in notes
    assert "bus.command: -m 8222: monitoring is on the port stacktest gives it ({bus.monitor_port}" in notes
    assert "other.command: sh -c 'nats-server -js': not run: it is not the server" in notes
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


def test_nginx_mounts_become_its_configuration(tmp_path: Path) -> None:
    for name in ("site.conf", "nginx.conf", "api.conf.template"):
        (tmp_path / name).write_text("# x\n")
    path = write_compose(tmp_path, """
        services:
          api:
            build: .
            expose: ["8000"]
            x-stacktest: { command: [x] }
          a:
            image: nginx
            ports: ["8080:80"]
            volumes: ["./site.conf:/etc/nginx/conf.d/site.conf:ro"]
          b:
            image: nginx:1.25
            volumes: ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
          c:
            image: nginx
            environment: { UPSTREAM: "api:8000" }
            volumes: ["./api.conf.template:/etc/nginx/templates/api.conf.template"]
    """)  # fmt: skip
    spec = load_stack(path)
    a, b, c = (spec.services[n] for n in "abc")
    assert a.port == 8080 and a.options["conf_d"] == [str(tmp_path / "site.conf")]
    assert b.options["config"] == str(tmp_path / "nginx.conf") and b.options["version"] == "1.25"
    assert c.options["templates"] == [str(tmp_path / "api.conf.template")]
    assert c.env["UPSTREAM"] == "{api.host}:{api.port}"  # rendered at plan, into the template
    assert a.options["addresses"]["api:8000"] == "{api.host}:{api.port}"  # others' addresses
    assert "a:80" not in a.options["addresses"]  # (not its own)
    # written without a port, an address means HTTP's 80: a's port, not api's (8000)
    assert c.options["addresses"]["http://a"] == "http://{a.host}:{a.port}"
    assert "http://api" not in c.options["addresses"]


def test_every_password_in_an_environment_becomes_a_reference(tmp_path: Path) -> None:
    """MARIADB_ROOT_PASSWORD and MARIADB_PASSWORD (a server's own) and a client's URL:
    the same values, redacted wherever the stack is shown."""
    path = write_compose(tmp_path, """
        services:
          db:
            image: mariadb:10.11
            environment:
              MARIADB_ROOT_PASSWORD: root-secret
              MARIADB_USER: shop
              MARIADB_PASSWORD: shop-secret
              MARIADB_DATABASE: shop
              MARIADB_INITDB_SKIP_TZINFO: "1"
          app:
            build: .
            environment: { DATABASE_URL: "mysql://root:root-secret@db:3306/shop" }
            x-stacktest: { command: [x] }
    """)  # fmt: skip
    spec = load_stack(path)
    db, app = spec.services["db"], spec.services["app"]
    assert db.options["root_password"] == "root-secret" and db.options["password"] == "shop-secret"
    assert db.env["MARIADB_ROOT_PASSWORD"] == "{db.root_password}"
    assert db.env["MARIADB_PASSWORD"] == "{db.password}"
    assert db.options["timezones"] is False  # MARIADB_INITDB_SKIP_TZINFO
    assert app.env["DATABASE_URL"] == "mysql://root:{db.root_password}@{db.host}:{db.port}/shop"
