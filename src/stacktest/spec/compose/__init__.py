"""docker-compose files as stack files: what ``docker compose up`` means, run without Docker.

- :mod:`.model`: which files, read, interpolated (:mod:`.interpolate`, ``.env`` by
  :mod:`.dotenv`), ``include`` and ``extends`` resolved, merged, profiles applied;
- :mod:`.translate`: the merged document -> the table a ``stack.toml`` is, validated by
  the same code (``parse_stack``), and a note for everything not honoured as written.

See docs/compose.md for what is honoured, mapped and ignored, key by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacktest.errors import ConfigError
from stacktest.spec.compose.model import (
    COMPOSE_NAMES,
    OVERRIDE_NAMES,
    Project,
    compose_files,
    load_project,
)
from stacktest.spec.compose.translate import Translator

__all__ = ["COMPOSE_NAMES", "OVERRIDE_NAMES", "Compose", "is_compose_file", "load_compose"]


def is_compose_file(path: Path) -> bool:
    return path.name in COMPOSE_NAMES or path.suffix in (".yaml", ".yml")


@dataclass
class Compose:
    """A compose project translated: the stack table, and what it did not honour."""

    table: dict[str, Any]
    project: Project
    notes: list[str]


def load_compose(
    files: Sequence[Path],
    *,
    explicit: bool = True,
    profiles: Sequence[str] | None = None,
    env_files: Sequence[Path] = (),
    strict: bool = False,
) -> Compose:
    """Read compose ``files`` (one not named by the user brings its override file) and
    translate them. ``strict``: an unset variable, or anything not honoured, is an error."""
    paths = [p for f in files for p in compose_files(f, explicit=explicit)]
    project = load_project(paths, profiles=profiles, env_files=env_files, strict=strict)
    translator = Translator(project)
    table = translator.stack(project.document)
    notes = [*project.warnings, *translator.notes]
    if strict and notes:
        raise ConfigError(
            "--strict: not everything in the file is honoured as written:\n    "
            + "\n    ".join(notes),
            file=paths[0],
            hint="change the file, or run without --strict to take these as warnings",
        )
    return Compose(table, project, notes)
