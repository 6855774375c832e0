"""Reading a stack: which files (spec/files.py), TOML or compose, into a frozen
:class:`StackSpec` (validated by spec/parse.py). Every problem is one :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from stacktest.errors import ConfigError
from stacktest.spec.compose import is_compose_file, load_compose
from stacktest.spec.files import DEFAULT_FILE, stack_files
from stacktest.spec.model import StackSpec
from stacktest.spec.parse import parse_stack
from stacktest.spec.reading import parse_toml, read_text

__all__ = ["DEFAULT_FILE", "load_stack", "parse_stack"]


def load_stack(
    path: str | Path | Sequence[str | Path] = DEFAULT_FILE,
    *,
    profiles: Sequence[str] | None = None,
    env_files: Sequence[Path] = (),
    strict: bool = False,
) -> StackSpec:
    """Read and validate a stack file, or compose files.

    ``path``: a ``stack.toml``, a compose file, a directory holding one, or several
    compose files merged in order (a list, or one string of ``:``-separated paths, as
    ``COMPOSE_FILE``). A default ``stack.toml`` that does not exist means ``COMPOSE_FILE``
    when set, else the compose file beside it (with its override file, as
    ``docker compose`` without ``-f``). ``profiles`` (default: ``COMPOSE_PROFILES``),
    ``env_files`` (default: the project's ``.env``) and ``strict`` are for compose files.
    """
    files, explicit = stack_files(path)
    try:
        return _load(files, explicit, profiles, env_files, strict)
    except OSError as exc:  # a path the file names that the system refuses (too long...)
        raise ConfigError(f"cannot read {exc.filename or 'a file'}: {exc.strerror or exc}",
                          file=files[0]) from None  # fmt: skip


def _load(
    files: list[Path], explicit: bool, profiles: Sequence[str] | None,
    env_files: Sequence[Path], strict: bool,
) -> StackSpec:  # fmt: skip
    source = files[0]
    if len(files) > 1 or is_compose_file(source):
        for file in files:
            if not is_compose_file(file):
                raise ConfigError(
                    "only compose files can be merged (-f a.yml -f b.yml)",
                    file=file,
                    hint="pass one stack.toml, or compose files only",
                )
        compose = load_compose(
            files, explicit=explicit, profiles=profiles, env_files=env_files, strict=strict
        )
        spec = parse_stack(compose.table, source=source)
        project = compose.project
        return replace(
            spec,
            files=tuple(project.files),
            inputs=tuple(project.inputs),
            profiles=project.profiles,
            warnings=(*compose.notes, *spec.warnings),
        )
    text = read_text(source)
    data = parse_toml(text, source)
    return replace(parse_stack(data, source=source, text=text), files=(source,))
