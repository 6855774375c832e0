"""The report from a run directory and a JUnit file: what it says, and what it never shows."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stacktest.cli import app
from stacktest.errors import ConfigError
from stacktest.report import collect, to_html, to_markdown

SECRET = "pw-Zq81xR"
T0 = 1_800_000_000.0


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / ".stacktest"
    (run / "load" / "20261122-000000").mkdir(parents=True)
    state = {
        "stack": "shop", "source": str(tmp_path / "stack.toml"), "state": "stopped",
        "started_at": T0,
        "instances": {
            "db": {"kind": "postgres", "state": "stopped", "started_at": T0, "ready_at": T0 + 0.08,
                   "restarts": 1, "crashes": 0,
                   "fields": {"password": SECRET, "url": f"postgresql://app:{SECRET}@127.0.0.1:5"}},
            "api": {"kind": "process", "state": "stopped", "started_at": T0 + 0.1,
                    "ready_at": T0 + 0.4, "restarts": 0, "crashes": 2,
                    "fields": {"url": "http://127.0.0.1:6"}},
        },
    }  # fmt: skip
    (run / "state.json").write_text(json.dumps(state))
    events = [
        {"t": T0, "service": "db", "event": "starting"},
        {"t": T0 + 0.08, "service": "db", "event": "ready", "seconds": 0.08},
        {"t": T0 + 0.4, "service": "api", "event": "ready", "seconds": 0.3},
        {"t": T0 + 2.0, "service": "api->db", "event": "fault: toxic added", "name": "lat"},
        {"t": T0 + 3.0, "service": "api", "event": "exited", "code": 1},
        {"t": T0 + 4.0, "service": "stack", "event": "stopped"},
    ]
    samples = [  # db restarted between the 2nd and 3rd sample: its counter starts again
        ("db", 0, 1.0, 30.0), ("db", 1, 1.5, 42.0), ("db", 2, 0.2, 35.0), ("db", 3, 0.4, 36.0),
        ("api", 0, 0.1, 20.0),  # one sample: nothing to say
    ]  # fmt: skip
    (run / "resources.jsonl").write_text("".join(
        json.dumps({"t": T0 + t, "service": s, "cpu_s": c, "rss_mb": m}) + "\n"
        for s, t, c, m in samples
    ) + "{cut")  # fmt: skip
    (run / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n{cut")
    (run / "load" / "20261121-000000").mkdir()  # a load run of an earlier run: not this one's
    (run / "load" / "20261121-000000" / "results.json").write_text(json.dumps({
        "name": "yesterday", "started_at": T0 - 86400, "seconds": 3.0, "valid": True}))
    (run / "load" / "20261122-000000" / "results.json").write_text(json.dumps({
        "name": "checkout", "started_at": T0 + 1, "seconds": 3.0, "valid": True, "aborted": False,
        "thresholds": [{"metric": "http_req_duration", "threshold": "p(95)<1", "measured": 4.2,
                        "ok": False}],
        "operations": {"buy": {"all": {"count": 30, "failed": 1,
                                       "latency_ms": {"p50": 2.0, "p95": 4.2, "p99": 5.0},
                                       "service_time_ms": {"p50": 1.9}}}},
        "slices": [{"second": i, "p50_ms": 2.0, "p99_ms": 5.0 + i} for i in range(3)],
    }))  # fmt: skip
    (tmp_path / "junit.xml").write_text(f"""<?xml version="1.0"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.test_shop" name="test_buy" time="0.5"/>
<testcase classname="tests.test_shop" name="test_pay" time="1.25">
  <failure message="psycopg: connection to postgresql://app:{SECRET}@127.0.0.1:5 failed">trace
  with {SECRET} in it</failure>
  <system-out>----- db log -----\nFATAL: password authentication failed</system-out>
</testcase>
<testcase classname="tests.test_shop" name="test_later" time="0"><skipped message="later"/></testcase>
</testsuite></testsuites>""")  # fmt: skip
    return run


def test_the_report_collects_services_events_tests_and_load(run_dir: Path) -> None:
    report = collect(run_dir, run_dir.parent / "junit.xml")
    assert report.stack == "shop" and not report.passed
    assert [(s.name, s.ready_seconds, s.restarts, s.crashes) for s in report.services] == [
        ("db", 0.08, 1, 0), ("api", 0.3, 0, 2),
    ]  # fmt: skip
    assert [e.what for e in report.faults] == ["fault: toxic added"]
    assert report.faults[0].t == 2.0 and report.seconds == 4.0  # a cut last line is skipped
    assert [(t.name, t.outcome) for t in report.tests] == [
        ("test_buy", "passed"), ("test_pay", "failed"), ("test_later", "skipped"),
    ]  # fmt: skip
    assert "password authentication failed" in report.tests[1].details  # the service log
    db, api = report.services
    assert (db.cpu_seconds, db.cpu_percent, db.peak_rss_mb) == (0.7, 23.3, 42.0)
    assert api.cpu_seconds is None
    (run,) = report.load_runs
    assert not run.ok and run.operations[0]["latency"]["p95"] == 4.2


def test_markdown_and_html_say_it_and_never_show_a_secret(run_dir: Path) -> None:
    report = collect(run_dir, run_dir.parent / "junit.xml")
    md, html = to_markdown(report), to_html(report)
    assert md.startswith("# shop: FAILED")
    assert "Tests: 1 passed, 1 failed, 1 skipped" in md
    assert "| `tests.test_shop::test_pay` | psycopg: connection to postgresql://app:****@" in md
    assert "| 2.00 | api->db | fault: toxic added name=lat |" in md
    assert "| 0.7 s (23 % of a core) | 42 MB |" in md
    assert "threshold `p(95)<1` on http_req_duration: FAILED (measured 4.2)" in md
    assert SECRET not in md and SECRET not in html
    assert html.count("<svg") == 2 and "<polyline" in html  # timeline + the load chart
    assert "FATAL: password authentication failed" in html
    parser = HTMLParser()
    parser.feed(html)  # well-formed enough to parse
    injected = collect(run_dir, None)
    injected.load_runs = []
    assert to_markdown(injected).startswith("# shop: no tests")
    injected.stack = "<script>alert(1)</script>"
    assert "<script>alert" not in to_html(injected)  # escaped


def test_stacktest_report_writes_both_files(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "stack.toml").write_text('[services.db]\nuse = "postgres"\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["report", "-f", str(tmp_path / "stack.toml"), "--junit", str(tmp_path / "junit.xml"),
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "summary.md").exists() and (out / "report.html").exists()
    missing = CliRunner().invoke(
        app, ["report", "-f", str(tmp_path / "stack.toml"), "--junit", str(tmp_path / "no.xml")]
    )
    assert missing.exit_code == 1 and "no JUnit XML at" in missing.output


def test_no_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no run here \(no state.json\)"):
        collect(tmp_path, None)
