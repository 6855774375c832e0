"""The pytest plugin end to end: pytest runs in a subprocess against real servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import psycopg
import pytest

from stacktest import eventually
from stacktest.engine import procs
from tests.helpers import run_stacktest

pytestmark = pytest.mark.integration
PY = sys.executable

SCHEMA = "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);\n"
STACK = """
[services.db]
use = "postgres"
databases = ["app"]
init = ["schema.sql"]

[services.cache]
use = "valkey"

[services.bus]
use = "nats"
jetstream = true
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.Pytester]:
    """A project directory with a stack file; whatever it leaves running is stopped after."""
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
                "STACKTEST_FILE", "STACKTEST_ATTACH", "STACKTEST_KEEP", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)
    (pytester.path / "schema.sql").write_text(SCHEMA)
    (pytester.path / "stack.toml").write_text(STACK)
    yield pytester
    stacktest("down", cwd=pytester.path)
    assert leftover_pids(pytester.path) == []


stacktest = run_stacktest


def leftover_pids(path: Path) -> list[int]:
    """Service processes recorded in any run dir under ``path`` that still run."""
    left = []
    for state_file in path.glob(".stacktest/**/state.json"):
        state = json.loads(state_file.read_text())
        for info in state.get("instances", {}).values():
            pid, ticks = info.get("pid"), info.get("start_ticks")
            if pid and procs.alive(pid) and procs.start_ticks(pid) == ticks:
                left.append(pid)
    return left


def run(project: pytest.Pytester, *args: str, timeout: float = 120) -> pytest.RunResult:
    return project.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)


def databases(url: str) -> set[str]:
    with psycopg.connect(url + "/postgres", connect_timeout=5) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


# -- pass, fail, evidence --------------------------------------------------------------------
def test_failure_report_has_only_that_tests_log_lines(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_app="""
        import psycopg, pytest

        def log_marker(stack, marker):
            with psycopg.connect(stack["db"].url + "/app") as conn:
                with pytest.raises(psycopg.errors.UndefinedTable):
                    conn.execute(f"SELECT * FROM {marker}")

        def test_a_passes(stack):
            log_marker(stack, "marker_from_test_a")

        def test_b_fails(stack):
            log_marker(stack, "marker_from_test_b")
            assert 1 == 2

        def test_c_passes(stack):
            log_marker(stack, "marker_from_test_c")
        """
    )
    result = run(project, "-v")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "stacktest: db log (during this test)" in out
    assert 'relation "marker_from_test_b" does not exist' in out
    assert "marker_from_test_a" not in out
    assert "marker_from_test_c" not in out
    # only services that wrote something get a section
    assert "stacktest: cache log" not in out


def test_service_log_and_the_log_lines_limit(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_app="""
        import psycopg, pytest

        def errors(stack, *markers):
            with psycopg.connect(stack["db"].url + "/app") as conn:
                for marker in markers:
                    with pytest.raises(psycopg.errors.UndefinedTable):
                        conn.execute(f"SELECT * FROM {marker}")
                    conn.rollback()

        def test_reads_its_own_lines(stack, service_log):
            errors(stack, "seen_by_service_log")
            lines = "\\n".join(service_log("db"))
            assert 'relation "seen_by_service_log" does not exist' in lines
            assert service_log("cache") == []

        def test_fails_after_three_errors(stack):
            errors(stack, "first_marker", "second_marker", "third_marker")
            assert False
        """
    )
    result = run(project, "--stack-log-lines", "2")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "line(s) written during this test, the last 2 shown" in out
    assert 'relation "third_marker"' in out and 'relation "first_marker"' not in out
    silent = run(project, "--stack-log-lines", "0")
    silent.assert_outcomes(passed=1, failed=1)
    assert "stacktest: db log" not in silent.stdout.str()


def test_a_service_dying_fails_a_test_whose_assertions_passed(project: pytest.Pytester) -> None:
    (project.path / "stack.toml").write_text(
        STACK
        + f"""
[services.worker]
command = ["{PY}", "-c", "import time; print('worker up', flush=True); time.sleep(600)"]
ready = {{ log = "worker up" }}
"""
    )
    project.makepyfile(
        test_app="""
        import os, signal, time

        def test_kills_the_worker(stack):
            os.kill(stack["worker"].pids[0], signal.SIGKILL)
            time.sleep(0.2)
            assert True
        """
    )
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*service 'worker' exited with code -9 during this test*"])


