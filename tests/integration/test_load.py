"""Load against a real server with a known service time (10 ms), started as a stack service."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from stacktest import Stack
from stacktest.load import LoadTest, Phase
from stacktest.load.runner import ScenarioRef
from stacktest.load.session import Session
from tests.helpers import run_stacktest

# timing-sensitive: never beside the heaviest servers' tests (same group: one worker, in
# turn, under `--dist loadgroup`, as scripts/test.sh runs them)
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("timing")]
PY = sys.executable
SERVER = Path(__file__).with_name("load_server.py")
STACK = f"""
[services.api]
command = ["{PY}", "{SERVER}", "{{port}}"]
ready = {{ http = "/fast" }}
"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("load")
    (directory / "stack.toml").write_text(STACK)
    with Stack.from_file(directory / "stack.toml") as stack:
        yield stack["api"].url


async def sleep_10ms(session: Session) -> None:
    await session.get("/sleep", name="sleep")


def stall_later(api: str, after: float, ms: int = 1000) -> threading.Thread:
    """Make the server stall for ``ms`` milliseconds, ``after`` seconds from now."""

    def stall() -> None:
        time.sleep(after)
        httpx.post(f"{api}/stall?ms={ms}", timeout=5)

    thread = threading.Thread(target=stall)
    thread.start()
    return thread


