"""MariaDB: the system's ``mariadbd`` (no PyPI wheel ships one), from a cached, already
initialised data directory, as the postgres provider does.

The first start for a given (server, databases, user, init files) runs
``mariadb-install-db``, creates the databases and the user, runs the init files as the
official image runs them (``mariadb`` for SQL, ``.sh`` run or sourced), stops, and stores
the data directory. Every later start copies it and starts ``mariadbd`` directly.

Passwords given (``root_password``, ``password``: a compose file's ``MARIADB_*``) are set
when the data directory is made, as the image sets them before its init scripts run;
generated ones are per run, set by the first readiness check on the private socket (until
then ``root@localhost`` has none). TCP clients use ``root@'%'`` and the user, as the image
makes them. Durability as for Postgres: a commit that returned
survives a kill of the server (``innodb_flush_log_at_trx_commit = 2``), not an OS crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

from stacktest.errors import ServiceStartError
from stacktest.providers import binaries, initdb
from stacktest.providers.base import (
    BinaryReport,
    Instance,
    Launch,
    PrivateDataProvider,
    generate_password,
)
from stacktest.providers.commands import run_captured
from stacktest.providers.pgdata import cache_root, scratch_root
from stacktest.spec.model import ServiceSpec

CACHE_FORMAT = "2"
INSTALL_HINT = "install MariaDB: apt install mariadb-server (brew install mariadb)"
ZONEINFO_DIRS = ["/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo"]
SYSTEM_DIRS = [
    "/usr/sbin",
    "/usr/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
    "/opt/homebrew/opt/mariadb/bin",
    "/opt/homebrew/bin",
]
DEFAULT_SETTINGS = {
    "innodb_flush_log_at_trx_commit": "2",  # written at commit, not fsynced: as Postgres'
    "innodb_doublewrite": "0",
    "innodb_buffer_pool_size": "64M",
    "innodb_log_file_size": "16M",
    "skip_name_resolve": "1",
    "character_set_server": "utf8mb4",
    "collation_server": "utf8mb4_general_ci",
}
PROCESS_SQL = (
    "docker_process_sql() { mariadb --no-defaults --protocol=socket -uroot "
    '"${MARIADB_DATABASE:+--database=$MARIADB_DATABASE}" "$@"; }'
)


def _tool(names: list[str], explicit: str | None) -> tuple[binaries.Search, list[Path]]:
    return binaries.find_all(names, explicit, [(map(Path, SYSTEM_DIRS), "system")])


def find_binaries(explicit: str | None = None, version: str | None = None) -> dict[str, Path]:
    """``server``, ``install_db``, ``client`` (and ``tzinfo`` when there is one); raises
    BinaryNotFound naming what is missing."""
    search, servers = _tool(["mariadbd", "mysqld"], explicit)
    if not servers:
        raise search.fail(INSTALL_HINT)
    server = binaries.choose(servers, version)[0]
    found = {"server": server}
    for role, names in (
        ("install_db", ["mariadb-install-db", "mysql_install_db"]),
        ("client", ["mariadb", "mysql"]),
        ("tzinfo", ["mariadb-tzinfo-to-sql", "mysql_tzinfo_to_sql"]),
    ):
        # beside the server first (one installation), then anywhere
        beside = binaries.Search(names).look_every(
            [server.parent, server.parent.parent / "bin"], "beside the server"
        )
        other_search, others = _tool(names, explicit)
        if beside or others:
            found[role] = (beside or others)[0]
        elif role != "tzinfo":  # that one only when time zones are asked for (at start)
            raise other_search.fail(INSTALL_HINT + f" (it ships {names[0]})")
    return found


def _run_as_flag() -> str:
    """mariadbd refuses root unless told to run as root: it runs as whoever runs us."""
    return f"--user={getpass.getuser()}"


async def _run(
    argv: list[str], service: str, what: str, stdin: bytes | None = None, stderr: bool = True
) -> str:
    env = {**os.environ, "MYSQL_PWD": ""}
    code, text = await run_captured(argv, stdin=stdin, env=env, stderr=stderr)
    if code != 0:
        raise ServiceStartError(
            service,
            f"could not {what} (exit code {code})",
            log_tail=text.strip().splitlines()[-15:],
            hint="run `stacktest doctor` to see which MariaDB is used",
        )
    return text


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


class MariadbProvider(PrivateDataProvider):
    kind = "mariadb"

    def plan(self, instance: Instance) -> None:
        options = instance.spec.options
        user = options.get("user", "root")
        root_password = options.get("root_password")
        if root_password is None:
            root_password = generate_password()
        password = (
            root_password if user == "root" else options.get("password") or generate_password()
        )
        databases = options.get("databases") or []
        private = scratch_root("auto") / f"st-{instance.run_id[:10]}-{instance.name}"
        instance.scratch["private_dir"] = str(private)
        database = databases[0] if databases else ""
        try:  # (the client, for per-test databases: `mariadb_database`)
            client = str(find_binaries(options.get("bin_dir"))["client"])
        except Exception:
            client = "mariadb"  # the start says what is missing
        instance.fields.update(
            client=client,
            host=instance.host,
            port=str(instance.port),
            user=user,
            password=password,
            root_password=root_password,
            database=database,
            socket=str(private / "mysqld.sock"),
            url=f"mysql://{user}:{password}@{instance.host}:{instance.port}",
        )

    # -- the cached data directory -------------------------------------------------------
    def _cache_key(self, instance: Instance, tools: dict[str, Path]) -> str:
        options = instance.spec.options
        scripts = [
            [p.name, os.access(p, os.X_OK), hashlib.sha256(p.read_bytes()).hexdigest()]
            for p in initdb.script_files(options.get("initdb", []))
        ]
        material = {
            "format": CACHE_FORMAT,
            "server": str(tools["server"]),
            "version": binaries.version_of(tools["server"]),
            "databases": options.get("databases", []),
            "user": options.get("user", "root"),
            "initdb": scripts,
            "settings": self._settings(instance),
            "files": [
                hashlib.sha256(p.read_bytes()).hexdigest() for p in self._option_files(instance)
            ],
            "env": dict(instance.env) if scripts else {},
            "setup": self._setup_sql(instance),  # accounts, databases, given passwords
            "timezones": options.get("timezones", True),
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]

    def _settings(self, instance: Instance) -> dict[str, str]:
        """The service's own ``settings`` (the command line: they win over any file)."""
        rendered = instance.options or instance.spec.options  # references filled in
        return {k: str(v) for k, v in rendered.get("settings", {}).items()}

    def _option_files(self, instance: Instance) -> list[Path]:
        """``config`` and ``conf_d`` (a compose file's mounted my.cnf and conf.d/*.cnf)."""
        options = instance.spec.options
        files = [Path(options["config"])] if options.get("config") else []
        for entry in map(Path, options.get("conf_d", [])):
            files += sorted(entry.glob("*.cnf")) if entry.is_dir() else [entry]
        return files

    def _defaults_file(self, instance: Instance, directory: Path) -> Path:
        """stacktest's defaults for a test server, then the user's option files (read
        after them, so theirs win); written where mariadbd is told to read it."""
        lines = ["[mysqld]", *(f"{k} = {v}" for k, v in DEFAULT_SETTINGS.items())]
        lines += [f"!include {path}" for path in self._option_files(instance)]
        path = directory / "stacktest-my.cnf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _server_argv(
        self,
        instance: Instance,
        tools: dict[str, Path],
        data: Path,
        socket: Path,
        *,
        networking: bool,
    ) -> list[str]:
        options = instance.spec.options
        defaults = self._defaults_file(instance, data.parent)
        argv = [str(tools["server"]), f"--defaults-file={defaults}"]
        argv += [
            f"--datadir={data}",
            f"--socket={socket}",
            f"--pid-file={data}/mariadbd.pid",
            _run_as_flag(),
        ]
        if networking:
            argv += [f"--port={instance.port}", f"--bind-address={instance.host}"]
        else:
            argv += ["--skip-networking"]
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in self._settings(instance).items()]
        rendered = instance.options or options  # references filled in
        return argv + [str(a) for a in rendered.get("args", [])]

    async def _build_cache(self, instance: Instance, tools: dict[str, Path], target: Path) -> None:
        options = instance.spec.options
        work = Path(tempfile.mkdtemp(prefix="st-mariadb-build-", dir=scratch_root("auto")))
        try:
            data = work / "data"
            await _run(
                [
                    str(tools["install_db"]),
                    "--no-defaults",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    _run_as_flag(),
                ],
                instance.name,
                "initialise a data directory (mariadb-install-db)",
            )
            socket = work / "mysqld.sock"
            log = open(work / "seed.log", "wb")  # noqa: SIM115 - closed below
            proc = await asyncio.create_subprocess_exec(
                *self._server_argv(instance, tools, data, socket, networking=False),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            try:
                await self._wait_for_socket(instance, tools, socket, proc, work)
                client = [str(tools["client"]), "--no-defaults", f"--socket={socket}", "-uroot"]
                if options.get("timezones", True):  # as the image: before any password
                    await self._load_timezones(instance, tools, client)
                await _run(
                    client,
                    instance.name,
                    "create the databases and the user",
                    stdin=self._setup_sql(instance).encode(),
                )
                if options.get("initdb"):
                    target_db = instance.fields["database"]
                    sql = client + ([f"--database={target_db}"] if target_db else [])
                    env = {**self.image_env(instance), "MYSQL_PWD": self._admin_password(instance)}
                    server = initdb.Target(
                        service=instance.name,
                        sql=sql,
                        env=env,
                        bin_dirs=[tools["client"].parent],
                        process_sql=PROCESS_SQL,
                        user=None,
                        hint=lambda text, file: f"fix {file}; the client names the line",
                    )
                    env_for_scripts = {**instance.env, "MYSQL_UNIX_PORT": str(socket)}
                    # clients read the system's my.cnf (its socket is the container's path);
                    # ~/.my.cnf comes after it and wins (HOME is `work` for the scripts)
                    (work / ".my.cnf").write_text(f"[client]\nsocket={socket}\n")
                    await initdb.run_scripts(
                        server, options["initdb"], env_for_scripts, work, instance.log_path
                    )
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(proc.wait(), 60)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()
                log.close()
            (data / "mariadbd.pid").unlink(missing_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            initdb.keep_log(work, target)  # said again when a run starts from this copy
            staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
            await asyncio.to_thread(shutil.copytree, data, staging / "data", symlinks=True)
            with contextlib.suppress(OSError):  # another runner built it first: as good
                os.rename(staging / "data", target)
            shutil.rmtree(staging, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _load_timezones(
        self, instance: Instance, tools: dict[str, Path], client: list[str]
    ) -> None:
        """The system's time zones into the ``mysql`` tables, as the image's entrypoint
        loads them (unless ``MARIADB_INITDB_SKIP_TZINFO``): ``CONVERT_TZ(.., 'UTC',
        'Europe/Paris')`` answers instead of NULL. Once per cached data directory."""
        zoneinfo = next((Path(d) for d in ZONEINFO_DIRS if Path(d).is_dir()), None)
        if "tzinfo" not in tools or zoneinfo is None:
            missing = "mariadb-tzinfo-to-sql" if "tzinfo" not in tools else "the zoneinfo files"
            raise ServiceStartError(
                instance.name,
                f"cannot load the time zone tables the image loads: {missing} not found "
                f"(looked in {', '.join(ZONEINFO_DIRS)} and beside {tools['server']})",
                hint="install tzdata (apt-get install tzdata), or do without them: "
                "timezones = false (the image's MARIADB_INITDB_SKIP_TZINFO=1)",
            )
        # its warnings (files that are not zones: leap-seconds.list...) are not SQL
        sql = await _run([str(tools["tzinfo"]), "--skip-write-binlog", str(zoneinfo)],
                         instance.name, "read the time zones (mariadb-tzinfo-to-sql)",
                         stderr=False)  # fmt: skip
        await _run([*client, "--database=mysql"], instance.name, "load the time zones",
                   stdin=sql.encode())  # fmt: skip

    async def _wait_for_socket(
        self,
        instance: Instance,
        tools: dict[str, Path],
        socket: Path,
        proc: asyncio.subprocess.Process,
        work: Path,
    ) -> None:
        for _ in range(3000):
            if proc.returncode is not None:
                break
            if socket.exists():
                return
            await asyncio.sleep(0.01)
        raise ServiceStartError(
            instance.name,
            "could not start mariadbd to create the databases",
            log_tail=(work / "seed.log").read_text(errors="replace").splitlines()[-15:],
        )

    def _setup_sql(self, instance: Instance) -> str:
        """What the image's entrypoint does once: databases, root@'%', the user, and the
        passwords that were given (a generated one is set by the first probe)."""
        options = instance.spec.options
        user = options.get("user", "root")
        lines = [
            f"CREATE DATABASE IF NOT EXISTS {quote(db)};" for db in options.get("databases", [])
        ]
        # as the image: no anonymous accounts, root at localhost (the socket) and '%' only
        # (mariadb-install-db also makes root@127.0.0.1 with no password)
        lines += [
            "DELETE FROM mysql.global_priv WHERE User = '' OR Host NOT IN ('localhost', '%');",
            "FLUSH PRIVILEGES;",
            "CREATE USER IF NOT EXISTS 'root'@'%';",
            "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;",
        ]
        if user != "root":
            lines.append(f"CREATE USER IF NOT EXISTS {literal(user)}@'%';")
            for db in options.get("databases", [])[:1]:
                lines.append(f"GRANT ALL ON {quote(db)}.* TO {literal(user)}@'%';")
        if options.get("root_password") is not None:
            lines.append(self._password_sql(instance))
        return "\n".join(lines) + "\n"

    def _admin_password(self, instance: Instance) -> str:
        """root@localhost's password now: the given one, or the run's once the first probe
        set it, else none."""
        given = instance.spec.options.get("root_password") is not None
        if given or instance.scratch.get("passwords_set"):
            return instance.fields["root_password"]
        return ""

    # -- the provider interface ----------------------------------------------------------
    async def prepare(self, instance: Instance) -> Launch:
        options = instance.spec.options
        tools = find_binaries(options.get("bin_dir"), options.get("version"))
        instance.scratch["client"] = str(tools["client"])
        instance.scratch["server"] = binaries.label(tools["server"], "MariaDB")
        cached = cache_root() / "mariadb" / self._cache_key(instance, tools)
        if not cached.exists():
            await self._build_cache(instance, tools, cached)
        else:
            initdb.replay_log(cached, instance.log_path)
        private = Path(instance.scratch["private_dir"])
        data = private / "data"
        private.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not data.exists():  # (a restart keeps the data, and the passwords set in it)
            await asyncio.to_thread(shutil.copytree, cached, data, symlinks=True)
            instance.scratch["passwords_set"] = ""
        link = instance.data_dir / "data"
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(data)
        argv = self._server_argv(
            instance, tools, data, Path(instance.fields["socket"]), networking=True
        )
        return Launch(argv=argv, env={**os.environ, **instance.env}, cwd=data)

    async def probe(self, instance: Instance) -> bool:
        """A real query on the private socket; the first time, every account's password."""
        f = instance.fields
        if not Path(f["socket"]).exists():
            return False
        first = not instance.scratch.get("passwords_set")
        sql = self._password_sql(instance) if first else ""
        argv = [
            instance.scratch["client"],
            "--no-defaults",
            f"--socket={f['socket']}",
            "-uroot",
            "-N",
            "-e",
            sql + "SELECT 1",
        ]
        env = {**os.environ, "MYSQL_PWD": self._admin_password(instance)}  # (not in ps)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 5)
        if proc.returncode != 0:
            raise ServiceStartError(instance.name, out.decode(errors="replace").strip())
        instance.scratch["passwords_set"] = "1"
        return out.strip().endswith(b"1")

    def _password_sql(self, instance: Instance) -> str:
        f = instance.fields
        root = literal(f["root_password"])
        sql = (
            f"ALTER USER 'root'@'%' IDENTIFIED BY {root};"
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY {root};"
        )
        if f["user"] != "root":
            sql += f"ALTER USER {literal(f['user'])}@'%' IDENTIFIED BY {literal(f['password'])};"
        return sql

    def client_env(self, instance: Instance) -> dict[str, str]:
        f = instance.fields
        database = f"/{f['database']}" if f["database"] else ""
        return {
            "DATABASE_URL": f"{f['url']}{database}",
            "MYSQL_HOST": f["host"],
            "MYSQL_TCP_PORT": f["port"],
            "MYSQL_PWD": f["password"],
            "MYSQL_USER": f["user"],
        }

    def client_args(self, instance: Instance) -> dict[str, list[str]]:
        # the socket serves `-h localhost` (a container's habit), the port `-h 127.0.0.1`
        args = [f"--socket={instance.fields['socket']}", f"--port={instance.port}"]
        return {name: args for name in ("mariadb", "mysql", "mariadb-admin", "mysqladmin")}

    def client_bin_dirs(self, instance: Instance) -> list[Path]:
        client = instance.scratch.get("client")
        return [Path(client).parent] if client else []

    def image_env(self, instance: Instance) -> dict[str, str]:
        f = instance.fields
        env = {
            "USER": f["user"],
            "PASSWORD": f["password"],
            "DATABASE": f["database"],
            "ROOT_PASSWORD": f["root_password"],
        }
        return {f"{prefix}_{k}": v for prefix in ("MARIADB", "MYSQL") for k, v in env.items()}

    def server_note(self, spec: ServiceSpec) -> str | None:
        try:
            _, found = _tool(["mariadbd", "mysqld"], spec.options.get("bin_dir"))
        except Exception:
            return None  # the start says what is missing
        if not found:
            return f"MariaDB is not installed: {INSTALL_HINT}"
        return binaries.mismatch_note("MariaDB", found, spec.options.get("version"),
                                      "install it, or set bin_dir")  # fmt: skip

    def doctor(self) -> list[BinaryReport]:
        try:
            tools = find_binaries()
        except Exception as exc:
            looked = tuple(getattr(exc, "looked_in", ()))
            return [BinaryReport("mariadb", "mariadbd", None, None, looked, INSTALL_HINT)]
        # (mariadb-install-db has no harmless --version: it would initialise /var/lib/mysql)
        return [
            BinaryReport("mariadb", path.name, path,
                         None if role == "install_db" else binaries.version_of(path), (),
                         INSTALL_HINT)
            for role, path in tools.items()
        ]  # fmt: skip
