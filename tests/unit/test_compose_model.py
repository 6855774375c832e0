"""Which compose files are read, and how they merge, as `docker compose` does it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from stacktest.errors import ConfigError
from stacktest.spec.load import load_stack
from stacktest.spec.model import Condition


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


BASE = """
name: shop
x-app: &app
  build: .
  environment: &env
    LOG: info
    MODE: base
  x-stacktest: { command: ["python", "-m", "app"] }
services:
  db:
    image: postgres:16
  api:
    <<: *app
    environment:
      <<: *env
      MODE: api
    depends_on: [db]
"""


def test_anchors_merge_keys_and_x_fields(tmp_path: Path) -> None:
    spec = load_stack(write(tmp_path / "compose.yaml", BASE))
    assert spec.name == "shop" and set(spec.services) == {"db", "api"}  # x-app is no service
    assert spec.services["api"].env == {"LOG": "info", "MODE": "api"}


def test_several_files_merge_in_order(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", BASE)
    write(
        tmp_path / "compose.test.yaml",
        """
        services:
          api:
            environment: { MODE: test, EXTRA: "1" }
            depends_on:
              cache: { condition: service_healthy }
            x-stacktest: { command: ["python", "-m", "app", "--test"] }
          cache:
            image: valkey/valkey:8
        """,
    )
    spec = load_stack([tmp_path / "compose.yaml", tmp_path / "compose.test.yaml"])
    api = spec.services["api"]
    assert api.env == {"LOG": "info", "MODE": "test", "EXTRA": "1"}  # mappings merge
    assert api.command == ("python", "-m", "app", "--test")  # a later x-stacktest wins
    assert {d.service: d.condition for d in api.depends_on} == {
        "db": Condition.STARTED, "cache": Condition.HEALTHY,
    }  # fmt: skip
    assert [f.name for f in spec.files] == ["compose.yaml", "compose.test.yaml"]
    # the same as one ':'-separated string (COMPOSE_FILE's form)
    joined = load_stack(f"{tmp_path / 'compose.yaml'}:{tmp_path / 'compose.test.yaml'}")
    assert joined.services["api"].env == api.env


def test_the_override_file_comes_with_the_default_file_only(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml", BASE)
    write(tmp_path / "compose.override.yaml", "services:\n  api:\n    environment: { MODE: dev }\n")
    implicit = load_stack(tmp_path / "stack.toml")  # no stack.toml: the compose file, as `up`
    assert implicit.services["api"].env["MODE"] == "dev"
    assert [f.name for f in implicit.files] == ["compose.yaml", "compose.override.yaml"]
    explicit = load_stack(tmp_path / "compose.yaml")  # -f names it: no override (Compose's rule)
    assert explicit.services["api"].env["MODE"] == "api"


def test_compose_file_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "base.yml", BASE)
    write(tmp_path / "ci.yml", "services:\n  api:\n    environment: { MODE: ci }\n")
    monkeypatch.setenv("COMPOSE_FILE", "base.yml:ci.yml")
    spec = load_stack(tmp_path / "stack.toml")
    assert spec.services["api"].env["MODE"] == "ci"


def test_extends_in_the_same_file_and_from_another(tmp_path: Path) -> None:
    write(
        tmp_path / "common" / "services.yml",
        """
        services:
          worker-base:
            build: ./worker
            environment: { QUEUE: default, LOG: warn }
            x-stacktest: { command: ["python", "-m", "worker"] }
        """,
    )
    write(
        tmp_path / "compose.yaml",
        """
        services:
          db:
            image: postgres
          web:
            extends: { file: common/services.yml, service: worker-base }
            environment: { LOG: debug }
          web-2:
            extends: web
            environment: { QUEUE: high }
        """,
    )
    spec = load_stack(tmp_path / "compose.yaml")
    web, web2 = spec.services["web"], spec.services["web-2"]
    assert web.env == {"QUEUE": "default", "LOG": "debug"}
    assert web2.env == {"QUEUE": "high", "LOG": "debug"}
    assert web.command == ("python", "-m", "worker")
    assert web.cwd == "./common/worker"  # a path in the other file means what it meant there
    assert any(p.name == "services.yml" for p in spec.inputs)  # in the digest


def test_include(tmp_path: Path) -> None:
    write(tmp_path / "infra" / "compose.yaml", "services:\n  db:\n    image: postgres\n")
    write(
        tmp_path / "compose.yaml",
        """
        include:
          - infra/compose.yaml
        services:
          api:
            build: .
            depends_on: [db]
            x-stacktest: { command: [x] }
        """,
    )
    assert set(load_stack(tmp_path / "compose.yaml").services) == {"db", "api"}
    write(tmp_path / "twice.yaml", "include: [infra/compose.yaml]\nservices:\n  db:\n    image: postgres\n")
    with pytest.raises(ConfigError, match="services db are defined twice"):
        load_stack(tmp_path / "twice.yaml")


def test_an_included_file_is_a_project_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its relative paths mean what they mean in its directory (or its project_directory),
    and its own .env (or the entry's env_file) gives defaults under the including
    project's variables, as in Compose."""
    write(tmp_path / "infra" / ".env", "DB_USER=infra\nDB_NAME=infra_db\n")
    write(tmp_path / "infra" / "db.env", "TZ=UTC\n")
    write(
        tmp_path / "infra" / "compose.yaml",
        """
        services:
          db:
            image: postgres
            environment: { POSTGRES_USER: "${DB_USER}", POSTGRES_DB: "${DB_NAME}" }
          tool:
            build: ./tool
            env_file: ./db.env
            x-stacktest: { command: [x] }
        """,
    )
    write(tmp_path / ".env", "DB_NAME=from_main\n")
    write(
        tmp_path / "compose.yaml",
        """
        include:
          - infra/compose.yaml
        services:
          api:
            build: .
            depends_on: [db]
            x-stacktest: { command: [x] }
        """,
    )
    spec = load_stack(tmp_path / "compose.yaml")
    db, tool = spec.services["db"], spec.services["tool"]
    # the including project's variables win; the included project's .env fills the rest
    assert db.options["databases"] == ["from_main"] and db.options["user"] == "infra"
    assert tool.cwd == "./infra/tool" and tool.env == {"TZ": "UTC"}
    assert tmp_path / "infra" / ".env" in spec.inputs  # in the digest
    monkeypatch.setenv("DB_USER", "shell")
    assert load_stack(tmp_path / "compose.yaml").services["db"].options["user"] == "shell"


