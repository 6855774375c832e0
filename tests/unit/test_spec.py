"""The stack file: what it accepts, and one clear error for each thing it refuses."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from stacktest import ConfigError, load_stack
from stacktest.durations import parse_duration
from stacktest.spec.model import Condition

Write = Callable[..., Path]


def test_full_example_parses(write_stack: Write, tmp_path: Path) -> None:
    (tmp_path / "schema.sql").write_text("create table t (id int);")
    path = write_stack(
        """
        [stack]
        name = "demo"

        [services.db]
        use = "postgres"
        databases = ["app", "other"]
        init = "schema.sql"

        [services.cache]
        use = "valkey"
        password = true

        [services.bus]
        use = "nats"
        jetstream = true

        [services.migrate]
        command = ["python", "-m", "migrate", "{db.url}/app"]
        depends_on = { db = "healthy" }

        [services.api]
        command = ["python", "-m", "api", "--port", "{port}"]
        env = { DATABASE_URL = "{db.url}/app", NATS_URL = "{bus.url}", DEBUG = true, N = 3 }
        ready = { http = "/health", status = 204, timeout = "500ms" }
        depends_on = { migrate = "completed", bus = "started", cache = "healthy" }
        stop_signal = "INT"
        stop_timeout = "2s"
        start_timeout = 5
        restart = "on-failure"

        [services.worker]
        command = "exec python -m worker --api {api.url}"
        shell = true
        replicas = 2
        depends_on = ["api"]
        """
    )
    spec = load_stack(path)
    assert spec.name == "demo"
    assert spec.run_dir == tmp_path / ".stacktest"
    assert list(spec.services) == ["db", "cache", "bus", "migrate", "api", "worker"]
    db = spec["db"]
    assert db.use == "postgres"
    assert db.options["init"] == [str(tmp_path / "schema.sql")]
    assert db.stop_signal is signal.SIGINT  # postgres' fast shutdown by default
    api = spec["api"]
    assert api.env["DEBUG"] == "true" and api.env["N"] == "3"
    assert api.ready is not None and api.ready.status == 204 and api.ready.attempt_timeout == 0.5
    assert {d.service: d.condition for d in api.depends_on} == {
        "migrate": Condition.COMPLETED,
        "bus": Condition.STARTED,
        "cache": Condition.HEALTHY,
    }
    assert api.stop_signal is signal.SIGINT and api.stop_timeout == 2 and api.start_timeout == 5
    worker = spec["worker"]
    assert worker.instance_names() == ["worker.1", "worker.2"]
    # api has a ready check, so the list form means "healthy"
    assert worker.depends_on[0].condition is Condition.HEALTHY
    # migrate has none: an implicit condition on it would mean "started"
    assert spec["migrate"].has_health is False
    order = spec.start_order()
    assert order.index("db") < order.index("migrate") < order.index("api") < order.index("worker")


def test_implicit_condition_on_service_without_ready_check_is_started(write_stack: Write) -> None:
    spec = load_stack(
        write_stack(
            """
            [services.a]
            command = ["true"]
            [services.b]
            command = ["true"]
            depends_on = ["a"]
            """
        )
    )
    assert spec["b"].depends_on[0].condition is Condition.STARTED


def test_compose_style_conditions_are_understood(write_stack: Write) -> None:
    spec = load_stack(
        write_stack(
            """
            [services.db]
            use = "postgres"
            [services.job]
            command = ["true"]
            depends_on = { db = { condition = "service_healthy" } }
            [services.app]
            command = ["true"]
            depends_on = { job = "service_completed_successfully" }
            """
        )
    )
    assert spec["job"].depends_on[0].condition is Condition.HEALTHY
    assert spec["app"].depends_on[0].condition is Condition.COMPLETED


def error_for(write_stack: Write, text: str) -> ConfigError:
    path = write_stack(text)
    with pytest.raises(ConfigError) as info:
        load_stack(path)
    assert str(path) in str(info.value), "every error names the file"
    return info.value


def test_unknown_key_names_key_line_and_suggestion(write_stack: Write) -> None:
    err = error_for(
        write_stack,
        """
        [services.api]
        command = ["x"]
        depends = ["db"]
        """,
    )
    assert err.key == "services.api.depends"
    assert err.line == 4
    assert "did you mean 'depends_on'" in str(err)


def test_wrong_type_names_expected_and_got(write_stack: Write) -> None:
    err = error_for(
        write_stack,
        """
        [services.api]
        command = ["x"]
        replicas = "two"
        """,
    )
    assert err.key == "services.api.replicas"
    assert "expected an integer, got a string ('two')" in str(err)
    assert err.line == 4


def test_dependency_cycle_is_named(write_stack: Write) -> None:
    err = error_for(
        write_stack,
        """
        [services.a]
        command = ["x"]
        depends_on = ["b"]
        [services.b]
        command = ["x"]
        depends_on = ["c"]
        [services.c]
        command = ["x"]
        depends_on = ["a"]
        """,
    )
    assert "dependency cycle: a -> b -> c -> a" in str(err)


def test_unknown_dependency_suggests_close_name(write_stack: Write) -> None:
    err = error_for(
        write_stack,
        """
        [services.db]
        use = "postgres"
        [services.api]
        command = ["x"]
        depends_on = ["dbb"]
        """,
    )
    assert err.key == "services.api.depends_on.dbb"
    assert "unknown service 'dbb'" in str(err) and "did you mean 'db'" in str(err)


def test_reference_to_unknown_service(write_stack: Write) -> None:
    err = error_for(
        write_stack,
        """
        [services.db]
        use = "postgres"
        [services.api]
        command = ["x"]
        env = { URL = "{dbx.url}/app" }
        """,
    )
    assert err.key == "services.api.env.URL"
    assert "{dbx.url} refers to unknown service 'dbx'" in str(err)
    assert err.line == 6


def test_reference_to_unknown_field_lists_fields(write_stack: Write) -> None:
    err = error_for(
        write_stack,
        """
        [services.bus]
        use = "nats"
        [services.api]
        command = ["x", "{bus.password}"]
        """,
    )
    assert err.key == "services.api.command[1]"
    assert "service 'bus' (nats) has no field 'password'" in str(err)
    assert "monitor_url" in str(err)


def test_unknown_own_field(write_stack: Write) -> None:
    err = error_for(write_stack, '[services.api]\ncommand = ["x", "{prot}"]\n')
    assert "has no field 'prot'" in str(err)


def test_unmatched_brace(write_stack: Write) -> None:
    err = error_for(write_stack, '[services.api]\ncommand = ["x", "{port"]\n')
    assert "unmatched '{'" in str(err)


def test_healthy_on_service_without_ready_check(write_stack: Write) -> None:
    err = error_for(
        write_stack,
        """
        [services.a]
        command = ["x"]
        [services.b]
        command = ["x"]
        depends_on = { a = "healthy" }
        """,
    )
    assert "'a' has no ready check" in str(err)
    assert "ready = { tcp = true }" in str(err)


def test_completed_on_a_server(write_stack: Write) -> None:
    err = error_for(
        write_stack,
        """
        [services.db]
        use = "postgres"
        [services.b]
        command = ["x"]
        depends_on = { db = "completed" }
        """,
    )
    assert "never completes" in str(err)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[services.a]\nuse = "mysql"\n', "unknown provider 'mysql'"),
        ('[services.a]\nuse = "postgress"\n', "did you mean 'postgres'"),
        (
            '[services.a]\nuse = "postgres"\ncommand = ["x"]\n',
            "both `use = 'postgres'` and `command`",
        ),
        ("[services.a]\nenv = {}\n", "a service needs `use`"),
        ('[services.a]\ncommand = "run me"\n', "shell is not enabled"),
        ("[services.a]\ncommand = []\n", "command is empty"),
        ('[services.a]\ncommand = ["x"]\nreplicas = 0\n', "must be 1 to 1000"),
        ('[services.a]\ncommand = ["x"]\nstart_timeout = "soon"\n', "expected a duration"),
        ('[services.a]\ncommand = ["x"]\nrestart = "sometimes"\n', "unknown restart policy"),
        ('[services.a]\ncommand = ["x"]\nstop_signal = "SIGFOO"\n', "unknown signal"),
        ('[services.a]\ncommand = ["x"]\nready = {}\n', "exactly one of tcp, http, command, log"),
        ('[services.a]\ncommand = ["x"]\nready = { http = "health" }\n', "starting with '/'"),
        (
            '[services.a]\ncommand = ["x"]\nready = { log = "(" }\n',
            "not a valid regular expression",
        ),
        (
            '[services.a]\ncommand = ["x"]\nready = { tcp = true, status = 200 }\n',
            "only applies to http",
        ),
        ('[services.a]\ncommand = ["x"]\ndepends_on = ["a"]\n', "cannot depend on itself"),
        ('[services.a]\nuse = "postgres"\nreplicas = 2\n', "only for `command` services"),
        (
            '[services.a]\nuse = "postgres"\ninit = ["missing.sql"]\n',
            "SQL file 'missing.sql' not found",
        ),
        ('[services.a]\nuse = "postgres"\ndatabases = ["bad name"]\n', "bad database name"),
        ('[services.a]\nuse = "postgres"\ntmpfs = "yes"\n', 'expected true, false or "auto"'),
        ('[services."a b"]\ncommand = ["x"]\n', "bad service name"),
        ('[stack]\nnmae = "x"\n[services.a]\ncommand = ["x"]\n', "did you mean 'name'"),
        ("[stack]\n", "declares no services"),
        ("[services.a\n", "not valid TOML"),
    ],
)
def test_each_error_path_is_one_clear_message(write_stack: Write, text: str, needle: str) -> None:
    err = error_for(write_stack, text)
    assert needle in str(err)
    assert "Traceback" not in str(err)


def test_toml_syntax_error_gives_line(write_stack: Write) -> None:
    err = error_for(write_stack, '[services.a]\ncommand = ["x"\nfoo = 1\n')
    assert err.line is not None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_stack(tmp_path / "nope.toml")
    assert "no such file" in str(info.value) and "hint" in str(info.value)


def test_config_error_is_a_value_error(write_stack: Write) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        load_stack(write_stack('[services.a]\ncommand = ["x"]\nbogus = 1\n'))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("200ms", 0.2),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        (3, 3.0),
        (0.25, 0.25),
        ("7", 7.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, bare="s") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["fast", "-1s", True, -2, "1 d", float("inf"), float("nan")])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value, bare="s")


def test_proxy_edges_from_the_stack_switch_and_per_dependency(write_stack: Write) -> None:
    path = write_stack(
        """
        [stack]
        proxy = true

        [services.db]
        use = "postgres"

        [services.bus]
        use = "nats"

        [services.api]
        command = ["x"]
        depends_on = { db = "healthy", bus = { condition = "healthy", proxy = false } }

        [services.worker]
        command = ["x"]
        depends_on = { bus = { proxy = true } }
        """
    )
    spec = load_stack(path)
    assert spec.proxy is True
    assert spec.proxied_edges() == [("api", "db"), ("worker", "bus")]


def test_bad_proxy_values_are_refused(write_stack: Write) -> None:
    err = error_for(write_stack, '[stack]\nproxy = "yes"\n[services.a]\ncommand = ["x"]\n')
    assert "stack.proxy" in str(err) and "true or false" in str(err)
    err = error_for(
        write_stack,
        '[services.a]\nuse = "valkey"\n[services.b]\ncommand = ["x"]\n'
        'depends_on = { a = { proxi = true } }\n',
    )
    assert "did you mean 'proxy'" in str(err)


def test_the_readmes_stack_file_is_valid_and_has_the_edges_its_examples_use(
    tmp_path: Path,
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "schema.sql").write_text("CREATE TABLE orders (tenant text);\n")
    (tmp_path / "stack.toml").write_text(block)
    spec = load_stack(tmp_path / "stack.toml")
    edges = spec.proxied_edges()
    for edge in ("api->db", "api->bus"):  # stack.fault("api->db"), stack.down("api->bus")
        assert edge in readme and tuple(edge.split("->")) in edges


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[services.a]\ncommand = ["x"]\nport = 0\n', "services.a.port: 0 is not a port number"),
        ('[services.a]\ncommand = ["x"]\nport = "80"\n', "is not a port number"),
        ('[services.a]\ncommand = ["x"]\nport = 9000\nreplicas = 2\n', "2 replicas cannot all listen on port 9000"),
        ('[services.a]\ncommand = ["x"]\nport = 9000\n[services.b]\nuse = "valkey"\nport = 9000\n',
         "services.b.port: port 9000 is also services.a's"),
    ],
)
def test_bad_pinned_ports(write_stack: Write, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_stack(write_stack(text))


def test_a_pinned_port_is_kept_and_planned(write_stack: Write) -> None:
    spec = load_stack(write_stack('[services.cache]\nuse = "valkey"\nport = 6399\n'))
    assert spec.services["cache"].port == 6399
