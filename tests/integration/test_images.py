"""The official images' contracts, honoured by the native servers: every setting asked
for in a compose file is in effect when a real client asks the real server."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import json
import os
import shutil
import socket
import subprocess
import textwrap
import urllib.request
from pathlib import Path

import nats
import psycopg
import pytest
import redis

from stacktest import Stack, load_stack
from stacktest.errors import ServiceStartError

pytestmark = pytest.mark.integration
CORPUS = Path(__file__).resolve().parent.parent / "compose"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    project = tmp_path_factory.mktemp("images") / "images"
    shutil.copytree(CORPUS / "images", project)
    with Stack(load_stack(project / "compose.yaml")) as running:
        yield running


def test_postgres_flags_config_file_and_initdb_args_are_in_effect(stack: Stack) -> None:
    with psycopg.connect(stack["db"].url + "/app") as conn:
        def show(name: str) -> str:
            return str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]

        assert show("max_connections") == "150"  # -c in command
        assert show("wal_level") == "logical"  # the mounted config_file
        assert show("max_prepared_transactions") == "10"
        assert show("listen_addresses") == "127.0.0.1"  # the file's '*' is not honoured
        assert show("data_checksums") == "on"  # POSTGRES_INITDB_ARGS
        # POSTGRES_INITDB_WALDIR: the WAL in a directory of its own, written there
        wal = Path(show("data_directory")) / "pg_wal"
        assert wal.is_symlink() and wal.resolve().parent == Path(show("data_directory")).parent
        segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        assert (wal.resolve() / segment).is_file()


def test_postgres_init_scripts_run_as_the_image_runs_them(stack: Stack) -> None:
    db = stack["db"]
    with psycopg.connect(db.url + "/app") as conn:  # .sql.gz into POSTGRES_DB
        names = conn.execute("SELECT name FROM accounts ORDER BY id").fetchall()
        assert names == [("alice",), ("bob",)]
    with psycopg.connect(db.url + "/reporting") as conn:  # the .sql's \c
        assert conn.execute("SELECT total FROM daily").fetchone() == (7,)
    # the .sh edited pg_hba.conf: the role it made gets in without a password
    url = f"postgresql://reporter@127.0.0.1:{db.port}/reporting"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("reporter",)
    log = db.log_path.read_text()
    assert "running" in log and "01-schema.sql" in log and "02-access.sh" in log


def test_valkey_config_file_and_settings_are_in_effect(stack: Stack) -> None:
    client = redis.Redis.from_url(stack["cache"].url, decode_responses=True)
    try:
        assert client.config_get("save") == {"save": "60 1"}
        assert client.config_get("loglevel") == {"loglevel": "warning"}
        assert client.config_get("maxmemory") == {"maxmemory": str(64 * 1024 * 1024)}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        assert client.execute_command("DEBUG", "SLEEP", "0") == "OK"  # --enable-debug-command
    finally:
        client.close()


def nats_reply_to_anonymous_connect(port: int) -> tuple[dict[str, object], str]:
    """The server's INFO, and what it answers a CONNECT without credentials (the wire
    protocol by hand: a client library would retry)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        info = json.loads(reader.readline().decode().removeprefix("INFO "))
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        return info, reader.readline().decode().strip()


def test_nats_auth_and_config_file_are_in_effect(stack: Stack) -> None:
    bus = stack["bus"]
    info, answer = nats_reply_to_anonymous_connect(int(bus.port))  # no credentials
    assert info["auth_required"] is True
    assert answer == "-ERR 'Authorization Violation'"  # anonymous access refused

    assert bus.url.startswith("nats://app:bus-pw@127.0.0.1:")  # the URL carries them

    async def with_credentials() -> bool:
        nc = await nats.connect(bus.url)
        await nc.publish("hello", b"x")
        await nc.flush()
        await nc.close()
        return True

    assert asyncio.run(with_credentials())
    with urllib.request.urlopen(f"{bus.monitor_url}/varz", timeout=5) as response:
        varz = json.load(response)
    assert varz["max_payload"] == 2 * 1024 * 1024  # from the mounted config
    assert varz["server_name"] == "bus-from-config"
    assert varz["jetstream"]["config"]  # -js