WORKER = f"""
[services.worker]
command = ["{PY}", "-c", "import time; print('worker up'); time.sleep(600)"]
ready = {{ log = "worker up" }}
"""


@pytest.mark.parametrize(
    ("victim", "its_last_words"),
    [("db", "database system is ready to accept connections"), ("worker", "worker up")],
)
def test_a_death_stops_the_test_within_a_second_with_the_last_log_lines(
    project: pytest.Pytester, victim: str, its_last_words: str
) -> None:
    # (the worker prints without flush=True: PYTHONUNBUFFERED is a service's default)
    (project.path / "stack.toml").write_text(STACK + WORKER)
    project.makepyfile(
        test_app=f"""
        import os, signal, time

        def test_waits_while_its_server_dies(stack):
            os.kill(stack["{victim}"].pids[0], signal.SIGKILL)
            time.sleep(30)
        """
    )
    junit = project.path / "junit.xml"
    result = run(project, f"--junitxml={junit}", "-o", "junit_duration_report=call")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*service '{victim}' exited with code -9 during this test*",
            f"*last * line(s) of {victim}'s log*",
            f"*| *{its_last_words}*",
            "*stacktest stopped the test when it saw this*",
        ]
    )
    case = ElementTree.parse(junit).getroot().find(".//testcase")
    assert case is not None and float(case.get("time", "99")) < 1.0, case.attrib if case is not None else None


def test_stack_start_failure_errors_tests_and_says_why(project: pytest.Pytester) -> None:
    (project.path / "stack.toml").write_text(
        f"""
[services.api]
command = ["{PY}", "-c", "import sys; print('config missing: API_KEY', flush=True); sys.exit(3)"]
ready = {{ tcp = true }}
"""
    )
    project.makepyfile(
        test_app="""
        def test_one(stack):
            pass

        def test_two(stack):
            pass

        def test_without_the_stack():
            pass
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, errors=2)
    out = result.stdout.str()
    assert "service 'api' exited with code 3 before it was ready" in out
    assert "config missing: API_KEY" in out
    assert "hint:" in out
    assert "Traceback" not in out
    assert "During handling" not in out

    skipped = run(project, "--stack-skip-if-unavailable", "-rs")
    skipped.assert_outcomes(passed=1, skipped=2)
    assert "--stack-skip-if-unavailable (command line)" in skipped.stdout.str()


def test_missing_stack_file_is_an_error_naming_where_it_came_from(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_app="""
        def test_needs_it(stack):
            pass

        def test_does_not():
            pass
        """
    )
    result = run(project, "--stack", "nope/stack.toml")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*no stack file at */nope/stack.toml (from --stack (command line))*"])


def test_bad_option_values_name_their_source(project: pytest.Pytester) -> None:
    project.makepyfile(test_app="def test_x():\n    pass\n")
    project.makeini("[pytest]\nstack_log_lines = lots\n")
    result = run(project)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*stack_log_lines (*tox.ini): 'lots' is not a whole number*"])

    os.environ["STACKTEST_ATTACH"] = "maybe"
    try:
        result = run(project)
    finally:
        del os.environ["STACKTEST_ATTACH"]
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*STACKTEST_ATTACH (environment): 'maybe' is not true or false*"])


def test_options_precedence_command_line_then_environment_then_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stacktest.pytest_plugin.options import resolve

    (pytester.path / "conf").mkdir()
    pytester.makefile(".ini", pytest="[pytest]\nstack_file = conf/from_ini.toml\nstack_keep = yes\n")
    monkeypatch.delenv("STACKTEST_FILE", raising=False)
    settings = resolve(pytester.parseconfig())
    assert settings.file == pytester.path / "conf" / "from_ini.toml"
    assert settings.keep is True and settings.sources["keep"].startswith("stack_keep (")

    monkeypatch.setenv("STACKTEST_FILE", "from_env.toml")
    monkeypatch.setenv("STACKTEST_KEEP", "0")
    settings = resolve(pytester.parseconfig())
    assert settings.file == Path.cwd() / "from_env.toml"
    assert settings.keep is False and settings.sources["keep"] == "STACKTEST_KEEP (environment)"

    settings = resolve(pytester.parseconfig("--stack", "/abs/from_cli.toml", "--stack-keep"))
    assert settings.file == Path("/abs/from_cli.toml")
    assert settings.file_source == "--stack (command line)"
    assert settings.keep is True


# -- isolation --------------------------------------------------------------------------------
ISOLATION_TESTS = """
import pytest

@pytest.mark.parametrize("who", ["first", "second"])
def test_writes_the_same_table(pg_database, who):
    with pg_database.connect() as conn:
        conn.execute("INSERT INTO items (name) VALUES (%s)", (who,))
        rows = conn.execute("SELECT name FROM items").fetchall()
    assert rows == [(who,)], rows
"""


def test_pg_database_clones_never_see_each_others_rows(project: pytest.Pytester) -> None:
    project.makepyfile(test_iso=ISOLATION_TESTS)
    run(project, "-v").assert_outcomes(passed=2)


def test_pg_database_from_a_named_template(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_tpl="""
        import psycopg

        def test_copy_of_app(stack, pg_database_factory):
            with psycopg.connect(stack["db"].url + "/app") as conn:
                conn.execute("INSERT INTO items (name) VALUES ('seeded')")
            copy = pg_database_factory("db", template="app")
            with copy.connect() as conn:
                conn.execute("INSERT INTO items (name) VALUES ('mine')")
                names = [r[0] for r in conn.execute("SELECT name FROM items ORDER BY id")]
            assert names == ["seeded", "mine"]
            with psycopg.connect(stack["db"].url + "/app") as conn:
                assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 1
        """
    )
    run(project).assert_outcomes(passed=1)


def test_two_hundred_tests_leave_no_databases_behind(project: pytest.Pytester) -> None:
    up = stacktest("up", "-d", cwd=project.path)
    assert up.returncode == 0, up.stderr
    state = json.loads((project.path / ".stacktest" / "state.json").read_text())
    url = state["instances"]["db"]["fields"]["url"]
    before = databases(url)
    project.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(200))
        def test_row(pg_database, n):
            with pg_database.connect() as conn:
                conn.execute("INSERT INTO items (name) VALUES (%s)", (str(n),))
                assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 1
        """
    )
    run(project, "--stack-attach", "-q").assert_outcomes(passed=200)
    assert databases(url) == before


