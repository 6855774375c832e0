"""Faults on real services, seen by real clients through stacktest's proxies."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from stacktest import Stack, eventually
from stacktest.errors import FaultError
from stacktest.faults import nemesis as nem
from stacktest.faults.history import History, counter
from stacktest.providers.pgbin import find_bin_dir
from tests.helpers import run_stacktest

pytestmark = pytest.mark.integration
PY = sys.executable

STACK = f"""
[stack]
proxy = true

[services.db]
use = "postgres"
databases = ["app"]

[services.cache]
use = "valkey"

[services.bus]
use = "nats"
jetstream = true

[services.web]
command = ["{PY}", "-m", "http.server", "{{port}}", "--bind", "127.0.0.1"]
ready = {{ http = "/" }}

[services.client]
command = ["{PY}", "-c", "import time; time.sleep(3600)"]
env = {{ DATABASE_URL = "{{db.url}}/app", REDIS_URL = "{{cache.url}}", NATS_URL = "{{bus.url}}", WEB = "{{web.url}}" }}
depends_on = ["db", "cache", "bus", "web"]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("faults")
    (directory / "stack.toml").write_text(STACK)
    with Stack.from_file(directory / "stack.toml") as running:
        yield running


@pytest.fixture(autouse=True)
def healed(stack: Stack) -> Iterator[None]:
    yield
    stack.heal()


