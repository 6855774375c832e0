"""Compose's variable interpolation, as the Compose specification defines it.

``$VAR`` and ``${VAR}``; ``$$`` for a literal ``$``; inside braces:

=============  ============================================================
``${V:-d}``    ``d`` when V is unset or empty, else V
``${V-d}``     ``d`` when V is unset, else V
``${V:?e}``    error ``e`` when V is unset or empty
``${V?e}``     error ``e`` when V is unset
``${V:+r}``    ``r`` when V is set and not empty, else empty
``${V+r}``     ``r`` when V is set, else empty
=============  ============================================================

Defaults, replacements and error texts are templates themselves, so they nest
(``${A:-${B:-c}}``, ``${A-$B}``, ``${A:-${B} ${C}}``), and they are only expanded when
used. A ``$`` followed by anything else, an unclosed ``${``, ``${}`` and a name that is
not ``[A-Za-z_][A-Za-z0-9_]*`` (``${ x}``, ``${x }``, ``${x!}``) are invalid, as in Compose.
An unset variable without a default is an empty string and a warning naming it (an
error with ``strict``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """An invalid template or a required variable (``:?``, ``?``) that is missing."""


@dataclass
class Interpolator:
    """Expands templates against ``lookup`` (the shell first, then ``.env``)."""

    lookup: Callable[[str], str | None]
    strict: bool = False
    #: Variables used without a value and without a default, in order of first use.
    unset: list[str] = field(default_factory=list)

    @classmethod
    def over(cls, *layers: Mapping[str, str], strict: bool = False) -> Interpolator:
        """Looking variables up in ``layers``, the first that has it wins."""

        def lookup(name: str) -> str | None:
            for layer in layers:
                if name in layer:
                    return layer[name]
            return None

        return cls(lookup, strict=strict)

    def expand(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            dollar = text.find("$", i)
            if dollar < 0:
                out.append(text[i:])
                break
            out.append(text[i:dollar])
            nxt = text[dollar + 1 : dollar + 2]
            if nxt == "$":
                out.append("$")
                i = dollar + 2
            elif nxt == "{":
                end = _closing_brace(text, dollar + 2)
                if end < 0:
                    raise InterpolationError(f"invalid template {text!r}: '${{' is not closed")
                out.append(self._braced(text, text[dollar + 2 : end]))
                i = end + 1
            else:
                match = _NAME.match(text, dollar + 1)
                if match is None:
                    raise InterpolationError(
                        f"invalid template {text!r}: '$' must be followed by a name, '{{' or "
                        "another '$' (write $$ for a literal $)"
                    )
                out.append(self._value(match.group(), None, ""))
                i = match.end()
        return "".join(out)

    def _braced(self, text: str, inner: str) -> str:
        match = _NAME.match(inner)
        if match is None:
            raise InterpolationError(f"invalid template {text!r}: '${{{inner}}}' names no variable")
        name, rest = match.group(), inner[match.end() :]
        if not rest:
            return self._value(name, None, "")
        op = next((o for o in _OPERATORS if rest.startswith(o)), None)
        if op is None:
            raise InterpolationError(
                f"invalid template {text!r}: '${{{inner}}}': after the name comes '}}' or one "
                "of :- - :? ? :+ +"
            )
        return self._value(name, op, rest[len(op) :])

    def _value(self, name: str, op: str | None, arg: str) -> str:
        value = self.lookup(name)
        empty = value is None or value == ""
        if op in (":-", "-"):
            use_default = empty if op == ":-" else value is None
            return self.expand(arg) if use_default else str(value)
        if op in (":+", "+"):
            present = not empty if op == ":+" else value is not None
            return self.expand(arg) if present else ""
        if op in (":?", "?") and (empty if op == ":?" else value is None):
            message = f"required variable {name} is missing a value"
            raise InterpolationError(f"{message}: {self.expand(arg)}" if arg else message)
        if value is None:
            if self.strict:
                raise InterpolationError(
                    f"variable {name} is not set (strict: an unset variable is an error)"
                )
            if name not in self.unset:
                self.unset.append(name)
            return ""
        return value


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` closing a ``${`` whose body starts at ``start``, or -1.

    Braces nest (``${A:-${B}}``, ``${A:-{"k": 1}}``); ``$$`` is a literal ``$``.
    """
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == "$" and text[i + 1 : i + 2] == "$":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