def test_valkey_keys_and_nats_streams_are_removed_after_each_test(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_scopes="""
        import redis

        seen = {}

        def test_writes(valkey_scope, nats_scope, namespace):
            r = redis.Redis.from_url(valkey_scope.url)
            r.set(valkey_scope.key("cart"), "3")
            r.set("unscoped_key", "kept")
            assert valkey_scope.key("cart") == namespace + ":cart"
            info = nats_scope.create_stream("orders")
            assert info["config"]["subjects"] == [namespace + ".orders.>"]
            seen.update(prefix=valkey_scope.prefix, stream=nats_scope.stream_name("orders"))

        def test_they_are_gone(stack, nats_scope):
            r = redis.Redis.from_url(stack["cache"].url)
            assert list(r.scan_iter(seen["prefix"] + "*")) == []
            assert r.get("unscoped_key") == b"kept"
            import pytest
            from stacktest.errors import IsolationError
            with pytest.raises(IsolationError, match="stream not found"):
                nats_scope.stream_info(seen["stream"])
        """
    )
    run(project, "-v").assert_outcomes(passed=2)


def test_fresh_stack_marker_and_fixture_throw_data_away(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_fresh="""
        import psycopg, pytest

        def count(stack):
            with psycopg.connect(stack["db"].url + "/app") as conn:
                return conn.execute("SELECT count(*) FROM items").fetchone()[0]

        def add(stack):
            with psycopg.connect(stack["db"].url + "/app") as conn:
                conn.execute("INSERT INTO items (name) VALUES ('x')")

        def test_1_writes(stack):
            add(stack)
            assert count(stack) == 1

        def test_2_data_is_still_there(stack):
            assert count(stack) == 1

        @pytest.mark.fresh_stack("db")
        def test_3_marker_gives_fresh_db(stack, pg_database):
            assert count(stack) == 0
            add(stack)

        def test_4_fixture(stack, fresh_stack, pg_database_factory):
            add(stack)
            fresh_stack("db")
            assert count(stack) == 0
            with pg_database_factory().connect() as conn:  # a template rebuilt after the reset
                assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0

        def test_5_unknown_service(fresh_stack):
            fresh_stack("nope")
        """
    )
    result = run(project, "-v")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*fresh_stack: no service 'nope'*"])


