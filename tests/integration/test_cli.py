"""The CLI from separate shell invocations, as a user drives it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stacktest import eventually
from stacktest.engine import procs
from stacktest.engine.procs import alive as pid_alive
from tests.helpers import foreground_up, run_stacktest

pytestmark = pytest.mark.integration
Write = Callable[..., Path]
PY = sys.executable
STACK = f"""
[services.db]
use = "postgres"
databases = ["app"]

[services.cache]
use = "valkey"

[services.web]
command = ["{PY}", "-m", "http.server", "{{port}}", "--bind", "127.0.0.1"]
ready = {{ log = "Serving HTTP" }}
depends_on = ["db"]
"""


def stacktest(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_stacktest(*args, cwd=cwd, timeout=timeout, env=env)


@pytest.fixture
def project(write_stack: Write) -> Iterator[Path]:
    path = write_stack(STACK)
    yield path.parent
    stacktest("down", cwd=path.parent)


def instance_pids(project: Path) -> list[int]:
    state = json.loads((project / ".stacktest" / "state.json").read_text())
    return [i["pid"] for i in state["instances"].values() if i["pid"]]


def wait_gone(pids: list[int], timeout: float = 5) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def test_up_detached_then_status_exec_logs_env_restart_down(project: Path) -> None:
    up = stacktest("up", "-d", cwd=project)
    assert up.returncode == 0, up.stderr + up.stdout
    assert "ready in" in up.stdout

    status = stacktest("status", "--json", cwd=project)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["state"] == "ready"
    assert set(data["instances"]) == {"db", "cache", "web"}
    assert all(i["state"] == "ready" for i in data["instances"].values())
    db_fields = data["instances"]["db"]["fields"]
    assert db_fields["password"] == "****" and "****@" in db_fields["url"]  # redacted

    table = stacktest("status", cwd=project)
    assert "db" in table.stdout and "ready" in table.stdout

    psql = stacktest("exec", "db", "--", "psql", "-tAc", "select 40 + 2", cwd=project)
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.strip() == "42"
    cli = stacktest("exec", "cache", "--", "valkey-cli", "ping", cwd=project)
    assert cli.stdout.strip() == "PONG", cli.stderr

    logs = stacktest("logs", "db", "--tail", "50", cwd=project)
    assert "ready to accept connections" in logs.stdout
    all_logs = stacktest("logs", cwd=project)
    assert "web " in all_logs.stdout and "Serving HTTP" in all_logs.stdout

    env = stacktest("env", "db", cwd=project)
    assert "export DB_PORT=" in env.stdout and "export DB_PASSWORD=" in env.stdout
    client = json.loads(stacktest("env", "--client", "--json", cwd=project).stdout)
    state = json.loads((project / ".stacktest" / "state.json").read_text())
    db = state["instances"]["db"]["fields"]
    assert client["DATABASE_URL"] == f"{db['url']}/{db['database']}"
    assert client["PGPORT"] == client["DB_PORT"] == db["port"] and client["PGPASSWORD"] == db["password"]
    assert client["REDIS_URL"] == client["CACHE_URL"] and client["WEB_URL"].startswith("http://127.0.0.1:")
    assert client["TOXIPROXY_URL"] == state["toxiproxy_api"]
    dotenv = stacktest("env", "--client", "--dotenv", cwd=project).stdout
    assert f'PGPORT="{db["port"]}"' in dotenv.splitlines()
    # exec and the commands that run user code get them, never over what is set already
    shown = stacktest("exec", "web", "--", "sh", "-c", 'echo "$DATABASE_URL|$REDIS_URL"', cwd=project, env={"REDIS_URL": "mine"})
    assert shown.stdout.strip() == f"{client['DATABASE_URL']}|mine", shown.stderr

    before = instance_pids(project)
    restart = stacktest("restart", "db", cwd=project)
    assert restart.returncode == 0, restart.stderr
    after = instance_pids(project)
    assert after[0] != before[0]
    again = stacktest("exec", "db", "--", "psql", "-tAc", "select 1", cwd=project)
    assert again.stdout.strip() == "1"

    pids = instance_pids(project)
    down = stacktest("down", cwd=project)
    assert down.returncode == 0, down.stderr
    assert wait_gone(pids) == []
    assert list(procs.tagged(**{procs.TAG_RUN_DIR: str(project / ".stacktest")})) == []
    gone = stacktest("status", cwd=project)
    assert gone.returncode == 3 and "no stack is running" in gone.stdout


def shm_segments_mapped(pid: int) -> list[str]:
    """POSIX shared memory segments the process has mapped (what SIGKILL would leak)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [line.split()[-1] for line in maps.splitlines() if "/dev/shm/PostgreSQL" in line]


