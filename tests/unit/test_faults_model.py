"""Toxic parsing, HTTP request splitting, and the checkers on known-bad histories."""

from __future__ import annotations

import pytest

from stacktest.errors import FaultError
from stacktest.faults.history import History, counter, set_checker, total_queue, unique_ids
from stacktest.faults.httpfault import RequestSplitter, error_response
from stacktest.faults.toxics import Toxic


# -- toxics -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "type_", "attributes"),
    [
        ({"latency": "200ms", "jitter": "20ms"}, "latency", {"latency": 200, "jitter": 20}),
        ({"latency": 1.5}, "latency", {"latency": 1}),
        ({"latency": "1.5s"}, "latency", {"latency": 1500}),
        ({"bandwidth": "1MB/s"}, "bandwidth", {"rate": 1024}),
        ({"bandwidth": 100}, "bandwidth", {"rate": 100}),
        ({"type": "bandwidth", "rate": "64KB/s"}, "bandwidth", {"rate": 64}),
        ({"slicer": "64", "delay": "250us"}, "slicer", {"average_size": 64, "delay": 250}),
        ({"limit_data": "1KB"}, "limit_data", {"bytes": 1024}),
        ({"timeout": "0"}, "timeout", {"timeout": 0}),
        ({"http_error": "503", "first": "2"}, "http_error", {"status": 503, "first": 2}),
    ],
)
def test_toxics_parse_from_words(spec: dict, type_: str, attributes: dict) -> None:
    toxic = Toxic.parse(spec)
    assert toxic.type == type_
    for key, value in attributes.items():
        assert toxic.attributes[key] == value


def test_toxic_defaults_follow_toxiproxy() -> None:
    toxic = Toxic.parse({"latency": 100})
    assert toxic.to_json() == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 100, "jitter": 0},
    }
    assert Toxic.from_json(toxic.to_json()).to_json() == toxic.to_json()
    assert Toxic.parse({"http_error": 500}).stream == "upstream"  # requests flow upstream


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"bogus": 1}, "none of bogus is a toxic type"),
        ({"latency": "soon"}, "is not a duration"),
        ({"latency": 10, "stream": "sideways"}, "upstream or downstream"),
        ({"latency": 10, "toxicity": 2}, "toxicity must be from 0 to 1"),
        ({"latency": 10, "rate": 5}, "toxic 'latency' has no attribute 'rate'"),
        ({"http_error": 999}, "not an HTTP status"),
        ({"type": "nope"}, "unknown toxic type 'nope'"),
    ],
)
def test_bad_toxics_are_refused_with_a_reason(spec: dict, needle: str) -> None:
    with pytest.raises(FaultError, match=needle):
        Toxic.parse(spec)


# -- HTTP -------------------------------------------------------------------------------------
def test_requests_are_split_by_length_and_chunks() -> None:
    splitter = RequestSplitter()
    first = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    second = b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    third = b"GET /c HTTP/1.1\r\n\r\n"
    data = first + second + third
    pieces = splitter.feed(data[:30]) + splitter.feed(data[30:70]) + splitter.feed(data[70:])
    assert [(line, raw) for line, raw in pieces] == [
        ("POST /a HTTP/1.1", first),
        ("POST /b HTTP/1.1", second),
        ("GET /c HTTP/1.1", third),
    ]


def test_after_an_upgrade_bytes_pass_untouched() -> None:
    splitter = RequestSplitter()
    upgrade = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    pieces = splitter.feed(upgrade + b"\x81\x05hello")
    assert pieces == [("GET /ws HTTP/1.1", upgrade), (None, b"\x81\x05hello")]
    assert splitter.feed(b"more") == [(None, b"more")]


def test_error_response_is_valid_http() -> None:
    response = error_response(503)
    head, body = response.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable")
    assert f"Content-Length: {len(body)}".encode() in head


# -- checkers ---------------------------------------------------------------------------------
def ops(history: History, *entries: tuple[str, str, object, str]) -> None:
    """(process, f, value, outcome) -> invoke + completion, in order."""
    for process, f, value, outcome in entries:
        invoke = history.invoke(f, value, process)
        if outcome != "pending":
            history.complete(invoke, outcome, value)  # type: ignore[arg-type]


def test_set_finds_a_lost_write_and_tolerates_an_unknown() -> None:
    h = History()
    ops(
        h,
        ("a", "add", 1, "ok"),
        ("a", "add", 2, "ok"),
        ("b", "add", 3, "info"),
        ("b", "add", 4, "fail"),
    )
    invoke = h.invoke("read", None, "c")
    h.ok(invoke, [1, 3])
    result = set_checker(h)
    assert result["valid"] is False
    assert result["lost"] == [2]
    assert result["recovered"] == [3]  # unknown outcome, turned out to have happened: fine
    assert result["unexpected"] == []


def test_set_is_valid_when_nothing_acknowledged_is_missing() -> None:
    h = History()
    ops(h, ("a", "add", 1, "ok"), ("b", "add", 2, "info"))
    h.ok(h.invoke("read", None, "c"), [1])
    assert set_checker(h)["valid"] is True
    assert set_checker(History())["valid"] == "unknown"


def test_set_flags_elements_nobody_added() -> None:
    h = History()
    ops(h, ("a", "add", 1, "ok"))
    h.ok(h.invoke("read", None, "c"), [1, 99])
    result = set_checker(h)
    assert result["valid"] is False and result["unexpected"] == [99]