def cache_client(stack: Stack, timeout: float = 2.0) -> redis.Redis:
    """A client of the edge client->cache, without redis-py's retries (they would hide faults)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    host, port = stack.proxy_address("client->cache")
    return redis.Redis(
        host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


def test_edges_are_rendered_through_their_proxies(stack: Stack) -> None:
    proxies = stack.faults()["proxies"]
    assert sorted(proxies) == ["client->bus", "client->cache", "client->db", "client->web"]
    db_proxy = proxies["client->db"]
    assert db_proxy["upstream"] == f"127.0.0.1:{stack['db'].port}"
    env = (Path(f"/proc/{stack['client'].pids[0]}/environ").read_bytes()).split(b"\0")
    rendered = dict(item.decode().split("=", 1) for item in env if b"=" in item)
    assert rendered["DATABASE_URL"].endswith(f"@{db_proxy['listen']}/app")
    assert rendered["REDIS_URL"] == f"redis://{proxies['client->cache']['listen']}"


def test_psql_through_a_latency_toxic_shows_the_added_delay(stack: Stack) -> None:
    host, port = stack.proxy_address("client->db")
    db = stack["db"]
    url = f"postgresql://{db.user}:{db.password}@{host}:{port}/app"
    psql = str(find_bin_dir()[0] / "psql")
    if not Path(psql).exists():
        psql = str(Path(sys.executable).parent.parent / "lib")  # never reached with the wheel

    def query_ms() -> float:
        out = subprocess.run(
            [psql, url, "-X", "-c", "\\timing on", "-c", "select 1"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        return float(re.search(r"Time: ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]

    assert query_ms() < 50
    with stack.fault("client->db", latency="100ms"):
        delayed = query_ms()
    assert 100 <= delayed < 300, delayed
    assert query_ms() < 50


def test_a_valkey_client_fails_while_the_link_is_down_and_recovers(stack: Stack) -> None:
    client = cache_client(stack)
    assert client.ping()
    with stack.down("client->cache"):
        with pytest.raises(redis.ConnectionError):
            client.ping()
        with pytest.raises(redis.ConnectionError):
            cache_client(stack).ping()
    assert client.ping()  # the same client works again: it reconnects through the healed link


def test_a_nats_client_reconnects_after_reset_peer(stack: Stack) -> None:
    import nats

    host, port = stack.proxy_address("client->bus")

    async def scenario() -> tuple[int, int, bytes]:
        disconnected, reconnected = asyncio.Event(), asyncio.Event()
        counts = {"disconnected": 0, "reconnected": 0}

        async def on_disconnect() -> None:
            counts["disconnected"] += 1
            disconnected.set()

        async def on_reconnect() -> None:
            counts["reconnected"] += 1
            reconnected.set()

        nc = await nats.connect(
            f"nats://{host}:{port}",
            reconnect_time_wait=0.1,
            max_reconnect_attempts=-1,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
        try:
            sub = await nc.subscribe("greet")
            name = await asyncio.to_thread(stack.add_toxic, "client->bus", "reset_peer", timeout=0)
            await asyncio.wait_for(disconnected.wait(), 10)
            await asyncio.to_thread(stack.remove_toxic, "client->bus", name)
            await asyncio.wait_for(reconnected.wait(), 10)
            await nc.publish("greet", b"hello again")
            msg = await sub.next_msg(timeout=5)
            return counts["disconnected"], counts["reconnected"], msg.data
        finally:
            await nc.close()

    disconnects, reconnects, data = asyncio.run(scenario())
    assert disconnects >= 1 and reconnects >= 1
    assert data == b"hello again"


def test_bandwidth_caps_a_bulk_transfer_within_20_percent(stack: Stack) -> None:
    direct = redis.Redis.from_url(stack["cache"].url)
    payload = b"x" * (1 << 20)
    direct.set("bulk", payload)
    client = cache_client(stack, timeout=10)
    client.ping()
    with stack.fault("client->cache", bandwidth="1MB/s"):  # 1024 KB/s
        started = time.perf_counter()
        assert client.get("bulk") == payload
        elapsed = time.perf_counter() - started
    rate_kb = len(payload) / 1024 / elapsed
    assert abs(rate_kb - 1024) / 1024 <= 0.20, f"{rate_kb:.0f} KB/s"


def test_pause_stops_answers_and_resume_brings_them_back(stack: Stack) -> None:
    direct = redis.Redis.from_url(stack["cache"].url, socket_timeout=0.3)
    assert direct.ping()
    with stack.paused("cache"):
        with pytest.raises(redis.TimeoutError):
            direct.ping()
        assert [r["state"] for r in stack.status() if r["name"] == "cache"] == ["paused"]
    assert redis.Redis.from_url(stack["cache"].url, socket_timeout=2).ping()


def test_restart_and_kill_keep_postgres_data(stack: Stack) -> None:
    url = stack["db"].url + "/app"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    stack.restart("db")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [(42,)]
    # SIGKILL right after a commit returned: crash recovery on the way back keeps it
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO kept VALUES (43)")
    with stack.stopped("db", kill=True), pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=1)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT v FROM kept ORDER BY v").fetchall() == [(42,), (43,)]


def test_timeout_slicer_and_limit_data_toxics(stack: Stack) -> None:
    direct = redis.Redis.from_url(stack["cache"].url)
    direct.set("sliced", b"y" * 5000)
    client = cache_client(stack, timeout=0.5)
    with stack.fault("client->cache", "timeout", timeout=0), pytest.raises(redis.TimeoutError):
        client.ping()
    client = cache_client(stack)
    with stack.fault("client->cache", slicer=100, size_variation=20, delay="100us"):
        assert client.get("sliced") == b"y" * 5000
    with stack.fault("client->cache", limit_data="1KB"), pytest.raises(redis.ConnectionError):
        cache_client(stack).get("sliced")


def raw_ping(address: tuple[str, int]) -> bool:
    """One connection, one PING, no retries (redis-py would retry a reset connection)."""
    try:
        with socket.create_connection(address, timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def test_slow_close_delays_the_close(stack: Stack) -> None:
    address = stack.proxy_address("client->cache")

    def seconds_to_eof() -> float:
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(b"QUIT\r\n")  # valkey answers +OK and closes
            started = time.perf_counter()
            while sock.recv(64):
                pass
            return time.perf_counter() - started

    assert seconds_to_eof() < 0.1
    with stack.fault("client->cache", slow_close="300ms"):
        assert seconds_to_eof() >= 0.3


def test_terminate_stops_a_service_until_started(stack: Stack) -> None:
    stack.terminate("web")
    assert [r["state"] for r in stack.status() if r["name"] == "web"] == ["stopped"]
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(stack["web"].url, timeout=2)
    stack.start_service("web")
    with urllib.request.urlopen(stack["web"].url, timeout=5) as response:
        assert response.status == 200


def test_toxicity_is_rolled_per_connection(stack: Stack) -> None:
    address = stack.proxy_address("client->cache")
    with stack.fault("client->cache", "reset_peer", timeout=0, toxicity=0.5):
        outcomes = [raw_ping(address) for _ in range(40)]
    assert 0 < sum(outcomes) < 40  # some connections were hit, some were spared
    with stack.fault("client->cache", "reset_peer", timeout=0):
        assert not any(raw_ping(address) for _ in range(5))
    assert all(raw_ping(address) for _ in range(5))


def test_http_level_faults(stack: Stack) -> None:
    host, port = stack.proxy_address("client->web")
    url = f"http://{host}:{port}/"

    def status() -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert status() == 200
    with stack.fault("client->web", http_error=503, first=2):
        assert [status(), status(), status()] == [503, 503, 200]
    with stack.fault("client->web", http_error=500, rate=1.0):
        assert status() == 500
    with stack.fault("client->web", http_error=0, delay="200ms"):
        started = time.perf_counter()
        assert status() == 200
        assert time.perf_counter() - started >= 0.2


def test_toxiproxy_python_client_drives_the_proxies(stack: Stack) -> None:
    from toxiproxy import Toxiproxy
    from toxiproxy.api import APIConsumer

    assert stack.toxiproxy_url is not None
    host, port = stack.toxiproxy_url.removeprefix("http://").split(":")
    APIConsumer.host, APIConsumer.port = host, int(port)
    server = Toxiproxy()
    assert server.running()
    proxy = server.get_proxy("client->cache")
    assert proxy is not None and proxy.upstream == f"127.0.0.1:{stack['cache'].port}"
    client = cache_client(stack)
    client.ping()
    proxy.add_toxic(type="latency", attributes={"latency": 200})
    assert "latency_downstream" in proxy.toxics()
    started = time.perf_counter()
    client.ping()
    assert time.perf_counter() - started >= 0.2
    proxy.destroy_toxic("latency_downstream")
    started = time.perf_counter()
    client.ping()
    assert time.perf_counter() - started < 0.1
    with proxy.down(), pytest.raises(redis.ConnectionError):
        cache_client(stack).ping()
    assert cache_client(stack).ping()
    # routes the client library does not cover: update a toxic, populate
    api = stack.toxiproxy_url
    proxy.add_toxic(type="latency", name="slow", attributes={"latency": 10})
    updated = httpx.post(
        f"{api}/proxies/client-%3Ecache/toxics/slow", json={"attributes": {"latency": 250}}
    )
    assert updated.status_code == 200 and updated.json()["attributes"]["latency"] == 250
    started = time.perf_counter()
    client.ping()
    assert time.perf_counter() - started >= 0.25
    assert httpx.delete(f"{api}/proxies/client-%3Ecache/toxics/slow").status_code == 204
    populated = httpx.post(
        f"{api}/populate",
        json=[
            {"name": "pop", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{stack['cache'].port}"}
        ],
    )
    assert populated.status_code == 201
    (made_by_populate,) = populated.json()["proxies"]
    pop_host, pop_port = made_by_populate["listen"].split(":")
    assert redis.Redis(host=pop_host, port=int(pop_port)).ping()
    assert httpx.delete(f"{api}/proxies/pop").status_code == 204

    def api_events() -> set[tuple[str, str]]:
        lines = stack.run_dir.events_file.read_text().splitlines()
        return {(e["service"], e["event"]) for e in map(json.loads, lines)}

    # the API answers from the proxies' loop; the event log is written on the engine's
    eventually(lambda: {("pop", "fault: created"), ("pop", "fault: deleted")} <= api_events())
    assert httpx.get(f"{api}/proxies/nope").status_code == 404
    # a proxy of its own, made through the API
    made = server.create(upstream=f"127.0.0.1:{stack['cache'].port}", name="mine")
    mine_host, mine_port = made.listen.split(":")
    assert redis.Redis(host=mine_host, port=int(mine_port)).ping()
    made.destroy()
    assert server.reset()


def test_a_declared_edge_cannot_be_deleted_and_is_healed_instead(stack: Stack) -> None:
    api, edge = stack.toxiproxy_url, "client-%3Ecache"
    added = httpx.post(f"{api}/proxies/{edge}/toxics", json={"type": "latency", "attributes": {"latency": 300}})
    assert added.status_code == 200
    refused = httpx.delete(f"{api}/proxies/{edge}")
    assert refused.status_code == 403
    assert "an edge the stack file declares" in refused.json()["error"]
    proxy = httpx.get(f"{api}/proxies/{edge}").json()
    assert proxy["enabled"] and proxy["toxics"] == []  # healed, not gone
    started = time.perf_counter()
    assert cache_client(stack).ping()
    assert time.perf_counter() - started < 0.3
    # POST /reset heals every declared edge too
    httpx.post(f"{api}/proxies/{edge}", json={"enabled": False})
    assert httpx.post(f"{api}/reset").status_code == 204
    assert httpx.get(f"{api}/proxies/{edge}").json()["enabled"]
    assert cache_client(stack).ping()


def test_a_valkey_edge_relays_over_the_servers_unix_socket(stack: Stack) -> None:
    """The proxy reaches Valkey over its private unix socket (flag U: a unix client)."""
    info = cache_client(stack).client_info()
    assert info["addr"].startswith("/") and "U" in info["flags"], info
    direct = redis.Redis(host="127.0.0.1", port=stack["cache"].port).client_info()
    assert not direct["addr"].startswith("/")


def test_valkey_auth_holds_through_the_unix_socket_and_nothing_is_left(tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text(textwrap.dedent("""
        [services.cache]
        use = "valkey"
        password = true

        [services.app]
        command = ["sleep", "3600"]
        depends_on = { cache = { proxy = true } }
    """))  # fmt: skip
    with Stack.from_file(tmp_path / "stack.toml") as stack:
        host, port = stack.proxy_address("app->cache")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=host, port=port, password="wrong").ping()
        with socket.create_connection((host, port), timeout=5) as raw:
            raw.sendall(b"SET k v\r\n")
            assert raw.recv(100).startswith(b"-NOAUTH")
        client = redis.Redis(host=host, port=port, password=stack["cache"].password)
        assert client.ping() and client.client_info()["addr"].startswith("/")
        sock = Path(client.client_info()["laddr"].rsplit(":", 1)[0])
        assert sock.stat().st_mode & 0o777 == 0o700
        client.close()
        stack.kill("cache")  # a killed server leaves its socket file behind...
        stack.start_service("cache")
        assert redis.Redis(host=host, port=port, password=stack["cache"].password).ping()
    assert not sock.exists()  # ...and stopping the stack removes it


def test_a_proxy_falls_back_to_tcp_when_the_unix_socket_is_gone(stack: Stack) -> None:
    """Also an EdgeProxy on the standard asyncio loop, outside any stack."""
    from stacktest.faults.proxy import EdgeProxy

    async def scenario() -> bytes:
        upstream = ("127.0.0.1", stack["cache"].port)
        proxy = EdgeProxy("t->cache", ("127.0.0.1", 0), upstream, upstream_unix="/nonexistent.sock")
        await proxy.start()
        try:
            reader, writer = await asyncio.open_connection(*proxy.listen)
            writer.write(b"PING\r\n")
            answer = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            return answer
        finally:
            await proxy.stop()

    assert asyncio.run(scenario()) == b"+PONG\r\n"


def test_a_blocking_client_in_an_async_test_does_not_stall_the_proxy(tmp_path: Path) -> None:
    """The proxies run on their own loop: a blocking call through one, made on the loop
    that runs the stack, gets its answer (it would hang if they shared that loop)."""
    from stacktest import AsyncStack

    (tmp_path / "stack.toml").write_text(textwrap.dedent("""
        [services.cache]
        use = "valkey"

        [services.app]
        command = ["sleep", "3600"]
        depends_on = { cache = { proxy = true } }
    """))  # fmt: skip

    async def scenario() -> bytes:
        async with AsyncStack.from_file(tmp_path / "stack.toml") as stack:
            state = json.loads(stack.run_dir.state_file.read_text())
            host, port = state["proxies"]["app->cache"]["listen"].split(":")
            with socket.create_connection((host, int(port)), timeout=5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(100)  # blocks this loop: only another loop can relay

    assert asyncio.run(scenario()) == b"+PONG\r\n"


def test_unknown_edges_and_services_are_clear_errors(stack: Stack) -> None:
    with pytest.raises(FaultError, match=r"no fault proxy on edge 'db->client'.*client->db"):
        stack.add_toxic("db->client", latency=10)
    with pytest.raises(Exception, match="no service 'nope'"):
        stack.kill("nope")


def test_faults_are_written_to_the_event_log(stack: Stack) -> None:
    with stack.fault("client->db", latency=5):
        pass
    stack.pause("web")
    stack.heal()
    events = [json.loads(line) for line in stack.run_dir.events_file.read_text().splitlines()]
    whats = [(e["service"], e["event"]) for e in events]
    assert ("client->db", "fault: toxic added") in whats
    assert ("client->db", "fault: toxic removed") in whats
    assert ("web", "fault: paused") in whats
    assert ("stack", "fault: healed") in whats


def test_a_nemesis_always_ends_healed_and_nothing_is_lost(stack: Stack) -> None:
    # No client retries: a retried INCR whose first try did land counts twice, and the
    # counter checker rightly reports the read as above anything possible (it did, when
    # this test first ran with redis-py's default retries).
    client = cache_client(stack, timeout=0.5)
    client.delete("counter")
    history = History()
    faults = [
        nem.pause("cache"),
        nem.link_down("client->cache"),
        nem.toxic("client->cache", latency="50ms"),
    ]
    with nem.Nemesis(stack, faults, every="0.3s", hold="0.15s", mode="cycle", history=history) as n:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                with history.op("add", 1):
                    client.incr("counter")
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.02)
    assert n.applied[:3] == ["pause cache", "down client->cache", "latency=50ms on client->cache"]
    assert stack.faults()["paused"] == [] and all(
        p["enabled"] and not p["toxics"] for p in stack.faults()["proxies"].values()
    )
    with history.op("read") as op:
        op.value = int(cache_client(stack).get("counter") or 0)
    result = counter(history)
    assert result["valid"] is True, result


def test_cli_faults_on_a_detached_stack(tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text(
        textwrap.dedent(
            """
            [services.cache]
            use = "valkey"

            [services.app]
            command = ["sleep", "600"]
            depends_on = { cache = { proxy = true } }
            """
        )
    )

    def st(*args: str) -> subprocess.CompletedProcess[str]:
        return run_stacktest(*args, cwd=tmp_path, timeout=60)

    assert st("up", "-d").returncode == 0
    try:
        added = st("fault", "add", "app->cache", "latency=200ms", "jitter=10ms")
        assert added.returncode == 0, added.stderr
        assert "latency=200ms jitter=10ms (downstream)" in added.stdout
        assert st("fault", "add", "app->cache", "down").returncode == 0
        bad = st("fault", "add", "app->cache", "latency=soon")
        assert bad.returncode == 2 and "is not a duration" in bad.stderr
        listed = st("fault", "list", "--json")
        proxies = json.loads(listed.stdout)["proxies"]
        assert proxies["app->cache"]["enabled"] is False
        assert proxies["app->cache"]["toxics"][0]["attributes"] == {"latency": 200, "jitter": 10}
        assert st("pause", "cache").returncode == 0
        status = st("status")
        assert "paused" in status.stdout and "app->cache (down) [1 toxic(s)]" in status.stdout
        assert "Toxiproxy API: http://127.0.0.1:" in status.stdout
        cleared = st("fault", "clear")
        assert "app->cache" in cleared.stdout and "cache resumed" in cleared.stdout
        assert st("kill", "cache").returncode == 0
        assert '"state": "killed"' in st("status", "--json").stdout
        assert st("start", "cache").returncode == 0
        assert st("stop", "nope").returncode == 1
    finally:
        st("down")
