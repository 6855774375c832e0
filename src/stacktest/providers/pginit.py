"""The official image's ``/docker-entrypoint-initdb.d``, run the way the image runs it.

Once, on a fresh data directory, against a server that listens on its unix socket only:
every file in name order (a directory's files sorted, as the shell's glob sorts them);

- ``*.sql`` by ``psql -v ON_ERROR_STOP=1`` (so ``\\c``, ``\\set``, ``COPY ... FROM STDIN``
  work, and the first error stops the start with the file and line psql names);
- ``*.sql.gz``, ``*.sql.xz``, ``*.sql.zst`` decompressed into psql;
- ``*.sh``: executed when it is executable, else sourced by bash, where the image's
  ``docker_process_sql`` is defined too;
- anything else is ignored, and the log says so, as the image does.

Scripts see the image's environment: the service's own variables, ``POSTGRES_USER``,
``POSTGRES_PASSWORD``, ``POSTGRES_DB``, ``PGDATA`` (the data directory, writable: a script
may edit ``pg_hba.conf``), ``PGHOST``/``PGPORT``/``PGUSER``/``PGPASSWORD`` pointing at the
temporary server, and the server's clients first on ``PATH``. When the server runs as
another user (stacktest runs as root), the files are copied where that user can read them
and run as that user, as the image runs them as ``postgres``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import lzma
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stacktest.errors import ServiceStartError
from stacktest.providers.pgdata import chown_tree

SQL_SUFFIXES = (".sql", ".sql.gz", ".sql.xz", ".sql.zst")
#: The image's helper, for sourced scripts that call it.
PROCESS_SQL = (
    'docker_process_sql() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" '
    '--no-password --no-psqlrc --dbname "${POSTGRES_DB}" "$@"; }'
)


@dataclass(frozen=True)
class TempServer:
    """Where the scripts reach the temporary server, and as whom."""

    service: str
    bin_dir: Path
    socket_dir: Path
    port: int
    role: str
    password: str
    database: str
    data: Path
    #: The OS user the server runs as (None: ourselves).
    user: str | None


def script_files(paths: list[str]) -> list[Path]:
    """The files ``initdb`` entries stand for, in the order they run."""
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files.extend(sorted((p for p in entry.iterdir() if p.is_file()), key=lambda p: p.name))
        else:
            files.append(entry)
    return files


async def run_scripts(
    server: TempServer, paths: list[str], env: Mapping[str, str], work: Path, log: Path
) -> None:
    """Run every init file against ``server``; raise ServiceStartError at the first failure.
    Their output is appended to ``log`` (the service's log), as a container's would be."""
    staged = _stage(paths, work / "initdb", server.user)
    environment = _environment(server, env, work)
    with open(log, "ab") as out:
        for original, copy in staged:
            name = copy.name
            if name.endswith(SQL_SUFFIXES):
                argv = [*_psql(server), "-f", "-"]
                data = _decompress(server.service, original, copy)
                what = f"running {original}"
            elif name.endswith(".sh"):
                data = None
                if os.access(copy, os.X_OK):
                    argv, what = [str(copy)], f"running {original}"
                else:
                    shell = shutil.which("bash") or "/bin/sh"
                    argv = [shell, "-c", f'{PROCESS_SQL}; . "$1"', shell, str(copy)]
                    what = f"sourcing {original}"
            else:
                out.write(f"stacktest: ignoring {original} (as the image does)\n".encode())
                continue
            out.write(f"stacktest: {what}\n".encode())
            out.flush()
            code, said = await _run(argv, data, environment, server.user, copy.parent)
            # name the user's file (psql names what it read: the copy, or stdin)
            text = said.replace(str(copy), str(original))
            text = text.replace("psql:<stdin>:", f"psql:{original}:")
            out.write(text.encode())
            if code:
                raise ServiceStartError(
                    server.service,
                    f"init script {original} failed (exit code {code})",
                    log_tail=text.strip().splitlines()[-15:],
                    hint=_hint(text, server.bin_dir, original),
                )


def _stage(paths: list[str], root: Path, user: str | None) -> list[tuple[Path, Path]]:
    """Copies the server's user can read: a directory whole (scripts may read their
    neighbours), a file alone. (original, copy) for each file to run, in order."""
    root.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[Path, Path]] = []
    for index, entry in enumerate(map(Path, paths)):
        target = root / str(index)
        if entry.is_dir():
            shutil.copytree(entry, target, symlinks=False)
            pairs += [(f, target / f.name) for f in script_files([str(entry)])]
        else:
            target.mkdir()
            shutil.copy2(entry, target / entry.name)
            pairs.append((entry, target / entry.name))
    if user:
        chown_tree(root, user)
    return pairs


def _environment(server: TempServer, env: Mapping[str, str], work: Path) -> dict[str, str]:
    path = os.pathsep.join([str(server.bin_dir), os.environ.get("PATH", "/usr/bin:/bin")])
    return {
        **os.environ,
        **env,
        "POSTGRES_USER": server.role,
        "POSTGRES_PASSWORD": server.password,
        "POSTGRES_DB": server.database,
        "PGDATA": str(server.data),
        "PGHOST": str(server.socket_dir),
        "PGPORT": str(server.port),
        "PGUSER": server.role,
        "PGPASSWORD": server.password,
        "PGDATABASE": server.database,
        "PATH": path,
        "HOME": str(work),  # readable by the server's user (psql looks for ~/.psqlrc)
        "LC_ALL": "C",
    }


def _psql(server: TempServer) -> list[str]:
    psql = server.bin_dir / "psql"
    if not psql.exists():
        raise ServiceStartError(
            server.service,
            f"init SQL is run by psql, as the image runs it, and {server.bin_dir} has none",
            hint="install the PostgreSQL client (apt install postgresql-client) beside the "
            "server, or set bin_dir to a PostgreSQL that has psql",
        )
    return [str(psql), "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "--no-password",
            "--username", server.role, "--dbname", server.database]  # fmt: skip


def _decompress(service: str, original: Path, copy: Path) -> bytes:
    raw = copy.read_bytes()
    if copy.name.endswith(".gz"):
        return gzip.decompress(raw)
    if copy.name.endswith(".xz"):
        return lzma.decompress(raw)
    if copy.name.endswith(".zst"):
        return _unzstd(service, original, raw)
    return raw


def _unzstd(service: str, original: Path, raw: bytes) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+

        return bytes(zstd.decompress(raw))
    except ImportError:
        pass
    tool = shutil.which("zstd")
    if tool is None:
        raise ServiceStartError(
            service,
            f"{original}: a .zst init file needs the zstd tool (or Python 3.14+), and "
            "neither is here",
            hint="apt install zstd (brew install zstd), or compress it with gzip or xz",
        )
    return subprocess.run([tool, "-dc"], input=raw, capture_output=True, check=True).stdout


async def _run(
    argv: list[str], data: bytes | None, env: Mapping[str, str], user: str | None, cwd: Path
) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        user=user,
        start_new_session=True,
    )
    try:
        out, _ = await proc.communicate(data)
    except BaseException:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


def _hint(text: str, bin_dir: Path, original: Path) -> str:
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
