"""Which files a stack comes from: a ``stack.toml``, a compose file, or several merged.

A missing default ``stack.toml`` means ``COMPOSE_FILE`` when it is set, else the compose
file beside it (which brings its override file, as ``docker compose`` without ``-f``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from stacktest.errors import ConfigError
from stacktest.spec.compose import COMPOSE_NAMES

DEFAULT_FILE = "stack.toml"


def default_compose_fallback(source: Path) -> Path:
    """A missing ``stack.toml`` in a directory with a compose file means that file."""
    if source.exists() or source.name != DEFAULT_FILE:
        return source
    found = [source.parent / n for n in COMPOSE_NAMES if (source.parent / n).is_file()]
    return found[0] if found else source


def stack_files(path: str | Path | Sequence[str | Path]) -> tuple[list[Path], bool]:
    """(the files to read, whether the user named them)."""
    if isinstance(path, str | Path):
        parts = [p for p in str(path).split(os.pathsep) if p]
    else:
        parts = [str(p) for p in path]
    if not parts:
        parts = [DEFAULT_FILE]
    if len(parts) > 1:
        files = [Path(p).absolute() for p in parts]
        for file in files:
            if not file.is_file():
                raise ConfigError("no such file", file=file, hint="check the -f paths")
        return files, True
    source = Path(parts[0]).absolute()
    if source.name == DEFAULT_FILE and not source.exists():
        listed = os.environ.get("COMPOSE_FILE")
        if listed:
            files = [source.parent / p for p in listed.split(os.pathsep) if p]
            return stack_files([str(f) for f in files]) if len(files) > 1 else (files, True)
        fallback = default_compose_fallback(source)
        if fallback != source:
            return [fallback], False
    if not source.exists():
        raise ConfigError(
            "no such file",
            file=source,
            hint="create a stack.toml (see docs/stack-file.md) or pass --file PATH",
        )
    if source.is_dir():
        found = [source / n for n in (DEFAULT_FILE, *COMPOSE_NAMES) if (source / n).exists()]
        if not found:
            raise ConfigError(
                "directory has no stack.toml (nor a compose file)",
                file=source,
                hint="create a stack.toml (see docs/stack-file.md) or pass --file PATH",
            )
        return [found[0]], False
    return [source], True
