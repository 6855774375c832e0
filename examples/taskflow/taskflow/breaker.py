"""A circuit breaker: after ``threshold`` failures in a row, refuse calls for ``cooldown``
seconds, then let one through to test the water (half-open)."""

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

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def check(self) -> None:
        if self.state == "open":
            raise CircuitOpen(self.name)

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold or self.state == "half_open":
            if self.opened_at is None or self.state == "half_open":
                self.trips += 1
            self.opened_at = time.monotonic()