def test_total_queue_finds_duplicated_lost_and_unexpected() -> None:
    h = History()
    ops(
        h,
        ("p", "enqueue", "t1", "ok"),
        ("p", "enqueue", "t2", "ok"),
        ("p", "enqueue", "t3", "ok"),
        ("p", "enqueue", "t4", "info"),
        ("c", "dequeue", "t1", "ok"),
        ("c", "dequeue", "t1", "ok"),  # delivered twice
        ("c", "dequeue", "t4", "ok"),  # unknown enqueue that happened: recovered
        ("c", "dequeue", "ghost", "ok"),
    )
    h.ok(h.invoke("drain", None, "c"), ["t2"])
    result = total_queue(h)
    assert result["valid"] is False
    assert result["lost"] == ["t3"]
    assert result["duplicated"] == {"t1": 2}
    assert result["unexpected"] == ["ghost"]
    assert result["recovered"] == ["t4"]


def test_total_queue_flags_a_definitely_failed_enqueue_that_was_delivered() -> None:
    """The client was told "no" (a 4xx, a refused connection) and the item went through
    anyway: a retry would make it twice. An enqueue retried after its failure and then
    acknowledged is not flagged (the retry did it)."""
    h = History()
    ops(
        h,
        ("p", "enqueue", "t1", "fail"),
        ("p", "enqueue", "t2", "fail"),
        ("p", "enqueue", "t2", "ok"),  # retried: the second attempt did it
        ("c", "dequeue", "t1", "ok"),
        ("c", "dequeue", "t2", "ok"),
    )
    result = total_queue(h)
    assert result["valid"] is False
    assert result["failed_but_delivered"] == ["t1"]
    assert result["lost"] == [] and result["duplicated"] == {} and result["unexpected"] == []


def test_set_flags_a_definitely_failed_add_that_is_present() -> None:
    h = History()
    ops(h, ("a", "add", 1, "ok"), ("a", "add", 2, "fail"),
        ("a", "add", 3, "fail"), ("a", "add", 3, "ok"))  # fmt: skip
    h.ok(h.invoke("read", None, "c"), [1, 2, 3])
    result = set_checker(h)
    assert result["valid"] is False and result["failed_but_present"] == [2]
    assert result["lost"] == [] and result["unexpected"] == []


def test_total_queue_valid_history() -> None:
    h = History()
    ops(h, ("p", "enqueue", 1, "ok"), ("p", "enqueue", 2, "fail"), ("c", "dequeue", 1, "ok"))
    assert total_queue(h)["valid"] is True


def test_unique_ids() -> None:
    h = History()
    for value in ["a", "b", "a", "c"]:
        invoke = h.invoke("generate", None, "p")
        h.ok(invoke, value)
    result = unique_ids(h)
    assert result["valid"] is False and result["duplicated"] == {"a": 2}
    assert unique_ids(History())["valid"] == "unknown"


def test_counter_bounds_reads_by_certain_and_possible_adds() -> None:
    h = History()
    ops(h, ("a", "add", 1, "ok"), ("a", "add", 1, "info"))
    h.ok(h.invoke("read", None, "r"), 2)  # the unknown add may have happened: valid
    assert counter(h)["valid"] is True
    h.ok(h.invoke("read", None, "r"), 0)  # below what was certainly added
    h.ok(h.invoke("read", None, "r"), 5)  # above anything possible
    result = counter(h)
    assert result["valid"] is False
    assert [(e["read"], e["lower"], e["upper"]) for e in result["errors"]] == [(0, 1, 2), (5, 1, 2)]


def test_history_ops_and_file(tmp_path) -> None:
    h = History(tmp_path / "h.jsonl")
    with h.op("enqueue", 1):
        pass
    with pytest.raises(TimeoutError), h.op("enqueue", 2):
        raise TimeoutError("no answer")
    with h.op("enqueue", 3) as op:
        op.fail("refused: 503")
    kinds = [(o.type, o.value) for o in h.ops]
    assert kinds == [
        ("invoke", 1),
        ("ok", 1),
        ("invoke", 2),
        ("info", 2),
        ("invoke", 3),
        ("fail", 3),
    ]
    loaded = History.load(tmp_path / "h.jsonl")
    assert [(o.type, o.value, o.error) for o in loaded.ops] == [
        (o.type, o.value, o.error) for o in h.ops
    ]
    assert loaded.ops[3].error == "TimeoutError: no answer"


# -- the fault plane's event loop ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "module"), [(None, "uvloop"), ("auto", "uvloop"), ("uvloop", "uvloop"),
                            ("asyncio", "asyncio"), (" AsyncIO ", "asyncio")],
)  # fmt: skip
def test_the_proxy_loop_is_uvloop_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, module: str
) -> None:
    from stacktest.faults.plane import LOOP_ENV, new_loop

    if setting is None:
        monkeypatch.delenv(LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(LOOP_ENV, setting)
    loop = new_loop()
    try:
        assert type(loop).__module__.split(".")[0] == module
    finally:
        loop.close()


def test_an_unknown_proxy_loop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from stacktest.errors import ConfigError
    from stacktest.faults.plane import LOOP_ENV, new_loop

    monkeypatch.setenv(LOOP_ENV, "trio")
    with pytest.raises(ConfigError, match=r"STACKTEST_PROXY_LOOP='trio'.*\n.*auto"):
        new_loop()
