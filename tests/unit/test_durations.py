"""One duration parser; what a bare number means is the caller's to say."""

from __future__ import annotations

import pytest

from stacktest.durations import in_unit, parse_duration
from stacktest.faults.toxics import Toxic


@pytest.mark.parametrize(
    ("value", "bare", "seconds"),
    [
        (5, "s", 5.0),
        (5, "ms", 0.005),
        (250, "us", 0.00025),
        ("5", "ms", 0.005),
        ("2s", "ms", 2.0),  # a unit written wins over the bare one
        ("1.5m", "s", 90.0),
        ("250µs", "s", 0.00025),
        ("1h", "ms", 3600.0),
    ],
)
def test_bare_numbers_are_in_the_callers_unit(value: object, bare: str, seconds: float) -> None:
    assert parse_duration(value, bare=bare) == pytest.approx(seconds)  # type: ignore[arg-type]


def test_whole_units_round() -> None:
    assert in_unit(0.2, "ms") == 200
    assert in_unit(0.00025, "us") == 250
    assert in_unit(1.0004, "ms") == 1000


def test_toxics_count_bare_numbers_as_toxiproxy_does() -> None:
    # latency in ms, the slicer's delay in µs: as Toxiproxy's API
    assert Toxic.parse({"latency": 10}).attributes["latency"] == 10
    assert Toxic.parse({"latency": "1.5s"}).attributes["latency"] == 1500
    assert Toxic.parse({"slicer": 64, "delay": 250}).attributes["delay"] == 250
    assert Toxic.parse({"slicer": 64, "delay": "1ms"}).attributes["delay"] == 1000