# -- attach, keep, xdist -------------------------------------------------------------------
RUN_ID_TEST = """
import os

def test_report_run_id(stack, pg_database):
    with open("run_ids.txt", "a") as fh:
        fh.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {stack.run_id}\\n")

def test_second(stack, pg_database):
    with open("run_ids.txt", "a") as fh:
        fh.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {stack.run_id}\\n")
"""


def run_ids(project: pytest.Pytester) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for line in (project.path / "run_ids.txt").read_text().split("\n"):
        if line:
            worker, run_id = line.split()
            found.setdefault(worker, set()).add(run_id)
    (project.path / "run_ids.txt").unlink()
    return found


def test_attach_uses_the_running_stack_from_every_xdist_worker(project: pytest.Pytester) -> None:
    project.makepyfile(test_ids=RUN_ID_TEST)
    none = run(project, "--stack-attach")
    none.assert_outcomes(errors=2)
    none.stdout.fnmatch_lines(["*--stack-attach (command line) asks to use a running stack*",
                               "*hint: start it with `stacktest up -d*"])

    assert stacktest("up", "-d", cwd=project.path).returncode == 0
    state = json.loads((project.path / ".stacktest" / "state.json").read_text())
    run(project, "--stack-attach", "-n", "2").assert_outcomes(passed=2)
    ids = run_ids(project)
    assert set().union(*ids.values()) == {state["run_id"]}
    # the stack is still up: attaching never stops it
    assert stacktest("status", cwd=project.path).returncode == 0


def test_keep_leaves_the_stack_up_and_reuses_it_until_the_file_changes(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_ids=RUN_ID_TEST)
    run(project, "--stack-keep").assert_outcomes(passed=2)
    (first,) = run_ids(project)["main"]
    assert stacktest("status", cwd=project.path).returncode == 0

    run(project, "--stack-keep").assert_outcomes(passed=2)
    assert run_ids(project)["main"] == {first}

    run(project, "--stack-keep", "-n", "2").assert_outcomes(passed=2)
    assert set().union(*run_ids(project).values()) == {first}  # both workers, the kept stack

    stack_file = project.path / "stack.toml"
    stack_file.write_text(stack_file.read_text() + "\n[services.cache2]\nuse = \"valkey\"\n")
    run(project, "--stack-keep").assert_outcomes(passed=2)
    (third,) = run_ids(project)["main"]
    assert third != first
    assert stacktest("status", cwd=project.path).returncode == 0


def test_xdist_workers_each_get_their_own_stack(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_spread="""
        import os, pytest

        @pytest.mark.parametrize("n", range(8))
        def test_row(stack, pg_database, n):
            with open("run_ids.txt", "a") as fh:
                fh.write(f"{os.environ['PYTEST_XDIST_WORKER']} {stack.run_id}\\n")
            with pg_database.connect() as conn:
                conn.execute("INSERT INTO items (name) VALUES (%s)", (str(n),))
                assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 1
        """
    )
    run(project, "-n", "2").assert_outcomes(passed=8)
    ids = run_ids(project)
    run_dirs = sorted(p.name for p in (project.path / ".stacktest").glob("pytest-*"))
    # each worker that ran tests used one stack of its own, in its own run directory
    assert run_dirs == sorted(f"pytest-{worker}" for worker in ids)
    assert all(len(stack_ids) == 1 for stack_ids in ids.values())
    assert len(set().union(*ids.values())) == len(ids)


