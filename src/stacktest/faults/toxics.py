"""Toxics: what a fault proxy does to the bytes on a link, with Toxiproxy's names and units.

    Toxic.parse({"latency": "200ms", "jitter": "20ms"})          # from Python or the CLI
    Toxic.from_json({"type": "latency", "attributes": {"latency": 200}})   # Toxiproxy JSON

=============  ==========================================  ==============================
type           attributes (Toxiproxy units)                effect
=============  ==========================================  ==============================
latency        latency (ms), jitter (ms)                   delay every chunk
bandwidth      rate (KB/s)                                 cap the throughput
slow_close     delay (ms)                                  delay the close (FIN)
timeout        timeout (ms)                                drop all data; close after
                                                           ``timeout`` (0: never)
reset_peer     timeout (ms)                                reset the connection (RST)
                                                           after ``timeout``
slicer         average_size, size_variation (bytes),       cut data into small pieces
               delay (µs)
limit_data     bytes                                       close after that many bytes
http_error     status, first, rate, delay (ms), body      stacktest's own: answer HTTP
                                                           requests with ``status`` (all,
                                                           the ``first`` N, or a ``rate``
                                                           fraction); status 0: only delay
=============  ==========================================  ==============================

Every toxic has a ``stream`` (``downstream``: server to client, the default, as in
Toxiproxy; ``upstream``: client to server) and a ``toxicity``: the probability that
it applies to a given connection, rolled once per connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stacktest.durations import Unit, in_unit, parse_duration
from stacktest.errors import FaultError

#: type -> {attribute: default}; the first attribute is the one ``type=value`` sets.
TYPES: dict[str, dict[str, int | float | str]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "http_error": {"status": 503, "first": 0, "rate": 0.0, "delay": 0, "body": ""},
}
#: How each attribute is written by people: a duration in ms or µs, a size, a rate.
_UNITS = {
    "latency": "ms",
    "jitter": "ms",
    "delay": "ms",
    "timeout": "ms",
    "rate": "KB/s",
    "average_size": "bytes",
    "size_variation": "bytes",
    "bytes": "bytes",
}
STREAMS = ("downstream", "upstream")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"b": 1, "kb": 1024, "kib": 1024, "mb": 1 << 20, "mib": 1 << 20, "gb": 1 << 30}
_SIZE_FACTORS["gib"] = 1 << 30


def _duration(value: Any, unit: Unit, what: str) -> int:
    """A toxic's duration in ``unit`` (ms, or µs for the slicer's delay), as Toxiproxy
    counts it; a bare number is in that unit too."""
    try:
        seconds = parse_duration(value, bare=unit)
    except ValueError as exc:
        raise FaultError(
            f"{what}: {value!r} is not a duration ({exc})",
            hint="write it like 200ms, 1.5s or 250us",
        ) from None
    if isinstance(value, int | float):
        return int(value)  # already in the unit; whole units, as Toxiproxy's JSON has them
    return in_unit(seconds, unit)


def _size(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise FaultError(f"{what}: {value!r} is not a size", hint="write it like 512, 64KB or 1MB")
    factor = _SIZE_FACTORS[(match.group(2) or "b").lower()]
    return int(float(match.group(1)) * factor)


def _rate(value: Any, what: str) -> int:
    """KB/s, as Toxiproxy's bandwidth ``rate``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if text.lower().endswith("/s"):
        return max(1, _size(text[:-2], what) // 1024)
    try:
        return int(float(text))
    except ValueError:
        raise FaultError(
            f"{what}: {value!r} is not a rate", hint="write it in KB/s: 100, or 100KB/s, 1MB/s"
        ) from None


@dataclass
class Toxic:
    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, Any] = field(default_factory=dict)
    #: Requests seen by an ``http_error`` toxic (for ``first``), across connections.
    seen: int = 0

    @classmethod
    def make(
        cls,
        type: str,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: dict[str, Any] | None = None,
    ) -> Toxic:
        if type not in TYPES:
            raise FaultError(
                f"unknown toxic type {type!r}", hint=f"types: {', '.join(TYPES)}, or down"
            )
        if stream not in STREAMS:
            raise FaultError(f"stream must be upstream or downstream, not {stream!r}")
        try:
            toxicity = float(toxicity)
        except (TypeError, ValueError):
            raise FaultError(f"toxicity must be a number from 0 to 1, not {toxicity!r}") from None
        if not 0.0 <= toxicity <= 1.0:
            raise FaultError(f"toxicity must be from 0 to 1, not {toxicity}")
        defaults = TYPES[type]
        attrs: dict[str, Any] = dict(defaults)
        for key, value in (attributes or {}).items():
            if key not in defaults:
                raise FaultError(
                    f"toxic {type!r} has no attribute {key!r}",
                    hint=f"{type} takes: {', '.join(defaults)}",
                )
            attrs[key] = _convert(type, key, value)
        if type == "http_error" and stream != "upstream":
            stream = "upstream"  # it answers requests, which flow upstream
        return cls(name or f"{type}_{stream}", type, stream, toxicity, attrs)

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Toxic:
        """From keyword arguments or ``key=value`` words: ``{"latency": "200ms",
        "jitter": "20ms", "stream": "upstream"}``; the first toxic-type key sets the type
        and its main attribute (``bandwidth="1MB/s"`` is ``type=bandwidth, rate=1024``)."""
        options = dict(spec)
        type_ = options.pop("type", None)
        name = options.pop("name", None)
        stream = options.pop("stream", "downstream")
        toxicity = options.pop("toxicity", 1.0)
        if type_ is None:
            found = [key for key in options if key in TYPES]
            if not found:
                raise FaultError(
                    f"which toxic? none of {', '.join(options) or 'nothing'} is a toxic type",
                    hint=f"e.g. latency=200ms; types: {', '.join(TYPES)}",
                )
            type_ = found[0]
            main = next(iter(TYPES[type_]))
            options[main] = options.pop(type_)
        return cls.make(
            str(type_), name=name, stream=str(stream), toxicity=toxicity, attributes=options
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Toxic:
        """From Toxiproxy's JSON (``POST /proxies/{name}/toxics``)."""
        if not isinstance(data, dict) or "type" not in data:
            raise FaultError("a toxic needs at least a type", hint='{"type": "latency", ...}')
        return cls.make(
            str(data["type"]),
            name=data.get("name") or None,
            stream=str(data.get("stream") or "downstream"),
            toxicity=data.get("toxicity", 1.0),
            attributes=data.get("attributes") or {},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    def describe(self) -> str:
        shown = []
        for key, value in self.attributes.items():
            if value in (0, "", 0.0) and key != next(iter(TYPES[self.type])):
                continue
            unit = _UNITS.get(key, "")
            if self.type == "slicer" and key == "delay":
                unit = "us"
            shown.append(f"{key}={value}{unit if unit not in ('bytes', 'KB/s') else ''}")
        extra = f" toxicity={self.toxicity:g}" if self.toxicity < 1 else ""
        label = " ".join(shown)
        if next(iter(TYPES[self.type])) != self.type:
            label = f"{self.type} {label}"
        return f"{label} ({self.stream}{extra})"


def _convert(type_: str, key: str, value: Any) -> Any:
    what = f"{type_}.{key}"
    if key in ("latency", "jitter", "timeout") or (key == "delay" and type_ != "slicer"):
        return _duration(value, "ms", what)
    if key == "delay":  # the slicer's delay is in microseconds
        return _duration(value, "us", what)
    if key == "rate" and type_ == "bandwidth":
        return _rate(value, what)
    if key in ("average_size", "size_variation", "bytes"):
        return _size(value, what)
    if key in ("status", "first"):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise FaultError(f"{what}: expected a whole number, got {value!r}") from None
        if key == "status" and number != 0 and not 100 <= number <= 599:
            raise FaultError(
                f"{what}: {number} is not an HTTP status", hint="0 means: delay only, no error"
            )
        return number
    if key == "rate":  # http_error: the fraction of requests that fail
        fraction = float(value)
        if not 0.0 <= fraction <= 1.0:
            raise FaultError(f"{what}: a fraction from 0 to 1, not {value!r}")
        return fraction
    return str(value)
