"""Where Postgres data lives between and during runs, and the copies that make starts fast.

- the cache of initialised data directories (``~/.cache/stacktest/postgres/KEY``), one
  per server version, user, databases and ``init`` files: initdb and the init SQL run
  once, not per start;
- spare copies of them ("spares", beside the data dirs, so a start is a rename), made
  in the background after a start for the next one;
- the scratch root: memory (/dev/shm) when it is a roomy tmpfs, else the temp dir.

``stacktest cache`` shows them and ``stacktest cache clean`` removes them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from stacktest.engine.procs import without_signals


def cache_root() -> Path:
    explicit = os.environ.get("STACKTEST_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stacktest"


def chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


# -- spare data directories ----------------------------------------------------------------
# Copying a cached data directory (~30 MB, ~1000 files) costs 100-300 ms on a slow disk;
# a rename costs nothing. So each start takes a ready copy ("spare") made in the
# background after an earlier start, and leaves a new one behind for the next.
SPARES_PER_KEY = 2
STALE_SECONDS = 600
#: Spares of a cache key nobody started from for this long are removed (they hold RAM
#: when they live in /dev/shm).
UNUSED_KEY_SECONDS = 3600


def spare_root(base: Path) -> Path:
    """Where spare copies wait: on the same filesystem as the data dirs (for rename)."""
    return base / f"stacktest-pgspare-{os.getuid()}"


SHM = Path("/dev/shm")
#: ``tmpfs = "auto"`` uses /dev/shm only with this much room (Docker gives it 64 MB).
SHM_MIN_FREE = 1 << 30


def _usable_tmpfs() -> bool:
    try:
        with open("/proc/mounts") as mounts:
            is_tmpfs = any(
                line.split()[1:3] == [str(SHM), "tmpfs"] for line in mounts if line.strip()
            )
        stat = os.statvfs(SHM)
    except OSError:
        return False
    return is_tmpfs and stat.f_bavail * stat.f_frsize >= SHM_MIN_FREE and os.access(SHM, os.W_OK)


def scratch_root(mode: object) -> Path:
    """Where a server's data directory lives.

    In memory (/dev/shm) when ``tmpfs`` says so, or by default when it is a tmpfs
    with room: creating a database writes ~1000 files, which costs ~100 ms on a
    virtual disk and ~6 ms in memory. Otherwise the temp dir.
    """
    if mode is True or (mode == "auto" and _usable_tmpfs()):
        return SHM
    return Path(tempfile.gettempdir())


@dataclass(frozen=True)
class CacheEntry:
    """One place where stacktest keeps Postgres data between runs."""

    what: str  # "initialised data directories" / "spare copies"
    path: Path
    entries: int
    size: int  # bytes


def cache_entries() -> list[CacheEntry]:
    """The cached initialised data directories, and the spare copies (in /dev/shm and
    the temp dir): what ``stacktest cache`` shows and ``stacktest cache clean`` removes."""
    found = []
    places = [("initialised data directories", cache_root() / "postgres")]
    places += [("spare copies", spare_root(base)) for base in (SHM, Path(tempfile.gettempdir()))]
    for what, path in places:
        if path.is_dir():
            keys = [p for p in path.iterdir() if p.is_dir()]
            found.append(CacheEntry(what, path, len(keys), _tree_size(path)))
    return found


def clean_cache(*, everything: bool) -> list[CacheEntry]:
    """Remove the spare copies (RAM, when they live in /dev/shm), and with ``everything``
    the initialised data directories too (the next start builds one again: ~1 s)."""
    removed = []
    for entry in cache_entries():
        if entry.what == "spare copies" or everything:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry)
    return removed


def _tree_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def copy_data_dir(cached: Path, data: Path, user: str | None) -> None:
    shutil.copytree(cached, data, symlinks=True)
    os.chmod(data, 0o700)
    (data / "postmaster.pid").unlink(missing_ok=True)
    if user:
        chown_tree(data, user)


def claim_spare(base: Path, key: str) -> Path | None:
    """Take a ready spare copy for this cache key, or None."""
    directory = spare_root(base) / key
    if not directory.is_dir():
        return None
    for entry in sorted(directory.glob("ready-*")):
        claimed = directory / f"claimed-{secrets.token_hex(6)}"
        try:
            os.rename(entry, claimed)
        except OSError:
            continue  # another runner took it first
        return claimed
    return None


def _prune_unused_keys(root: Path, keep: str, now: float) -> None:
    for key_dir in root.iterdir():
        if key_dir.name == keep or not key_dir.is_dir():
            continue
        with contextlib.suppress(OSError):
            if now - key_dir.stat().st_mtime > UNUSED_KEY_SECONDS:
                shutil.rmtree(key_dir, ignore_errors=True)


def make_spare(base: Path, cached: Path, user: str | None) -> None:
    directory = spare_root(base) / cached.name
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = time.time()
    os.utime(directory)  # "used now": claiming renames inside it, which also bumps the mtime
    _prune_unused_keys(directory.parent, cached.name, now)
    for entry in directory.iterdir():
        if not entry.name.startswith("ready-"):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)
    if len(list(directory.glob("ready-*"))) >= SPARES_PER_KEY:
        return
    work = directory / f"tmp-{secrets.token_hex(6)}"
    work.mkdir(mode=0o700)
    try:
        copy_data_dir(cached, work / "data", user)
        os.rename(work, directory / f"ready-{secrets.token_hex(6)}")
    except OSError:
        shutil.rmtree(work, ignore_errors=True)


def refill_spares_in_background(base: Path, cached: Path, user: str | None) -> None:
    threading.Thread(
        target=without_signals(make_spare),
        args=(base, cached, user),
        name="stacktest-pg-spare",
        daemon=True,
    ).start()
