"""Phases and arrival schedules (Artillery's vocabulary: duration, arrival_rate, ramp_to, pause).

An open model: iterations start on a schedule computed in advance, whatever the
system under test does. Arrivals are uniform (evenly spaced) or Poisson; a ramp
changes the rate linearly over the phase, and the spacing follows the rate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from stacktest.durations import parse_duration


@dataclass(frozen=True)
class Phase:
    name: str
    duration: float
    arrival_rate: float = 0.0
    ramp_to: float | None = None
    pause: bool = False
    #: Closed model: this many virtual users loop over the scenario (instead of arrivals).
    vus: int = 0
    think_time: float = 0.0

    def __init__(
        self,
        name: str,
        duration: str | float,
        arrival_rate: float = 0.0,
        *,
        ramp_to: float | None = None,
        pause: bool = False,
        vus: int = 0,
        think_time: str | float = 0.0,
    ) -> None:
        seconds = parse_duration(duration, bare="s")
        if seconds <= 0:
            raise ValueError(f"phase {name!r}: duration must be positive")
        if arrival_rate < 0 or (ramp_to is not None and ramp_to < 0):
            raise ValueError(f"phase {name!r}: rates cannot be negative")
        if vus < 0:
            raise ValueError(f"phase {name!r}: vus cannot be negative")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "duration", seconds)
        object.__setattr__(self, "arrival_rate", float(arrival_rate))
        object.__setattr__(self, "ramp_to", None if ramp_to is None else float(ramp_to))
        object.__setattr__(self, "pause", pause)
        object.__setattr__(self, "vus", vus)
        object.__setattr__(self, "think_time", parse_duration(think_time, bare="s"))

    @property
    def closed(self) -> bool:
        return self.vus > 0

    def rate_at(self, t: float) -> float:
        if self.pause or self.closed:
            return 0.0
        end = self.arrival_rate if self.ramp_to is None else self.ramp_to
        return self.arrival_rate + (end - self.arrival_rate) * min(max(t / self.duration, 0), 1)

    def expected_arrivals(self) -> float:
        if self.pause or self.closed:
            return 0.0
        end = self.arrival_rate if self.ramp_to is None else self.ramp_to
        return (self.arrival_rate + end) / 2 * self.duration

    def _time_of(self, n: float) -> float:
        """The time at which the cumulative expected arrivals reach ``n``."""
        r0 = self.arrival_rate
        r1 = r0 if self.ramp_to is None else self.ramp_to
        slope = (r1 - r0) / self.duration
        if abs(slope) < 1e-12:
            return n / r0
        # r0 t + slope t^2 / 2 = n
        disc = r0 * r0 + 2 * slope * n
        return (-r0 + math.sqrt(max(disc, 0.0))) / slope

    def arrivals(
        self, *, poisson: bool = False, rng: random.Random | None = None
    ) -> Iterator[float]:
        """Offsets (seconds from the phase start) at which iterations should start."""
        if self.pause or self.closed:
            return
        total = self.expected_arrivals()
        if total <= 0:
            return
        rng = rng or random.Random()
        # arrivals are evenly spaced (or exponentially, for Poisson) in "expected count",
        # then mapped to time through the rate curve: that is what makes a ramp a ramp
        n = 0.5 if not poisson else rng.expovariate(1.0)
        while n < total:
            yield self._time_of(n)
            n += 1.0 if not poisson else rng.expovariate(1.0)


def parse_phases(raw: list[dict[str, object]]) -> list[Phase]:
    """Phases from plain data: ``[{"name": "warm", "duration": "5s", "arrival_rate": 5}]``."""
    phases = []
    for i, item in enumerate(raw):
        data = dict(item)
        name = str(data.pop("name", f"phase{i + 1}"))
        duration = data.pop("duration", None)
        if duration is None:
            raise ValueError(f"phase {name!r}: a duration is required")
        known = {"arrival_rate", "ramp_to", "pause", "vus", "think_time"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"phase {name!r}: unknown key(s) {', '.join(sorted(unknown))} "
                f"(known: duration, {', '.join(sorted(known))})"
            )
        phases.append(Phase(name, duration, **data))  # type: ignore[arg-type]
    return phases