def direct_overhead_ms(api: str, requests: int = 40) -> float:
    """The peer, measured in the same run: a plain keep-alive client (the standard
    library's) asks ``/sleep`` one request at a time; what it sees beyond the server's own
    clock is what loopback, the server's request handling and parsing cost right now."""
    url = urlparse(api)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    seen = []
    try:
        for _ in range(requests):
            started = time.perf_counter()
            connection.request("GET", "/sleep")
            connection.getresponse().read()
            seen.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    server_p50 = float(httpx.get(f"{api}/stats", timeout=5).text)
    return sorted(seen)[len(seen) // 2] - server_p50


def test_p50_matches_the_known_service_time(api: str) -> None:
    httpx.get(f"{api}/stats", timeout=5)  # forget earlier tests' requests
    before = direct_overhead_ms(api)
    result = LoadTest(sleep_10ms, api, [Phase("steady", "3s", 50)]).run()
    assert result.phases["steady"]["offered"] == 150
    assert result.phases["steady"]["completed"] == 150
    service, latency = result.service_time("sleep"), result.latency("sleep")
    # The server asks for 10 ms; a loaded machine's sleep overshoots it (11 ms seen on a
    # 2-core CI machine), so the measurement is compared with the time the server itself
    # spent, by its own clock, in the same run.
    server_p50 = float(httpx.get(f"{api}/stats", timeout=5).text)
    assert server_p50 >= 10, server_p50
    added = service["p50"] - server_p50
    # What the load tool adds beyond that is what a direct client adds on this machine at
    # this moment (0.8 to 1 ms for both on a 2-core machine, idle or busy: the server's own
    # request handling is most of it), plus at most half a millisecond of its own (the
    # event loop, the schedule, the recorder). The direct client is measured just before
    # and just after the run (the other xdist worker's tests change the machine's load
    # from one second to the next); the larger is the reference.
    peer = max(before, direct_overhead_ms(api), 0)
    assert 0 <= added <= peer + 0.5, (service, server_p50, before, peer)
    # Nothing queues at 50/s: the corrected latency is the service time of the same run
    # (compared with it, not with the nominal 10 ms, which a loaded machine's timers miss).
    assert latency["p50"] >= service["p50"] - 0.05, (latency, service)
    assert latency["p50"] - service["p50"] <= 1, (latency, service)
    assert result.valid, result.invalid_reasons


async def hog_the_generator(session: Session) -> None:
    time.sleep(0.03)  # noqa: ASYNC251 - on purpose: a blocking scenario stops the generator
    await session.get("/fast", name="fast")


def test_a_generator_that_falls_behind_marks_the_run_invalid(api: str) -> None:
    result = LoadTest(hog_the_generator, api, [Phase("steady", "2s", 100)]).run()
    assert not result.valid
    (reason,) = result.invalid_reasons
    assert "fell behind its schedule: schedule lag p99" in reason, reason
    assert result.generator["schedule_lag_ms"]["p99"] > 100


def test_a_stall_shows_in_the_corrected_p99_and_not_in_service_time(api: str) -> None:
    """The wrk2 demonstration: 5 connections work through a 100/s schedule; the server
    stalls for 1 s. Only the few requests in flight see the stall as service time; the
    ~100 that should have started during it wait for a connection, and the corrected
    latency (from the intended start) counts that wait."""

    staller = stall_later(api, 3)
    result = LoadTest(sleep_10ms, api, [Phase("steady", "8s", 100)], connections=5).run()
    staller.join()
    corrected, service = result.latency("sleep"), result.service_time("sleep")
    assert corrected["p99"] > 500, corrected
    assert service["p99"] < 50, service
    assert service["max"] > 900  # the requests caught in flight did see it
    assert result.phases["steady"]["dropped"] == 0


def test_arrivals_beyond_max_in_flight_are_dropped_and_counted(api: str) -> None:
    async def slow(session: Session) -> None:
        await session.get("/sleep", name="sleep")

    staller = stall_later(api, 0.5)
    result = LoadTest(slow, api, [Phase("steady", "2s", 50)], max_in_flight=5,
                      thresholds={"http_req_duration": ["p(95)<5000"], "errors": ["rate<0.01"]},
                      allow_drops=True).run()  # fmt: skip
    staller.join()
    phase = result.phases["steady"]
    assert phase["dropped"] > 20  # the stall filled the 5 slots: arrivals were not delayed
    assert phase["started"] + phase["dropped"] == phase["offered"] == 100
    # completed per second, not started: what the system did, below what was offered
    assert phase["achieved_rate"] == phase["completed"] / 2 < phase["offered_rate"]
    assert result.valid  # drops allowed: a `dropped` threshold would judge them


def test_a_run_with_dropped_arrivals_cannot_pass_by_omission(api: str) -> None:
    """A stalled server, max_in_flight reached: the percentiles of what started look fine,
    the thresholds on them pass, and the run still fails, saying how many were dropped."""

    async def slow(session: Session) -> None:
        await session.get("/sleep", name="sleep")

    staller = stall_later(api, 0.5)
    result = LoadTest(slow, api, [Phase("steady", "2s", 50)], max_in_flight=5,
                      thresholds={"errors": ["rate<0.01"]}).run()  # fmt: skip
    staller.join()
    dropped = result.phases["steady"]["dropped"]
    assert dropped > 20 and result.thresholds_ok
    assert not result.valid and result.exit_code == 97
    (reason,) = result.invalid_reasons
    assert f"{dropped} of 100 arrivals were dropped" in reason and "max_in_flight" in reason
    assert "INVALID RUN" in result.summary()


def test_thresholds_breach_exits_99_and_abort_on_fail_stops_early(api: str) -> None:
    passing = LoadTest(
        sleep_10ms, api, [Phase("steady", "1s", 20)],
        thresholds={"http_req_duration{name:sleep}": ["p(95)<200"], "errors": ["rate<0.01"]},
    ).run()  # fmt: skip
    assert passing.exit_code == 0 and passing.thresholds_ok

    breached = LoadTest(
        sleep_10ms, api, [Phase("steady", "1s", 20)],
        thresholds={"http_req_duration": ["p(95)<5"]},
    ).run()  # fmt: skip
    assert breached.exit_code == 99
    (verdict,) = breached.thresholds
    assert not verdict.ok and verdict.measured is not None and verdict.measured > 5
    assert "FAIL http_req_duration: p(95) =" in breached.summary()

    began = time.monotonic()
    aborted = LoadTest(
        sleep_10ms, api, [Phase("steady", "20s", 20)],
        thresholds={"http_req_duration": [{"threshold": "p(95)<5", "abortOnFail": True}]},
    ).run()  # fmt: skip
    assert aborted.aborted and aborted.exit_code == 99
    assert time.monotonic() - began < 10


def test_errors_are_counted_per_operation(api: str) -> None:
    async def flow(session: Session) -> None:
        await session.get("/fast", name="ok")
        await session.post("/nothing-here", json={}, name="missing")  # 404 -> failure

    result = LoadTest(flow, api, [Phase("steady", "1s", 20)]).run()
    assert result.operations["ok"]["all"]["failed"] == 0
    missing = result.operations["missing"]["all"]
    assert missing["failed"] == missing["count"] == 20
    assert missing["errors"] == {"HTTP 404": 20}
    assert result.phases["steady"]["failed"] == 20  # the iteration failed at its second step


def test_closed_model_and_timed_operations(api: str) -> None:
    async def flow(session: Session) -> None:
        async with session.timed("two calls"):
            await session.get("/fast", name="fast")
            await session.get("/fast", name="fast")

    result = LoadTest(flow, api, [Phase("users", "1s", vus=3, think_time="50ms")]).run()
    timed = result.operations["two calls"]["all"]
    assert timed["count"] > 20 and timed["failed"] == 0
    assert result.operations["fast"]["all"]["count"] == 2 * timed["count"]


def test_results_files(api: str, tmp_path: Path) -> None:
    result = LoadTest(sleep_10ms, api, [Phase("a", "1s", 10), Phase("b", "1s", 20)]).run()
    result.write(tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data["phases"]) == {"a", "b"}
    assert data["operations"]["sleep"]["phases"]["b"]["count"] == 20
    assert "coordinated omission" in data["notes"]["latency_ms"]
    assert (tmp_path / "operations.csv").read_text().startswith("operation,phase,count")
    assert len((tmp_path / "slices.csv").read_text().splitlines()) >= 2


def test_two_worker_processes_merge_their_histograms(api: str, tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.py"
    scenario.write_text(
        "async def hit(session):\n    await session.get('/sleep', name='sleep')\n"
    )
    result = LoadTest(
        ScenarioRef(str(scenario), "hit"), api, [Phase("steady", "2s", 40)]
    ).run(workers=2)
    assert result.workers == 2
    assert result.phases["steady"]["offered"] == 80
    assert result.operations["sleep"]["all"]["count"] == 80
    # the merged histogram holds the requests' own values: never under the server's 10 ms
    # sleep, and nowhere near what a wrong merge gives (values added or scaled: >= 20 ms);
    # how close to 10 ms depends on three busy processes sharing two cores
    service = result.service_time("sleep")
    assert 10 <= service["p50"] < 15, service


def test_cli_runs_a_scenario_file_against_the_stack(tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text(STACK)
    (tmp_path / "scenario.py").write_text(
        "from stacktest.load import Phase\n"
        "service = 'api'\n"
        "phases = [Phase('warm', '1s', 10), Phase('peak', '1s', 30)]\n"
        "thresholds = {'http_req_duration{name:sleep}': ['p(95)<500'], 'errors': ['rate<0.01']}\n"
        "async def scenario(session):\n"
        "    await session.get('/sleep', name='sleep')\n"
    )
    result = run_stacktest("load", "scenario.py", "--workers", "1", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "peak" in result.stdout and "ok   http_req_duration{name:sleep}" in result.stdout
    (results_dir,) = (tmp_path / ".stacktest" / "load").iterdir()
    data = json.loads((results_dir / "results.json").read_text())
    assert data["phases"]["peak"]["offered"] == 30

    strict = tmp_path / "strict.py"
    strict.write_text(
        (tmp_path / "scenario.py").read_text().replace("p(95)<500", "p(95)<1")
    )
    breached = run_stacktest(
        "load", "strict.py", "--phase", "only:1s:10", cwd=tmp_path, timeout=120
    )
    assert breached.returncode == 99, breached.stdout + breached.stderr
    assert "FAIL http_req_duration{name:sleep}" in breached.stdout


def test_cli_takes_a_k6_options_files_thresholds_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text(STACK)
    (tmp_path / "scenario.py").write_text(
        "from stacktest.load import Phase\n"
        "service = 'api'\n"
        "phases = [Phase('steady', '2s', 20)]\n"
        "async def scenario(session):\n"
        "    r = await session.get('/sleep', name='sleep')\n"
        "    session.check(r, {'status is 200': lambda r: r.status_code == 200,\n"
        "                      'says slept': lambda r: b'slept' in r.content})\n"
    )
    (tmp_path / "options.json").write_text(json.dumps({
        "vus": 10, "duration": "2s",
        "thresholds": {
            "http_req_failed": ["rate<0.01"],
            "http_req_duration{status:200}": ["p(95)<500", {"threshold": "p(99)<1000",
                                              "abortOnFail": True, "delayAbortEval": "1s"}],
            "http_reqs": ["count==40"], "iterations": ["count==40"],
            "checks{check:status is 200}": ["rate==1"], "checks{check:says slept}": ["rate==0"],
            "data_received": ["count>0"],
            "data_sent": ["rate>0"], "vus": ["max<=10"],
        },
    }))  # fmt: skip
    result = run_stacktest("load", "scenario.py", "--workers", "1", "--k6-options",
                           "options.json", cwd=tmp_path, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for key in ("http_req_failed", "http_req_duration{status:200}", "http_reqs", "iterations",
                "checks{check:status is 200}", "checks{check:says slept}", "data_received",
                "data_sent", "vus"):  # fmt: skip
        assert f"ok   {key}:" in result.stdout, (key, result.stdout)


def test_cli_baselines_and_bad_input(tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text(STACK)
    (tmp_path / "scenario.py").write_text(
        "from stacktest.load import Phase\n"
        "phases = [Phase('steady', '1s', 20)]\n"
        "requests = [{'method': 'GET', 'path': '/sleep', 'name': 'sleep', 'expect': 200}]\n"
    )

    def st(*args: str) -> subprocess.CompletedProcess[str]:
        return run_stacktest("load", *args, cwd=tmp_path, timeout=120)

    saved = st("scenario.py", "--workers", "1", "--save-baseline", "base.json")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    # 20 arrivals a run: p95 and p99 are the slowest one or two requests, which one scheduler
    # hiccup on a shared CI machine moves by 30 %, and the median of a 10 ms sleep moved past
    # the default 10 % between two runs while other tests shared the 2 cores; the comparison end to end
    # is what this checks (detection of a real regression: tests/unit/test_load_model.py)
    compared = st(
        "scenario.py", "--workers", "1", "--baseline", "base.json",
        "--tolerance", "p50=100%", "--tolerance", "p95=500%", "--tolerance", "p99=500%",
    )  # fmt: skip
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "load vs baseline: no regression" in compared.stdout
    assert "| sleep | p95 |" in compared.stdout

    missing = st("nope.py")
    assert missing.returncode == 2 and "no scenario file at" in missing.stderr
    bad_phase = st("scenario.py", "--phase", "peak:10s")
    assert bad_phase.returncode == 2 and "NAME:DURATION:RATE" in bad_phase.stderr
    no_baseline = st("scenario.py", "--baseline", "absent.json")
    assert no_baseline.returncode == 2 and "no baseline at absent.json" in no_baseline.stderr
    (tmp_path / "broken.py").write_text("thresholds = {'latncy': ['p(95)<1']}\nrequests = [{'path': '/'}]\n")
    broken = st("broken.py")
    assert broken.returncode == 2 and "unknown metric" in broken.stderr