def test_kill_9_of_foreground_up_leaves_nothing_running(project: Path) -> None:
    """The owner's watchdog reaps its services at once; no other command is needed."""
    with foreground_up(project) as fg:
        first = instance_pids(project)
        state = json.loads((project / ".stacktest" / "state.json").read_text())
        control, db_pid = state["control"], state["instances"]["db"]["pid"]
        private, sock = state["instances"]["db"]["private_dir"], state["instances"]["cache"]["unix_socket"]
        assert len(first) == 3 and all(pid_alive(p) for p in first)
        # postgres keeps its dynamic shared memory in the data dir: a SIGKILL leaks nothing in /dev/shm
        assert shm_segments_mapped(db_pid) == []
        fg.send_signal(signal.SIGKILL)
        fg.wait()

    assert wait_gone(first) == []

    def stopped_state() -> dict | None:
        state = json.loads((project / ".stacktest" / "state.json").read_text())
        return state if state["state"] == "stopped" else None

    after = eventually(stopped_state)
    assert {"cache", "db", "web"} <= set(after["reaped"]), after["reaped"]
    assert not Path(control).exists() and not Path(private).exists() and not Path(sock).exists()
    assert list(procs.tagged(**{procs.TAG_RUN_DIR: str(project / ".stacktest")})) == []
    # its work done (state.json written last, then the lock released), the watchdog exits
    eventually(lambda: not watchdogs_of(project), timeout=10)

    up = stacktest("up", "-d", cwd=project)
    assert up.returncode == 0, up.stderr + up.stdout
    second = instance_pids(project)
    assert not set(first) & set(second)
    assert len(watchdogs_of(project)) == 1  # the new owner's
    assert stacktest("down", cwd=project).returncode == 0
    assert eventually(lambda: not watchdogs_of(project))  # a clean stop says goodbye to it


def watchdogs_of(project: Path) -> list[int]:
    """Live watchdog processes watching this project's run directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            watching = str(project / ".stacktest").encode() in argv
            if b"stacktest.engine.watchdog" in argv and watching and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_foreground_up_stops_everything_on_ctrl_c(project: Path) -> None:
    with foreground_up(project) as fg:
        pids = instance_pids(project)
        fg.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, _ = fg.communicate(timeout=30)
        assert fg.returncode == 130, out  # the shell's code for Ctrl-C, as while starting
        assert wait_gone(pids, timeout=1) == [] and time.monotonic() - started < 2
    assert wait_gone(pids) == []


def test_logs_f_with_a_file_name_says_what_it_means(project: Path) -> None:
    result = stacktest("logs", "-f", "stack.toml", cwd=project)
    assert result.returncode == 1
    assert "'stack.toml' is a file name, not a service" in result.stderr
    assert "stacktest logs --file stack.toml" in result.stderr


def test_down_when_nothing_runs(project: Path) -> None:
    down = stacktest("down", cwd=project)
    assert down.returncode == 0
    assert "nothing to stop" in down.stdout


def test_exec_when_not_running(project: Path) -> None:
    result = stacktest("exec", "db", "--", "psql", cwd=project)
    assert result.returncode == 1
    assert "no stack is running" in result.stderr and "stacktest up -d" in result.stderr


def test_up_failure_is_reported_without_traceback(write_stack: Write) -> None:
    path = write_stack(
        f"""
        [services.api]
        command = ["{PY}", "-c", "import sys; print('port already taken?'); sys.exit(2)"]
        ready = {{ tcp = true }}
        """
    )
    for args in (["up", "-d"], ["up"]):
        result = stacktest(*args, cwd=path.parent)
        text = result.stdout + result.stderr
        assert result.returncode == 1, text
        assert "exited with code 2 before it was ready" in text
        assert "port already taken?" in text
        assert "Traceback" not in text


def test_bad_stack_file_exits_2_with_location(write_stack: Write) -> None:
    path = write_stack('[services.api]\ncommand = ["x"]\ndepends_on = ["db"]\n')
    for command in ("up", "config", "status"):
        result = stacktest(command, cwd=path.parent)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{path}:3: services.api.depends_on.db: unknown service 'db'" in result.stderr
        assert "Traceback" not in result.stderr


def test_config_json_redacts_and_orders(write_stack: Write) -> None:
    path = write_stack(
        '[services.db]\nuse = "postgres"\npassword = "hunter2"\n'
        '[services.api]\ncommand = ["x", "{db.url}"]\ndepends_on = ["db"]\n'
    )
    result = stacktest("config", "--json", cwd=path.parent)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["start_order"] == ["db", "api"]
    assert data["services"]["db"]["password"] == "****"
    assert "hunter2" not in result.stdout
    assert data["services"]["api"]["depends_on"] == {"db": "healthy"}


def test_doctor_reports_binaries(tmp_path: Path) -> None:
    result = stacktest("doctor", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for binary in ("postgres", "initdb", "psql", "nats-server"):
        assert binary in result.stdout


def test_help_is_fast_and_lists_commands(tmp_path: Path) -> None:
    result = stacktest("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("up", "down", "status", "logs", "exec", "restart", "env", "doctor", "config"):
        assert command in result.stdout


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_kill_9_at_the_instant_a_service_is_spawned_leaves_nothing(write_stack: Write, nth: int) -> None:
    """The owner killed between a fork and the pid's record (Valkey rewrites its title
    and environment at once, so no tag finds it): each process wrote its own pid before
    it became the server, and the watchdog reaps it."""
    from tests.helpers import kill_owner_at_spawn, leftovers

    path = write_stack("""
[services.cache]
use = "valkey"

[services.bus]
use = "nats"

[services.worker]
command = ["sleep", "300"]
""")
    run_dir = path.parent / ".stacktest"
    for _ in range(3):
        seen = kill_owner_at_spawn(path.parent, nth)
        assert len(seen) >= nth
        assert eventually(lambda: leftovers(run_dir) == [], timeout=3), leftovers(run_dir)
        # and every child it had (a server's `--version` asked by its provider ends by itself)
        assert wait_gone(seen, timeout=3) == []