# -- faults -----------------------------------------------------------------------------------
def test_faults_are_healed_after_each_test_and_are_not_deaths(project: pytest.Pytester) -> None:
    (project.path / "stack.toml").write_text(
        STACK
        + """
[services.app]
command = ["sleep", "600"]
depends_on = { cache = { proxy = true } }
"""
    )
    project.makepyfile(
        test_faults="""
        import json
        from stacktest.faults.history import total_queue
        from stacktest.faults import nemesis as nem

        def test_1_leaves_faults_behind(stack):
            stack.kill("bus")
            stack.pause("db")
            stack.add_toxic("app->cache", latency="10ms")
            stack.link_down("app->cache")

        def test_2_starts_healed(stack):
            states = {row["name"]: row["state"] for row in stack.status()}
            assert states == {"db": "ready", "cache": "ready", "bus": "ready", "app": "running"}
            assert stack.faults()["proxies"]["app->cache"] == {
                **stack.faults()["proxies"]["app->cache"], "enabled": True, "toxics": []
            }

        def test_3_history_and_nemesis(stack, history, nemesis, tmp_path):
            running = nemesis([nem.pause("cache")], every="0.2s", hold="0.1s")
            for n in range(5):
                with history.op("enqueue", n):
                    pass
                with history.op("dequeue", n):
                    pass
            running.stop()
            assert running.applied or running.errors == []
            assert total_queue(history)["valid"] is True
            lines = (tmp_path / "history.jsonl").read_text().splitlines()
            assert json.loads(lines[0])["type"] == "invoke"
        """
    )
    result = run(project, "-v")
    result.assert_outcomes(passed=3)