def test_include_entry_with_project_directory_and_env_file(tmp_path: Path) -> None:
    write(tmp_path / "envs" / "ci.env", "DB_NAME=ci\n")
    write(tmp_path / "shared" / "tool" / "x.env", "A=1\n")
    write(
        tmp_path / "defs" / "infra.yaml",
        """
        services:
          db:
            image: postgres
            environment: { POSTGRES_DB: "${DB_NAME:-default}" }
          tool:
            build: ./tool
            env_file: ./tool/x.env
            x-stacktest: { command: [x] }
        """,
    )
    write(
        tmp_path / "compose.yaml",
        """
        include:
          - path: defs/infra.yaml
            project_directory: shared
            env_file: envs/ci.env
        """,
    )
    spec = load_stack(tmp_path / "compose.yaml")
    assert spec.services["db"].options["databases"] == ["ci"]
    assert spec.services["tool"].cwd == "./shared/tool" and spec.services["tool"].env == {"A": "1"}
    write(tmp_path / "bad.yaml", "include:\n  - path: defs/infra.yaml\n    env_file: nope.env\n")
    with pytest.raises(ConfigError, match="no such env file") as info:
        load_stack(tmp_path / "bad.yaml")
    assert "nope.env" in str(info.value)


PROFILED = """
services:
  db:
    image: postgres
  debug:
    image: postgres
    profiles: [debug]
  seed:
    build: .
    profiles: [seed, debug]
    depends_on: [db]
    x-stacktest: { command: [x] }
"""


def test_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    path = write(tmp_path / "compose.yaml", PROFILED)
    assert set(load_stack(path).services) == {"db"}
    assert set(load_stack(path, profiles=["seed"]).services) == {"db", "seed"}
    assert set(load_stack(path, profiles=["debug"]).services) == {"db", "debug", "seed"}
    monkeypatch.setenv("COMPOSE_PROFILES", "seed,other")
    spec = load_stack(path)
    assert set(spec.services) == {"db", "seed"} and spec.profiles == ("seed", "other")


