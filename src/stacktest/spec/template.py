"""References in ``command``, ``env`` and ``cwd``: ``{port}``, ``{db.url}``, ``${HOME:-/tmp}``.

Parsing is separate from rendering so a stack file's references can be checked
when it is loaded (unknown service or field is a ConfigError) and filled in later,
once ports and passwords exist.

- ``{field}`` is a field of the service itself (``port``, ``host``, ``url``, ``run_dir``...)
- ``{service.field}`` is a field of another service (``{db.url}``, ``{bus.port}``)
- ``${VAR}`` / ``${VAR:-default}`` reads the environment of the stacktest process
- ``{{`` and ``}}`` are literal braces; ``$${VAR}`` is a literal ``${VAR}`` (for a shell)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<lbrace>\{\{) | (?P<rbrace>\}\}) | (?P<dollar>\$\$\{[^}]*\})
    | \$\{(?P<env>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}
    | \{(?P<ref>[^{}]*)\}
    | (?P<stray>[{}])
    """,
    re.VERBOSE,
)
_REF = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")


@dataclass(frozen=True)
class Ref:
    """A ``{...}`` reference: ``service`` is None for the service's own fields."""

    service: str | None
    field: str

    def __str__(self) -> str:
        return f"{{{self.service}.{self.field}}}" if self.service else f"{{{self.field}}}"


class TemplateSyntaxError(ValueError):
    pass


def references(text: str) -> list[Ref]:
    """Every ``{...}`` reference in ``text``; raises TemplateSyntaxError on bad syntax."""
    refs: list[Ref] = []
    for match in _TOKEN.finditer(text):
        if match.group("stray"):
            raise TemplateSyntaxError(
                f"unmatched {match.group('stray')!r} in {text!r}"
                " (write {{ or }} for a literal brace)"
            )
        raw = match.group("ref")
        if raw is None:
            continue
        raw = raw.strip()
        if not _REF.match(raw):
            raise TemplateSyntaxError(
                f"bad reference {{{raw}}} in {text!r}: expected {{field}} or {{service.field}}"
            )
        service, _, fieldname = raw.rpartition(".")
        refs.append(Ref(service or None, fieldname))
    return refs


def render(
    text: str,
    resolve: Callable[[Ref], str],
    environ: Mapping[str, str] | None = None,
) -> str:
    """Fill in ``text``; ``resolve`` maps each reference to its value."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        if match.group("lbrace"):
            return "{"
        if match.group("rbrace"):
            return "}"
        if match.group("dollar"):
            return match.group("dollar")[1:]
        name = match.group("env")
        if name is not None:
            default = match.group("default")
            value = env.get(name)
            if value is None or (value == "" and default is not None):
                return default if default is not None else ""
            return value
        raw = match.group("ref")
        if raw is None:
            raise TemplateSyntaxError(f"unmatched brace in {text!r}")
        service, _, fieldname = raw.strip().rpartition(".")
        return resolve(Ref(service or None, fieldname))

    return _TOKEN.sub(substitute, text)
