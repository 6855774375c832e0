"""A circuit breaker: after ``threshold`` failures in a row, refuse calls for ``cooldown``
seconds, then let exactly one call through to test the water (half-open): its success closes
the circuit, its failure opens it again for another cooldown. Calls made while that probe is
out are refused, as while open (a probe that never reports frees the way after a cooldown)."""

from __future__ import annotations

import time


class CircuitOpen(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is unavailable (circuit open)")
        self.name = name


class Breaker:
    def __init__(self, name: str, threshold: int = 3, cooldown: float = 1.0) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self.trips = 0
        #: When the one half-open probe was let through (None: no probe out).
        self.probe_since: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def check(self) -> None:
        state = self.state
        if state == "open":
            raise CircuitOpen(self.name)
        if state == "half_open":
            now = time.monotonic()
            if self.probe_since is not None and now - self.probe_since < self.cooldown:
                raise CircuitOpen(self.name)  # the probe is out: one at a time
            self.probe_since = now

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probe_since = None

    def failure(self) -> None:
        self.failures += 1
        half_open = self.state == "half_open"
        if self.failures >= self.threshold or half_open:
            if self.opened_at is None or half_open:
                self.trips += 1
            self.opened_at = time.monotonic()
            self.probe_since = None