def test_every_unrunnable_service_in_one_message(tmp_path: Path, no_engine: None) -> None:
    path = write(
        tmp_path / "compose.yaml",
        "services:\n  a:\n    image: minio/minio\n  b:\n    build: .\n  db:\n    image: postgres\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_stack(path)
    message = str(caught.value)
    assert "services.a: image 'minio/minio' has no local equivalent" in message
    assert "services.b: a `build:` service has no local equivalent" in message


def test_restart_policies_as_compose_means_them(tmp_path: Path) -> None:
    path = write(
        tmp_path / "compose.yaml",
        """
        services:
          a: { build: ., restart: always, x-stacktest: { command: [x] } }
          b: { build: ., restart: unless-stopped, x-stacktest: { command: [x] } }
          c: { build: ., restart: "on-failure:2", x-stacktest: { command: [x] } }
          d: { build: ., restart: "no", x-stacktest: { command: [x] } }
        """,
    )
    services = load_stack(path).services
    assert [services[n].restart for n in "abcd"] == ["always", "always", "on-failure", "no"]
    assert services["c"].max_restarts == 2 and services["a"].max_restarts > 1000


def test_healthcheck_timing_is_the_start_deadline(tmp_path: Path) -> None:
    path = write(
        tmp_path / "compose.yaml",
        """
        services:
          api:
            build: .
            healthcheck:
              test: curl -f http://localhost:8000/health
              interval: 2s
              timeout: 1s
              retries: 5
              start_period: 1m30s
            x-stacktest: { command: [x] }
        """,
    )
    api = load_stack(path).services["api"]
    assert api.start_timeout == 90 + 5 * (2 + 1)
    assert api.ready is not None and api.ready.attempt_timeout == 1.0


def test_published_ports_pin_the_main_port_and_the_rest_is_said(tmp_path: Path) -> None:
    path = write(
        tmp_path / "compose.yaml",
        """
        services:
          db:
            image: postgres
            ports: ["5433:5432", "0.0.0.0:9187:9187"]
          api:
            build: .
            ports: [{ target: 8000, published: 8080, host_ip: 0.0.0.0 }]
            x-stacktest: { command: [x] }
          workers:
            build: .
            ports: ["9000:9000"]
            deploy: { replicas: 2 }
            x-stacktest: { command: [x] }
        """,
    )
    spec = load_stack(path)
    assert spec.services["db"].port == 5433
    assert spec.services["api"].port == 8080
    assert spec.services["workers"].port is None
    notes = "\n".join(spec.warnings)
    assert "services.db.ports: 0.0.0.0:9187:9187: not published (only the service's main port" in notes
    assert "listens on 127.0.0.1:8080 only (loopback)" in notes
    assert "services.workers.ports: 9000:9000: not published (2 replicas cannot share one port)" in notes


def test_stacktest_import_writes_the_same_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from typer.testing import CliRunner

    from stacktest.cli import app

    for var in ("DB_USER", "DB_PASSWORD", "DB_PORT", "REDIS_PASSWORD", "REDIS_PORT", "LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    project = tmp_path / "webapp"
    shutil.copytree(Path(__file__).resolve().parents[1] / "compose" / "webapp", project)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["import"])
    assert result.exit_code == 0, result.output
    written = (project / "stack.toml").read_text()
    assert written.startswith("# stack.toml written by `stacktest import` from ")
    assert "#   services.redis.tmpfs: /data: not mounted" in written  # the notes, at its top
    imported = load_stack(project / "stack.toml")
    compose = load_stack([project / "docker-compose.yml", project / "docker-compose.override.yml"])
    assert imported.services == compose.services
    again = CliRunner().invoke(app, ["import", "-f", "docker-compose.yml"])
    assert again.exit_code == 1 and "exists" in again.output and "--force" in again.output


def test_the_docker_host_is_this_machine(tmp_path: Path) -> None:
    path = write(
        tmp_path / "compose.yaml",
        """
        services:
          app:
            build: .
            environment:
              API: http://host.docker.internal:9000/v1
              OTHER: my-host.docker.internal.example
            x-stacktest: { command: [x] }
        """,
    )
    env = load_stack(path).services["app"].env
    assert env["API"] == "http://127.0.0.1:9000/v1"
    assert env["OTHER"] == "my-host.docker.internal.example"  # only the name itself


def test_a_local_process_sees_its_volumes_where_the_container_would(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    path = write(
        tmp_path / "compose.yaml",
        """
        services:
          app:
            build: .
            volumes:
              - ./config:/etc/app:ro
              - uploads:/var/lib/app/uploads
              - /var/lib/app/cache
            environment:
              CONFIG: /etc/app/app.yaml
              UPLOADS: /var/lib/app/uploads
              OTHER: /etc/apparmor
            x-stacktest: { command: [x] }
        volumes:
          uploads:
        """,
    )
    spec = load_stack(path)
    env = spec.services["app"].env
    assert env["CONFIG"] == f"{tmp_path / 'config'}/app.yaml"
    assert env["UPLOADS"] == "{run_dir}/volumes/uploads"
    assert env["OTHER"] == "/etc/apparmor"  # a path that only starts the same is kept
    assert spec.volumes == ("uploads",)
    notes = "\n".join(spec.warnings)
    assert "./config:/etc/app:ro: /etc/app is its host directory for the local process" in notes
    assert "read-only is not enforced" in notes
    assert "/var/lib/app/cache: not mounted (an anonymous volume)" in notes


@pytest.mark.parametrize(
    "case", ["cluster", "images", "mariadb", "platform", "proxy", "rabbit", "rails", "shopfront",
             "webapp", "wellknown", "workers"],
)  # fmt: skip
def test_import_writes_the_same_stack_for_every_corpus_project(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`stacktest import` of each compose project in tests/compose, loaded again, is the
    same stack (the order of depends_on entries aside: it means nothing)."""
    import dataclasses
    import shutil

    from typer.testing import CliRunner

    from stacktest.cli import app

    for var in ("DB_USER", "DB_PASSWORD", "DB_PORT", "REDIS_PASSWORD", "REDIS_PORT", "LOG_LEVEL",
                "COMPOSE_PROFILES", "COMPOSE_FILE"):
        monkeypatch.delenv(var, raising=False)
    project = tmp_path / case
    shutil.copytree(Path(__file__).resolve().parent.parent / "compose" / case, project)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["import", "--out", "imported.toml"])
    assert result.exit_code == 0, result.output

    def canonical(spec: Any) -> dict[str, Any]:
        return {
            name: dataclasses.replace(s, depends_on=tuple(sorted(s.depends_on, key=str)))
            for name, s in spec.services.items()
        }

    assert canonical(load_stack(project / "imported.toml")) == canonical(load_stack(project))