# -- load -------------------------------------------------------------------------------------
def test_load_fixture_runs_against_a_stack_service(project: pytest.Pytester) -> None:
    server = Path(__file__).with_name("load_server.py")
    (project.path / "stack.toml").write_text(
        f"""
[services.api]
command = ["{PY}", "{server}", "{{port}}"]
ready = {{ http = "/fast" }}
"""
    )
    project.makepyfile(
        test_perf="""
        from stacktest.load import Phase

        async def hit(session):
            await session.get("/sleep", name="sleep")

        def test_fast_enough(load):
            result = load(hit, [Phase("steady", "1s", 20)],
                          thresholds={"http_req_duration{name:sleep}": ["p(95)<500"]})
            assert result.thresholds_ok and result.latency("sleep")["p50"] < 100

        def test_too_strict(load):
            result = load(hit, [Phase("steady", "1s", 20)],
                          thresholds={"http_req_duration{name:sleep}": ["p(95)<1"]})
            assert result.thresholds_ok
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*stacktest: load run 1*", "*FAIL http_req_duration{name:sleep}*"])
    # both runs are in the run report, with their verdicts and per-second slices
    from stacktest.report.collect import collect

    report = collect(project.path / ".stacktest" / "pytest-main")
    runs = {r.name.split(" (")[0]: r for r in report.load_runs}  # "name (its directory)"
    assert set(runs) == {"test_fast_enough", "test_too_strict"}
    assert runs["test_fast_enough"].ok and not runs["test_too_strict"].ok
    assert runs["test_fast_enough"].slices and runs["test_fast_enough"].thresholds


# -- interrupted sessions ----------------------------------------------------------------------
SLOW_TEST = """
import pathlib, time

def test_slow(stack):
    pathlib.Path("started").write_text("x")
    time.sleep(60)
"""


def start_slow_session(project: pytest.Pytester) -> subprocess.Popen[bytes]:
    project.makepyfile(test_slow=SLOW_TEST)
    # its output goes to a file, and a test body that runs for 20 s dumps every thread's
    # stack there: what a failed run of these tests shows
    log = open(project.path / "session.log", "wb")  # noqa: SIM115 - the child holds it
    # Python leaves SIGINT alone when it starts with SIGINT ignored, as everything started
    # by a background shell job is (`bash .ci/run &`): Ctrl-C as a terminal sends it needs
    # the default handler, so the session is started with it whatever this process inherited
    session = (
        "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.exit(pytest.main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [PY, "-c", session, "-p", "no:cacheprovider", "-q", "-o", "faulthandler_timeout=20"],
        cwd=project.path, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 60
    while not (project.path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the session did not start"
        time.sleep(0.02)
    return proc


def wait_for_session(proc: subprocess.Popen[bytes], project: pytest.Pytester) -> int:
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log = (project.path / "session.log").read_text(errors="replace")
        raise AssertionError(f"the session did not end within 60 s; its output:\n{log}") from None


def test_ctrl_c_stops_the_stack(project: pytest.Pytester) -> None:
    proc = start_slow_session(project)
    running = leftover_pids(project.path)
    assert len(running) == 3
    proc.send_signal(signal.SIGINT)
    assert wait_for_session(proc, project) == pytest.ExitCode.INTERRUPTED
    assert leftover_pids(project.path) == []


def test_a_killed_session_leaves_nothing_running(project: pytest.Pytester) -> None:
    """kill -9 of pytest: the stack's watchdog reaps the services, and the next session
    starts cleanly in the same run directory."""
    proc = start_slow_session(project)
    orphans = leftover_pids(project.path)
    assert len(orphans) == 3
    proc.kill()
    proc.wait()
    eventually(lambda: leftover_pids(project.path) == [], timeout=10)
    (project.path / "test_slow.py").unlink()
    project.makepyfile(test_ok="def test_ok(stack):\n    pass\n")
    run(project).assert_outcomes(passed=1)
    assert not any(procs.alive(pid) for pid in orphans)


# -- the CLI ---------------------------------------------------------------------------------
def test_stacktest_test_runs_pytest_against_the_stack_and_stops_it(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_cli=textwrap.dedent(
            """
            def test_ok(stack):
                assert stack["db"].port > 0

            def test_bad(stack):
                assert False, "expected failure"
            """
        )
    )
    result = stacktest("test", "--", "-q", "-p", "no:cacheprovider", cwd=project.path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert "stack ready in" in result.stderr
    assert "stopped" in result.stderr
    assert leftover_pids(project.path) == []
    assert stacktest("status", cwd=project.path).returncode == 3
    # the report: tests, services, the failure's message
    report = project.path / ".stacktest" / "report"
    assert f"report: {report / 'report.html'}" in " ".join(result.stderr.split())
    summary = (report / "summary.md").read_text()
    assert summary.startswith("# ") and ": FAILED" in summary, summary
    assert "Tests: 1 passed, 1 failed" in summary and "| db | postgres | stopped |" in summary
    html = (report / "report.html").read_text()
    assert "test_bad" in html and "expected failure" in html and "<svg" in html

    kept = stacktest("test", "--keep", "--report", "out", "--", "-q", "-p", "no:cacheprovider",
                     "-k", "ok", "--junitxml=mine.xml", cwd=project.path)  # fmt: skip
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert (project.path / "mine.xml").exists() and not (project.path / "out" / "junit.xml").exists()
    assert ": PASSED" in (project.path / "out" / "summary.md").read_text()  # from mine.xml
    assert stacktest("status", cwd=project.path).returncode == 0  # left running, as asked


def test_the_header_names_a_compose_file_used_in_place_of_stack_toml(
    project: pytest.Pytester,
) -> None:
    (project.path / "stack.toml").unlink()
    (project.path / "docker-compose.yml").write_text("services:\n  cache:\n    image: valkey/valkey:8\n")
    project.makepyfile(test_x="def test_x():\n    pass\n")
    result = run(project)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["stacktest: */docker-compose.yml (no stack.toml beside it)*"])
    assert "not found" not in result.stdout.str()


def test_xdist_workers_remap_published_ports_so_their_stacks_do_not_collide(
    project: pytest.Pytester,
) -> None:
    (project.path / "stack.toml").unlink()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (project.path / "docker-compose.yml").write_text(
        f"services:\n  cache:\n    image: valkey/valkey:8\n    ports: ['{port}:6379']\n"
    )
    project.makepyfile(
        test_ports="""
        import os, time

        def test_a(stack):
            with open(f"port-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}", "w") as fh:
                fh.write(str(stack["cache"].port))
            time.sleep(1)  # both workers' stacks are up at the same time

        def test_b(stack):
            test_a(stack)
        """
    )
    run(project, "-n", "2").assert_outcomes(passed=2)
    ports = {p.read_text() for p in project.path.glob("port-gw*")}
    assert len(ports) == 2 and str(port) not in ports
    # one session on its own takes the published port itself
    run(project).assert_outcomes(passed=2)
    assert (project.path / "port-main").read_text() == str(port)
