"""Durations as people write them: ``"200ms"``, ``"1.5s"``, ``"2m"``, ``"250us"``.

One parser for the stack file, load phases, the nemesis and toxics. What a *bare*
number means differs by place, as in the tools people know (seconds in a stack file
like Compose's healthcheck; milliseconds in a toxic, as Toxiproxy), so every caller
says it: ``parse_duration(value, bare="s")``.
"""

from __future__ import annotations

import math
import re
from typing import Literal

Unit = Literal["us", "ms", "s"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?\s*$")
_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
EXAMPLE = "such as '5s', '200ms' or '250us'"


def parse_duration(value: object, *, bare: Unit) -> float:
    """``value`` in seconds; a number or a string without a unit is in ``bare``.

    Raises ValueError for anything else: a boolean, a negative or non-finite number,
    a string that is not a number with one of us, µs, ms, s, m, h.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration {EXAMPLE}, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"expected a duration {EXAMPLE}, got {value}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return float(value) * _SECONDS[bare]
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _SECONDS[match.group(2) or bare]
    raise ValueError(f"expected a duration {EXAMPLE}, got {value!r}")


def in_unit(seconds: float, unit: Unit) -> int:
    """Whole ``unit``s in ``seconds``, rounded (for APIs that count ms or µs)."""
    return round(seconds / _SECONDS[unit])