def test_a_failing_init_sql_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "initdb").mkdir()
    (tmp_path / "initdb" / "01-bad.sql").write_text("SELECT 1;\nSELECT * FROM missing_table;\n")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        services:
          db:
            image: postgres
            environment: { POSTGRES_PASSWORD: pw }
            volumes: ["./initdb:/docker-entrypoint-initdb.d"]
    """))  # fmt: skip
    with pytest.raises(ServiceStartError) as caught, Stack(load_stack(tmp_path / "compose.yaml")):
        pass
    message = str(caught.value)
    assert f"init script {tmp_path / 'initdb' / '01-bad.sql'} failed" in message
    assert "01-bad.sql:2: ERROR:  relation \"missing_table\" does not exist" in message


def test_an_extension_that_is_not_installed_is_named_with_a_remedy(tmp_path: Path) -> None:
    (tmp_path / "ext.sql.gz").write_bytes(gzip.compress(b"CREATE EXTENSION no_such_ext;\n"))
    (tmp_path / "stack.toml").write_text(
        '[services.db]\nuse = "postgres"\ninitdb = ["ext.sql.gz"]\n'
    )
    with pytest.raises(ServiceStartError) as caught, Stack.from_file(tmp_path / "stack.toml"):
        pass
    message = str(caught.value)
    assert "the extension 'no_such_ext' is not installed for the PostgreSQL in" in message
    assert "no_such_ext.control" in message  # where it looked, as the server says


def test_the_image_tag_picks_the_server_version(tmp_path: Path) -> None:
    """Two PostgreSQL majors on the machine (the wheel's 18, Debian's 15): the tag chooses;
    a tag whose version is not installed runs the first found, and `config` says so."""
    from tests.helpers import run_stacktest
    from tests.system_packages import require

    require("postgresql-15", "/usr/lib/postgresql/15/bin/postgres")
    for tag in ("15", "18"):
        (tmp_path / "compose.yaml").write_text(
            f"services:\n  db:\n    image: postgres:{tag}-alpine\n"
            "    environment: { POSTGRES_PASSWORD: pw }\n"
        )
        spec = load_stack(tmp_path / "compose.yaml")
        assert spec.services["db"].options["version"] == tag
        with Stack(spec) as stack, psycopg.connect(stack["db"].url + "/postgres") as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            assert version.startswith(f"{tag}."), version
    (tmp_path / "compose.yaml").write_text(
        "services:\n  db:\n    image: postgres:13\n    environment: { POSTGRES_PASSWORD: pw }\n"
    )
    said = run_stacktest("config", "--json", cwd=tmp_path)
    notes = "\n".join(json.loads(said.stdout)["not_honoured"])
    assert "services.db: PostgreSQL 13 is asked for and not installed:" in notes
    assert "apt install postgresql-13" in notes
    strict = run_stacktest("config", "--strict", cwd=tmp_path)
    assert strict.returncode == 2 and "PostgreSQL 13 is asked for" in strict.stderr


def memcached_command(port: int, command: bytes, until: bytes = b"END\r\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        data = b""
        while not data.endswith(until):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_memcached_runs_with_the_image_flags(tmp_path: Path) -> None:
    from tests.system_packages import require

    require("memcached", "memcached")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""
        services:
          cache:
            image: memcached:1.6-alpine
            command: memcached -m 128 -c 512 -p 11211 -v
          app:
            build: .
            environment: { MEMCACHE_SERVERS: "cache:11211" }
            x-stacktest: { command: [python, -c, "import os, time; print(os.environ['MEMCACHE_SERVERS'], flush=True); time.sleep(60)"] }
    """))  # fmt: skip
    spec = load_stack(tmp_path / "compose.yaml")
    assert spec.services["cache"].options["args"] == ["-m", "128", "-c", "512", "-v"]
    assert "cache.command: -p 11211: the server listens on the port stacktest gives it" in (
        "\n".join(spec.warnings)
    )
    with Stack(spec) as stack:
        port = int(stack["cache"].port)
        stored = memcached_command(port, b"set greeting 0 0 5\r\nhello\r\n", until=b"\r\n")
        assert stored == b"STORED\r\n"
        got = memcached_command(port, b"get greeting\r\n")
        assert got == b"VALUE greeting 0 5\r\nhello\r\nEND\r\n"
        settings = memcached_command(port, b"stats settings\r\n").decode()
        assert "STAT maxbytes 134217728" in settings and "STAT maxconns 512" in settings
        from stacktest import eventually

        # cache:11211 is the local server for the app (printed once it runs: wait for it)
        assert eventually(lambda: f"127.0.0.1:{port}" in stack["app"].log_path.read_text(), timeout=10)


