"""``.env`` and ``env_file`` files, read by Compose's rules.

- ``KEY=VALUE`` lines (``export KEY=VALUE`` too); blank lines and ``#`` comments skipped;
- unquoted values are trimmed, and end at an inline comment (`` #`` after a space);
- ``'single'`` quotes are literal; ``"double"`` quotes take ``\\n \\t \\r \\\\ \\" \\$``
  escapes; both may span lines;
- values (but single-quoted ones) are interpolated: ``${VAR}``, ``${VAR:-default}`` ...
  (:mod:`.interpolate`), from the keys above them in the same file first, then ``lookup``
  (the shell, for a service's ``env_file``);
- a ``KEY`` line without ``=`` takes the variable from ``lookup`` when it has one.

Every problem is a :class:`DotenvError` with the line number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from stacktest.spec.compose.interpolate import InterpolationError, Interpolator
from stacktest.spec.reading import read_text

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$$"}


class DotenvError(ValueError):
    def __init__(self, line: int, problem: str) -> None:
        self.line, self.problem = line, problem
        super().__init__(f"line {line}: {problem}")


def read_dotenv(
    path: Path, lookup: Callable[[str], str | None] = lambda name: None
) -> dict[str, str]:
    return parse_dotenv(read_text(path), lookup)


def parse_dotenv(
    text: str, lookup: Callable[[str], str | None] = lambda name: None
) -> dict[str, str]:
    values: dict[str, str] = {}

    def find(name: str) -> str | None:
        return values[name] if name in values else lookup(name)

    interpolator = Interpolator(find)
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].strip()
        match = _KEY.match(line)
        if match is None:
            raise DotenvError(number, f"{line!r} does not start with a variable name")
        key, rest = match.group(), line[match.end() :].lstrip()
        if not rest or rest.startswith("#"):
            found = lookup(key)
            if found is not None:
                values[key] = found
            continue
        if rest[0] != "=":
            raise DotenvError(number, f"expected '=' after {key}, got {rest[0]!r}")
        raw = rest[1:].lstrip()
        try:
            if raw[:1] in ("'", '"'):
                quote = raw[0]
                body, i = _quoted(raw[1:], quote, lines, i, number)
                if quote == "'":
                    values[key] = body
                    continue
                values[key] = interpolator.expand(_unescape(body))
            else:
                comment = re.search(r"\s#", raw)
                value = (raw[: comment.start()] if comment else raw).strip()
                values[key] = interpolator.expand(value)
        except InterpolationError as exc:
            raise DotenvError(number, f"{key}: {exc}") from None
    return values


def _quoted(first: str, quote: str, lines: list[str], i: int, number: int) -> tuple[str, int]:
    """The body of a quoted value starting with ``first`` (after the quote), continuing
    on the following lines until the closing quote; returns it and the next line index."""
    text = first
    while True:
        end = _closing(text, quote)
        if end >= 0:
            trailing = text[end + 1 :].strip()
            if trailing and not trailing.startswith("#"):
                raise DotenvError(number, f"unexpected {trailing!r} after the closing {quote}")
            return text[:end], i
        if i >= len(lines):
            raise DotenvError(number, f"the {quote} quote is never closed")
        text += "\n" + lines[i]
        i += 1


def _closing(text: str, quote: str) -> int:
    j = 0
    while j < len(text):
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j
        j += 1
    return -1


def _unescape(body: str) -> str:
    """Double-quote escapes; a literal ``$`` becomes ``$$`` for the interpolation after."""
    out, j = [], 0
    while j < len(body):
        c = body[j]
        if c == "\\" and j + 1 < len(body) and body[j + 1] in _ESCAPES:
            out.append(_ESCAPES[body[j + 1]])
            j += 2
            continue
        out.append(c)
        j += 1
    return "".join(out)
