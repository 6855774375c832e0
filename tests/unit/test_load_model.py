"""Phases, arrival schedules and thresholds: pure logic."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from stacktest.load.metrics import Recorder
from stacktest.load.phases import Phase, parse_phases
from stacktest.load.thresholds import ThresholdError, evaluate, parse


def test_uniform_arrivals_are_evenly_spaced() -> None:
    times = list(Phase("steady", "1s", 4).arrivals())
    assert times == pytest.approx([0.125, 0.375, 0.625, 0.875])


def test_a_ramp_offers_the_area_under_the_rate_and_speeds_up() -> None:
    phase = Phase("ramp", "10s", 10, ramp_to=50)
    times = list(phase.arrivals())
    assert len(times) == 300 == phase.expected_arrivals()
    first_gap, last_gap = times[1] - times[0], times[-1] - times[-2]
    assert first_gap == pytest.approx(1 / 10, rel=0.1)
    assert last_gap == pytest.approx(1 / 50, rel=0.1)
    assert all(0 <= t < 10 for t in times)


def test_poisson_arrivals_average_the_rate() -> None:
    times = list(Phase("p", "100s", 20).arrivals(poisson=True, rng=random.Random(7)))
    assert len(times) == pytest.approx(2000, rel=0.05)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) > 3 * (1 / 20)  # exponential gaps: some long ones


def test_pause_and_closed_phases_have_no_arrivals() -> None:
    assert list(Phase("rest", "2s", pause=True).arrivals()) == []
    assert list(Phase("users", "2s", vus=5).arrivals()) == []


def test_phases_from_data_and_bad_phases() -> None:
    phases = parse_phases([{"name": "warm", "duration": "5s", "arrival_rate": 5, "ramp_to": 20}])
    assert phases[0].ramp_to == 20 and phases[0].duration == 5
    with pytest.raises(ValueError, match="unknown key"):
        parse_phases([{"duration": "5s", "rate": 5}])
    with pytest.raises(ValueError, match="duration must be positive"):
        Phase("x", 0, 5)


def recorder_with(latencies_ms: list[float], failures: int = 0) -> Recorder:
    recorder = Recorder()
    for ms in latencies_ms:
        recorder.record_op("create", "peak", ms * 1000, ms * 1000 / 2, None)
    for _ in range(failures):
        recorder.record_op("create", "peak", 1000, 1000, "HTTP 503")
    counters = recorder.phase("peak")
    counters.offered, counters.dropped = 100, 3
    return recorder


def test_k6_thresholds_are_measured_and_judged() -> None:
    recorder = recorder_with([float(n) for n in range(1, 101)], failures=2)
    kinds = {"create": "http"}
    thresholds = parse(
        {
            "http_req_duration{name:create}": ["p(95)<200", "p(99)<50", "avg<60", "max<=101"],
            "service_time{phase:peak}": ["med<30"],
            "errors": ["rate<0.01", "count<=2"],
            "dropped": ["count==0", "rate<0.05"],
        }
    )
    verdicts = {f"{v.threshold.key} {v.threshold.source}": v for v in evaluate(recorder, kinds, thresholds, 10)}
    assert verdicts["http_req_duration{name:create} p(95)<200"].ok
    assert not verdicts["http_req_duration{name:create} p(99)<50"].ok
    assert verdicts["http_req_duration{name:create} p(99)<50"].measured == pytest.approx(99, abs=1)
    assert verdicts["service_time{phase:peak} med<30"].ok  # service times are half
    assert not verdicts["errors rate<0.01"].ok  # 2 of 102
    assert verdicts["errors count<=2"].ok
    assert not verdicts["dropped count==0"].ok
    assert verdicts["dropped rate<0.05"].ok


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"http_req_durations": ["p(95)<1"]}, "unknown metric"),
        ({"http_req_duration": ["p95<1"]}, "cannot read 'p95<1'"),
        ({"http_req_duration{route:x}": ["p(95)<1"]}, "tags are check, name, phase, status"),
        ({"errors": ["p(95)<1"]}, "takes count, rate, not p(95)"),
        ({"http_req_duration": ["rate<1"]}, "takes p(N), avg, med, min, max, count, not rate"),
        ({"http_req_failed": ["count<1"]}, "http_req_failed takes rate, not count"),
        ({"checks": ["p(95)<1"]}, "checks takes rate"),
        ({"vus": ["rate<1"]}, "vus takes value, min, max"),
        ({"data_received": ["avg<1"]}, "data_received takes count, rate"),
        ({"http_reqs{check:x}": ["count<1"]}, "the check tag is for checks"),
        ({"errors": [{"threshold": "rate<1", "delayAbortEval": "soon"}]}, "delayAbortEval"),
    ],
)
def test_bad_thresholds_say_what_is_wrong(spec: dict, needle: str) -> None:
    with pytest.raises(ThresholdError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse(spec)


def test_every_k6_metric_with_its_aggregations_and_tags() -> None:
    recorder = Recorder()
    for status, count in (("201", 90), ("503", 8), ("0", 2)):  # 0: no response at all
        for _ in range(count):
            error = None if status == "201" else "failed"
            recorder.record_op("create", "peak", 20_000 if status == "201" else 900_000,
                               10_000, error, status)  # fmt: skip
    for _ in range(40):
        recorder.record_op("run", "peak", 50_000, 50_000, None)  # an iteration
    for ok in [True] * 9 + [False]:
        recorder.record_check("status is 201", "peak", ok)
    recorder.record_check("body has id", "peak", True)
    counters = recorder.phase("peak")
    counters.sent, counters.received = 4000, 20000
    recorder.slices = [{"phase": "peak", "in_flight": n} for n in (3, 9, 5)]
    kinds = {"create": "http", "run": "iteration"}
    thresholds = parse({
        "http_req_duration{name:create,status:201}": ["p(99)<25"],  # the 201s only
        "http_req_duration{status:503}": ["min>800"],
        "http_req_failed": ["rate<0.11", "rate<0.05"],
        "http_reqs": ["count==100", "rate==10"],
        "http_reqs{status:0}": ["count==2"],
        "iterations": ["count==40"],
        "checks": ["rate>0.9"],
        "checks{check:status is 201}": ["rate>=0.9", "rate>0.95"],
        "data_sent": ["count==4000"], "data_received": ["rate==2000"],
        "vus": ["value==5", "max==9", "min==3"],
    })  # fmt: skip
    verdicts = {f"{v.threshold.key} {v.threshold.source}": v
                for v in evaluate(recorder, kinds, thresholds, 10)}  # fmt: skip
    failed = sorted(key for key, v in verdicts.items() if not v.ok)
    assert failed == ["checks{check:status is 201} rate>0.95", "http_req_failed rate<0.05"], {
        k: v.measured for k, v in verdicts.items()
    }
    assert verdicts["http_req_failed rate<0.11"].measured == pytest.approx(0.10)
    assert verdicts["checks rate>0.9"].measured == pytest.approx(10 / 11)


def test_delay_abort_eval_holds_abort_on_fail_back() -> None:
    from stacktest.load.runner import LoadTest

    recorder = recorder_with([500.0] * 5)  # the first second's few samples: all slow
    test = LoadTest(lambda s: None, "http://127.0.0.1:1", [Phase("peak", "30s", 10)],
                    thresholds={"http_req_duration": [{"threshold": "p(95)<100",
                                "abortOnFail": True, "delayAbortEval": "10s"}]})  # fmt: skip
    kinds = {"create": "http"}
    assert test._parsed[0].delay_abort_eval == 10
    assert not test._should_abort(recorder, kinds, seconds=1.0)  # too early to judge
    assert test._should_abort(recorder, kinds, seconds=10.5)


def test_a_k6_options_file_loads_as_is(tmp_path: Path) -> None:
    from stacktest.load.thresholds import from_k6_options

    options = {
        "scenarios": {"api": {"executor": "constant-arrival-rate", "rate": 50}},
        "thresholds": {
            "http_req_failed": ["rate<0.01"],
            "http_req_duration": ["p(95)<200", {"threshold": "p(99)<500", "abortOnFail": True,
                                                "delayAbortEval": "10s"}],
            "http_req_duration{status:200}": ["max<1000"],
            "checks": ["rate>0.99"], "iterations": ["count>100"], "data_received": ["rate>0"],
            "vus": ["max<=50"],
        },
    }  # fmt: skip
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    assert from_k6_options(path) == options["thresholds"]
    parsed = parse(from_k6_options(path))
    assert len(parsed) == 8 and parsed[2].abort_on_fail and parsed[2].delay_abort_eval == 10
    path.write_text('{"scenarios": {}}')
    with pytest.raises(ThresholdError, match="no `thresholds`"):
        from_k6_options(path)


def test_recorders_merge_across_processes() -> None:
    a, b = recorder_with([10.0] * 50), recorder_with([30.0] * 50)
    a.merge(b.export())
    stats = a.ops[("create", "peak", "")]
    assert stats.ok == 100
    assert stats.latency.get_value_at_percentile(25) / 1000 == pytest.approx(10, rel=0.01)
    assert stats.latency.get_value_at_percentile(75) / 1000 == pytest.approx(30, rel=0.01)
    assert a.phase("peak").offered == 200


def fake_results(p95: float, error_rate: float, name: str = "create") -> dict:
    stats = {"latency_ms": {"p50": p95 / 2, "p95": p95, "p99": p95 * 1.5}, "error_rate": error_rate}
    return {"operations": {name: {"all": stats}}}


def test_baseline_comparison_flags_regressions_and_prints_markdown() -> None:
    from stacktest.load.baseline import compare, parse_tolerances

    tolerances = parse_tolerances(["p95=10%", "error_rate=0.01"])
    same = compare(fake_results(100, 0.0), fake_results(100, 0.0), tolerances)
    assert same.ok
    slower = compare(fake_results(115, 0.0), fake_results(100, 0.0), tolerances)
    assert not slower.ok
    regressed = {(r.metric, r.regressed) for r in slower.rows}
    assert ("p95", True) in regressed and ("p99", False) in regressed  # p99 may grow 20%
    assert "| create | p95 | 100.00 ms | 115.00 ms | +15.0% | +10% | **regressed** |" in slower.markdown()
    errors = compare(fake_results(100, 0.05), fake_results(100, 0.0), tolerances)
    assert not errors.ok and "REGRESSION" in errors.markdown()
    renamed = compare(fake_results(100, 0.0, "new"), fake_results(100, 0.0, "old"), tolerances)
    assert renamed.missing == ["old"] and renamed.added == ["new"] and renamed.ok


def test_bad_tolerances_are_refused() -> None:
    from stacktest.load.baseline import parse_tolerances

    with pytest.raises(ValueError, match="METRIC=VALUE"):
        parse_tolerances(["p96=10%"])
    with pytest.raises(ValueError, match="not a number"):
        parse_tolerances(["p95=lots"])


def test_http_client_retries_only_safe_requests_on_a_stale_connection() -> None:
    """A server that answers the first request of each connection and drops the connection
    on the second without a byte of answer (what a keep-alive timeout racing a request
    looks like). A GET is then retried on a fresh connection; a POST is not: it may have
    been acted on."""
    import asyncio

    from stacktest.load.http import Client, HTTPError

    async def main() -> tuple[list[int], str, int]:
        connections = 0

        async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request: dropped unanswered
            writer.close()

        server = await asyncio.start_server(one_answer, "127.0.0.1", 0)
        client = Client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=5)
        statuses = [(await client.request("GET", "/")).status_code for _ in range(3)]
        error = ""
        try:
            await client.request("POST", "/", json={})
        except HTTPError as exc:
            error = str(exc)
        await client.aclose()
        server.close()
        return statuses, error, connections

    statuses, error, connections = asyncio.run(main())
    assert statuses == [200, 200, 200]  # the 2nd and 3rd were retried on fresh connections
    assert connections == 3  # GET 2 and GET 3 each found theirs dropped and took a new one
    assert "closed the connection" in error  # the POST was dropped too, and not retried


# -- the generator's own verdict -----------------------------------------------------------------
def test_schedule_lag_is_judged_on_p99_with_enough_arrivals_else_on_the_median() -> None:
    from stacktest.load.results import schedule_lag_verdict

    hiccup = {"p50": 0.1, "p99": 18.0}
    assert schedule_lag_verdict(20, hiccup, 10.0) is None  # one late arrival of twenty
    verdict = schedule_lag_verdict(100, hiccup, 10.0)
    assert verdict is not None and "p99 18.0 ms > 10 ms" in verdict
    behind = {"p50": 12.0, "p99": 40.0}
    few = schedule_lag_verdict(20, behind, 10.0)
    assert few is not None and "p50 12.0 ms > 10 ms (only 20 arrivals" in few
    assert schedule_lag_verdict(5000, {"p50": 0.01, "p99": 0.5}, 10.0) is None
    assert schedule_lag_verdict(0, {}, 10.0) is None
