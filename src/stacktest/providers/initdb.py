"""An official image's ``/docker-entrypoint-initdb.d``, run the way the image runs it.

Postgres and MariaDB images share the contract: once, on a fresh data directory, against a
server that listens on its socket only, every file in name order (a directory's files
sorted, as the shell's glob sorts them):

- ``*.sql`` by the image's own client (``psql -v ON_ERROR_STOP=1``, ``mariadb``), so its
  meta-commands work and the first error stops the start with the file and line;
- ``*.sql.gz``, ``*.sql.xz``, ``*.sql.zst`` decompressed into that client;
- ``*.sh``: executed when it is executable, else sourced by bash, where the image's
  ``docker_process_sql`` is defined too;
- anything else is ignored, and the log says so, as the image does.

Scripts see the image's environment (what :class:`Target` gives: ``POSTGRES_*`` and
``PGDATA``, or ``MARIADB_*``), the service's own variables, and the server's clients first
on ``PATH``. When the server runs as another user (stacktest runs as root), the files are
copied where that user can read them and run as that user, as the image runs them.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stacktest.errors import ServiceStartError
from stacktest.providers.commands import run_captured
from stacktest.providers.pgdata import chown_tree

SQL_SUFFIXES = (".sql", ".sql.gz", ".sql.xz", ".sql.zst")


@dataclass(frozen=True)
class Target:
    """The temporary server the scripts run against, as the image's scripts see it."""

    service: str
    #: The client that runs SQL read from stdin (``psql ... -f -``, ``mariadb ...``).
    sql: list[str]
    #: The variables the image sets for its scripts (``POSTGRES_USER``, ``PGHOST``...).
    env: dict[str, str]
    #: Directories put first on PATH (the server's clients).
    bin_dirs: list[Path]
    #: The image's ``docker_process_sql``, for sourced scripts that call it.
    process_sql: str
    #: The OS user the server runs as (None: ourselves).
    user: str | None
    #: Where the server looked for what a failed script asked for (a hint's words).
    hint: Callable[[str, Path], str]


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
    server: Target, paths: list[str], env: Mapping[str, str], work: Path, service_log: Path
) -> None:
    """Run every init file against ``server``; raise ServiceStartError at the first failure.
    What they said goes to ``service_log``, as a container's would, and to ``work``'s
    ``initdb.log`` for :func:`keep_log`."""
    try:
        await _run_all(server, paths, env, work, work / "initdb.log")
    finally:
        if (work / "initdb.log").exists():
            append_log(service_log, (work / "initdb.log").read_bytes())


def keep_log(work: Path, cached: Path) -> None:
    """Keep what the init scripts said beside the cached data directory they made."""
    if (work / "initdb.log").exists():
        shutil.copyfile(work / "initdb.log", cached.with_name(cached.name + ".initdb.log"))


def replay_log(cached: Path, service_log: Path) -> None:
    """A run that starts from a cached data directory says what its init scripts said."""
    kept = cached.with_name(cached.name + ".initdb.log")
    if kept.exists():
        header = (b"stacktest: the init scripts ran when this data directory was cached "
                  b"(after `stacktest cache clean --all` they run again):\n")  # fmt: skip
        append_log(service_log, header + kept.read_bytes())


def append_log(log: Path, data: bytes) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(data)


async def _run_all(
    server: Target, paths: list[str], env: Mapping[str, str], work: Path, log: Path
) -> None:
    staged = _stage(paths, work / "initdb", server.user)
    environment = _environment(server, env, work)
    with open(log, "ab") as out:
        for original, copy in staged:
            name = copy.name
            if name.endswith(SQL_SUFFIXES):
                argv = list(server.sql)
                data = _decompress(server.service, original, copy)
                what = f"running {original}"
            elif name.endswith(".sh"):
                data = None
                if os.access(copy, os.X_OK):
                    argv, what = [str(copy)], f"running {original}"
                else:
                    shell = shutil.which("bash") or "/bin/sh"
                    argv = [shell, "-c", f'{server.process_sql}; . "$1"', shell, str(copy)]
                    what = f"sourcing {original}"
            else:
                out.write(f"stacktest: ignoring {original} (as the image does)\n".encode())
                continue
            out.write(f"stacktest: {what}\n".encode())
            out.flush()
            code, said = await run_captured(
                argv, stdin=data, env=environment, user=server.user, cwd=copy.parent
            )
            # name the user's file (psql names what it read: the copy, or stdin)
            text = said.replace(str(copy), str(original))
            text = text.replace("psql:<stdin>:", f"psql:{original}:")
            out.write(text.encode())
            if code:
                raise ServiceStartError(
                    server.service,
                    f"init script {original} failed (exit code {code})",
                    log_tail=text.strip().splitlines()[-15:],
                    hint=server.hint(text, original),
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


def _environment(server: Target, env: Mapping[str, str], work: Path) -> dict[str, str]:
    path = os.pathsep.join([*map(str, server.bin_dirs), os.environ.get("PATH", "/usr/bin:/bin")])
    return {
        **os.environ,
        **env,
        **server.env,
        "PATH": path,
        "HOME": str(work),  # readable by the server's user (clients look for rc files there)
        "LC_ALL": "C",
    }


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