def test_mariadb_as_the_image_runs_it(tmp_path: Path) -> None:
    """The image's variables, flags and init files; readiness by a real query; clients
    over TCP with the passwords the file gives, and none without them."""
    import pymysql

    from tests.system_packages import require

    require("mariadb-server", "mariadb", "/usr/sbin/mariadbd")
    project = tmp_path / "mariadb"
    shutil.copytree(CORPUS / "mariadb", project)
    spec = load_stack(project / "compose.yaml")
    db = spec.services["db"]
    assert db.use == "mariadb" and db.options["databases"] == ["shop"]
    assert db.options["args"] == ["--character-set-server=utf8mb4", "--max-connections=77"]
    notes = "\n".join(spec.warnings)
    assert "db.command: --port=3307: the server listens on the port stacktest gives it" in notes
    assert "db.healthcheck: the image's healthcheck.sh is not run" in notes
    with Stack(spec) as stack:
        port = int(stack["db"].port)

        def connect(user: str, password: str, database: str | None = None):  # type: ignore[no-untyped-def]
            return pymysql.connect(host="127.0.0.1", port=port, user=user, password=password,
                                   database=database, connect_timeout=5)  # fmt: skip

        with connect("shop", "shop-pw", "shop") as conn, conn.cursor() as cur:
            cur.execute("SELECT name FROM items ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == ["widget", "from-gzip", "from-sh"]
            cur.execute("SELECT @@max_connections, @@character_set_server")
            assert cur.fetchone() == (77, "utf8mb4")
            cur.execute("SELECT @@max_allowed_packet, @@sql_mode")  # the mounted conf.d
            assert cur.fetchone() == (32 * 1024 * 1024, "STRICT_ALL_TABLES")
            # the image loads the system's time zones: named zones convert
            cur.execute("SELECT CONVERT_TZ('2026-01-15 12:00:00', 'UTC', 'Europe/Paris')")
            assert cur.fetchone() == (datetime.datetime(2026, 1, 15, 13, 0),)
        with connect("shop", "shop-pw", "reporting") as conn, conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")  # made by the .sh, with root's password
            assert cur.fetchone() == ("reporting",)
        with connect("root", "root-pw") as conn, conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == ("root@%",)
        for user, password in (("root", ""), ("root", "wrong"), ("shop", "")):
            with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
                connect(user, password)
        assert stack["db"].url == f"mysql://shop:shop-pw@127.0.0.1:{port}"


def test_mariadb_from_a_stack_file_with_generated_passwords(tmp_path: Path) -> None:
    import pymysql

    from tests.system_packages import require

    require("mariadb-server", "mariadb", "/usr/sbin/mariadbd")
    (tmp_path / "stack.toml").write_text(
        '[services.db]\nuse = "mariadb"\ndatabases = ["app"]\nuser = "app"\n'
        'settings = { max_connections = 42 }\ntimezones = false\n'
    )
    with Stack.from_file(tmp_path / "stack.toml") as stack:
        db = stack["db"]
        assert db.password and db.password != db.root_password
        with pymysql.connect(host=db.host, port=int(db.port), user="app", password=db.password,
                             database="app") as conn, conn.cursor() as cur:  # fmt: skip
            cur.execute("SELECT @@max_connections")
            assert cur.fetchone() == (42,)
            cur.execute("SELECT CONVERT_TZ(NOW(), 'UTC', 'Europe/Paris')")
            assert cur.fetchone() == (None,)  # timezones = false: none loaded
        stack.restart("db")  # the data and the passwords stay
        with pymysql.connect(host=db.host, port=int(db.port), user="root",
                             password=db.root_password) as conn:  # fmt: skip
            assert conn.open


def test_a_redis_replica_and_a_nats_cluster_of_services(tmp_path: Path) -> None:
    """--replicaof SERVICE PORT is a real replica of that service; three NATS servers whose
    --routes name each other are one cluster: routes connected, a message crosses."""
    from stacktest import eventually

    project = tmp_path / "cluster"
    shutil.copytree(CORPUS / "cluster", project)
    with Stack(load_stack(project / "compose.yaml")) as stack:
        primary = redis.Redis.from_url(stack["redis-primary"].url, decode_responses=True)
        replica = redis.Redis.from_url(stack["redis-replica"].url, decode_responses=True)
        try:
            primary.set("greeting", "hello")
            assert eventually(lambda: replica.get("greeting") == "hello", timeout=10)
            info = replica.info("replication")
            assert info["role"] == "slave" and info["master_link_status"] == "up"
            assert info["master_port"] == int(stack["redis-primary"].port)
            # the sentinel watches the primary by its local address, and finds the replica
            sentinel = redis.Redis.from_url(stack["sentinel"].url, decode_responses=True)
            try:
                master = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", "mymaster")
                assert master == ["127.0.0.1", str(stack["redis-primary"].port)]
                assert eventually(
                    lambda: len(sentinel.execute_command("SENTINEL", "replicas", "mymaster")) == 1,
                    timeout=20,
                )
            finally:
                sentinel.close()
        finally:
            primary.close()
            replica.close()

        def routes(name: str) -> int:
            url = f"{stack[name].monitor_url}/routez"
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(json.load(response)["num_routes"])

        for name in ("nats-1", "nats-2", "nats-3"):
            assert eventually(lambda name=name: routes(name) >= 2, timeout=15), name
        # from config files' cluster blocks: the routes join, the listener is on loopback
        for name in ("conf-1", "conf-2"):
            assert eventually(lambda name=name: routes(name) >= 1, timeout=15), name
            with urllib.request.urlopen(f"{stack[name].monitor_url}/varz", timeout=5) as r:
                cluster = json.load(r)["cluster"]
            assert cluster["name"] == "from-config" and cluster["addr"] == "127.0.0.1"

        async def crosses() -> bytes:
            sub = await nats.connect(stack["nats-2"].url)
            pub = await nats.connect(stack["nats-3"].url)
            try:
                inbox = await sub.subscribe("orders.created")
                await sub.flush()
                # interest propagates over the routes; publish until it arrives
                for _ in range(50):
                    await pub.publish("orders.created", b"order-1")
                    await pub.flush()
                    try:
                        message = await inbox.next_msg(timeout=0.2)
                        return bytes(message.data)
                    except nats.errors.TimeoutError:
                        continue
                raise AssertionError("no message crossed the cluster")
            finally:
                await sub.close()
                await pub.close()

        assert asyncio.run(crosses()) == b"order-1"


def test_nginx_proxies_to_a_stack_service_and_serves_its_files(tmp_path: Path) -> None:
    """The image's templates (rendered with the service's environment) and html mounts,
    `server ${API_UPSTREAM}` in an upstream, the published port: what the browser saw under
    Docker, it sees here."""
    from tests.system_packages import require

    require("nginx", "/usr/sbin/nginx")
    project = tmp_path / "proxy"
    shutil.copytree(CORPUS / "proxy", project)
    spec = load_stack(project / "compose.yaml")
    web = spec.services["web"]
    assert web.use == "nginx" and web.port == 18090
    assert web.options["addresses"] == {
        "api:8000": "{api.host}:{api.port}", "docs:80": "{docs.host}:{docs.port}",
        "http://docs": "http://{docs.host}:{docs.port}",  # no port written: 80
        "server docs": "server {docs.host}:{docs.port}",
    }  # fmt: skip
    assert web.env["API_UPSTREAM"] == "{api.host}:{api.port}"  # for the template
    with Stack(spec) as stack:
        with urllib.request.urlopen("http://127.0.0.1:18090/", timeout=5) as response:
            assert b"static from nginx" in response.read()
        with urllib.request.urlopen("http://127.0.0.1:18090/api/hello.txt", timeout=5) as response:
            assert response.read() == b"hello from the api\n"  # through the upstream
        with urllib.request.urlopen("http://127.0.0.1:18090/docs/manual.txt", timeout=5) as response:
            assert response.read() == b"the manual\n"  # proxy_pass http://docs/: port 80
        from stacktest import eventually

        # nginx's access log is the service's log (written once the response went out)
        assert eventually(lambda: "GET /api/hello.txt" in stack["web"].log_path.read_text(), timeout=10)
        conf = (stack["web"].log_path.parent.parent / "services" / "web" / "nginx.conf").read_text()
        assert f"server 127.0.0.1:{stack['api'].port};" in conf  # the template, rendered
        assert "server_name localhost;" in conf and "$host;" in conf  # nginx's own $host kept


@pytest.mark.xdist_group("timing")  # an Erlang VM boots: keep load tests clear of it
def test_rabbitmq_publish_consume_and_the_management_api(tmp_path: Path) -> None:
    import base64

    import pika

    from tests.system_packages import require

    require("rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")
    project = tmp_path / "rabbit"
    shutil.copytree(CORPUS / "rabbit", project)
    spec = load_stack(project / "compose.yaml")
    broker = spec.services["broker"]
    assert broker.use == "rabbitmq" and broker.options["management"] is True
    with Stack(spec) as stack:
        url = stack["broker"].url
        assert url.startswith("amqp://shop:shop-pw@127.0.0.1:") and url.endswith("/orders")
        connection = pika.BlockingConnection(pika.URLParameters(url))
        try:
            channel = connection.channel()
            channel.queue_declare("created")
            channel.basic_publish("", "created", b"order-1")
            _, _, body = channel.basic_get("created", auto_ack=True)
            assert body == b"order-1"
            # the mounted rabbitmq.conf: the broker offered 64 channels, the client took that
            assert connection._impl.params.channel_max == 64
        finally:
            connection.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika.URLParameters(url.replace("shop-pw", "wrong")))
        auth = base64.b64encode(b"shop:shop-pw").decode()
        request = urllib.request.Request(f"{stack['broker'].management_url}/api/queues/orders",
                                         headers={"Authorization": f"Basic {auth}"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=5) as response:
            assert [q["name"] for q in json.load(response)] == ["created"]
        run_dir = stack.run_dir.path
    from stacktest.engine import procs

    assert not list(procs.tagged(**{procs.TAG_RUN_DIR: str(run_dir)}))  # epmd too


def test_mariadb_database_per_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets a copy of the service's database (its seed rows too), sees only its
    own writes, and the copy is gone after the session."""
    from tests.system_packages import require

    require("mariadb-server", "mariadb", "/usr/sbin/mariadbd")
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
                "STACKTEST_FILE", "STACKTEST_ATTACH", "STACKTEST_KEEP", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)
    (pytester.path / "seed.sql").write_text(
        "CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20));\n"
        "INSERT INTO items (name) VALUES ('seeded');\n"
    )
    (pytester.path / "stack.toml").write_text(
        '[services.db]\nuse = "mariadb"\ndatabases = ["shop"]\nuser = "shop"\n'
        'initdb = ["seed.sql"]\n'
    )
    pytester.makepyfile(test_iso="""
        import pymysql
        import pytest

        @pytest.mark.parametrize("who", ["ada", "grace"])
        def test_own_database(mariadb_database, who, stack):
            db = mariadb_database
            with pymysql.connect(host=db.host, port=db.port, user=db.user,
                                 password=db.password, database=db.name) as conn:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO items (name) VALUES (%s)", (who,))
                    conn.commit()
                    cur.execute("SELECT name FROM items ORDER BY id")
                    assert [r[0] for r in cur.fetchall()] == ["seeded", who]
            with open("names.txt", "a") as out:
                out.write(db.name + "\\n")
    """)
    try:  # (the stack is kept: whatever happens below, it is brought down)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--stack-keep",
                                               timeout=120)  # fmt: skip
        result.assert_outcomes(passed=2)
        names = (pytester.path / "names.txt").read_text().split()
        assert len(set(names)) == 2
        from stacktest.isolation.mariadb import MariadbServer

        state = json.loads((pytester.path / ".stacktest" / "state.json").read_text())
        fields = state["instances"]["db"]["fields"]
        left = MariadbServer.of("db", fields).run("SHOW DATABASES").split()
        assert not set(names) & set(left), left  # dropped after each test
        assert "shop" in left
    finally:
        from tests.helpers import run_stacktest

        run_stacktest("down", cwd=pytester.path)


@pytest.mark.xdist_group("timing")  # an Erlang VM boots: keep load tests clear of it
@pytest.mark.parametrize("management", [True, False], ids=["management API", "rabbitmqctl"])
def test_rabbitmq_vhost_per_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, management: bool
) -> None:
    """Each test's queues live in a vhost of its own: a queue one test declares does not
    exist for the other; the vhosts are gone after. Made through the management API when
    the broker has it, through the node's rabbitmqctl otherwise."""
    from tests.system_packages import require

    require("rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID",
                "STACKTEST_FILE", "STACKTEST_ATTACH", "STACKTEST_KEEP", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)
    (pytester.path / "stack.toml").write_text(
        f'[services.mq]\nuse = "rabbitmq"\nmanagement = {str(management).lower()}\n'
        "start_timeout = 60\n"
    )
    pytester.makepyfile(test_iso="""
        import pika
        import pytest

        @pytest.mark.parametrize("who", ["ada", "grace"])
        def test_own_vhost(rabbitmq_vhost, who):
            connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_vhost.url))
            channel = connection.channel()
            # the queue is new in every test's vhost: no message of the other test in it
            declared = channel.queue_declare("jobs")
            assert declared.method.message_count == 0
            channel.basic_publish("", "jobs", who.encode())
            connection.close()
            with open("vhosts.txt", "a") as out:
                out.write(rabbitmq_vhost.name + "\\n")
    """)
    try:  # (the stack is kept: whatever happens below, it is brought down)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--stack-keep",
                                               timeout=180)  # fmt: skip
        result.assert_outcomes(passed=2)
        names = (pytester.path / "vhosts.txt").read_text().split()
        state = json.loads((pytester.path / ".stacktest" / "state.json").read_text())
        fields = state["instances"]["mq"]["fields"]
        listed = subprocess.run(
            [fields["ctl"], "-n", fields["node"], "list_vhosts", "-q"], capture_output=True,
            text=True, check=True, timeout=60,
            env={**os.environ, "HOME": fields["home"], "ERL_EPMD_PORT": fields["epmd_port"]},
        )  # fmt: skip
        left = set(listed.stdout.split())
        assert "/" in left  # (the listing works)
        assert len(set(names)) == 2 and not set(names) & left, (names, left)
    finally:
        from tests.helpers import run_stacktest

        run_stacktest("down", cwd=pytester.path)
