"""The quickstart demo: a real stack up, a real round trip through each service, down.

Prints a summary and writes reports/demo.md. Exit code 0 only if every check passed
and nothing of the stack was left running.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "examples" / "quickstart" / "stack.toml"


def main() -> int:
    from stacktest import Stack, StackError
    from stacktest.engine.procs import alive

    checks: list[tuple[str, bool, str]] = []

    def check(name: str, fn: object) -> None:
        started = time.perf_counter()
        try:
            detail = fn()  # type: ignore[operator]
            ok = True
        except Exception as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        took = (time.perf_counter() - started) * 1000
        checks.append((name, ok, f"{detail} ({took:.1f} ms)"))
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail} ({took:.1f} ms)")

    print(f"==> stacktest up: {STACK.relative_to(ROOT)}")
    started = time.perf_counter()
    stack = Stack.from_file(STACK)
    try:
        stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    up_seconds = time.perf_counter() - started
    pids: list[int] = []
    try:
        print(f"    all services healthy in {up_seconds:.2f}s")
        for row in stack.status():
            pids.append(row["pid"])
            print(f"    {row['name']:<6} {row['state']:<8} pid {row['pid']:<7} port {row['port']}")
        print("==> round trips")
        check(
            "postgres: insert and read back over TCP with the generated password",
            lambda: postgres_round_trip(stack["db"].url + "/quickstart"),
        )
        check("valkey: SET then GET", lambda: valkey_round_trip(stack["cache"].url))
        check("nats: JetStream publish, then consume", lambda: nats_round_trip(stack["bus"].url))
        check("web: POST /visit writes to all three", lambda: web_round_trip(stack["web"].url))
    finally:
        started = time.perf_counter()
        stack.stop()
        down_seconds = time.perf_counter() - started
    leftovers = [pid for pid in pids if pid and alive(pid)]
    checks.append(("nothing left running after down", not leftovers, f"leftover pids: {leftovers}"))
    print(f"==> stacktest down in {down_seconds:.2f}s; leftover processes: {leftovers or 'none'}")
    print("==> the quickstart's integration suite: stacktest test (up, pytest, down)")
    check("integration suite (pytest plugin, real services)", run_suite)
    passed = sum(ok for _, ok, _ in checks)
    print(
        f"==> summary: {passed}/{len(checks)} checks passed; up {up_seconds:.2f}s, down {down_seconds:.2f}s"
    )
    write_report(checks, up_seconds, down_seconds)
    return 0 if passed == len(checks) else 1


def run_suite() -> str:
    """``stacktest test`` on examples/quickstart/tests; JUnit XML into reports/."""
    import os
    import subprocess
    import xml.etree.ElementTree as ET

    junit = ROOT / "reports" / "quickstart-junit.xml"
    junit.parent.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "stacktest", "test", "--file", str(STACK), "--",
         "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", str(STACK.parent / "tests")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    for line in (result.stdout + result.stderr).splitlines():
        print(f"      | {line}")
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None, "no JUnit report"
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert result.returncode == 0 and counts["tests"] > 0, f"pytest exit {result.returncode}, {counts}"
    return (
        f"{counts['tests']} tests, {counts['failures']} failed, {counts['errors']} errors, "
        f"{counts['skipped']} skipped; JUnit: {junit.relative_to(ROOT)}"
    )


def postgres_round_trip(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO visits (who) VALUES ('demo')")
        (count,) = conn.execute("SELECT count(*) FROM visits WHERE who = 'demo'").fetchone()  # type: ignore[misc]
        (version,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
    assert count == 1, count
    return f"1 row written and read, PostgreSQL {version}"


def valkey_round_trip(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.set("demo", "hello")
        value = client.get("demo")
        info = client.info("server")
    finally:
        client.close()
    assert value == b"hello", value
    return f"got {value.decode()!r} back from {info.get('server_name', 'redis')} {info.get('valkey_version') or info.get('redis_version')}"


def nats_round_trip(url: str) -> str:
    import nats

    async def go() -> str:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="DEMO", subjects=["demo.>"])
            ack = await js.publish("demo.hello", b"world")
            sub = await js.pull_subscribe("demo.hello", durable="demo")
            msgs = await sub.fetch(1, timeout=5)
            await msgs[0].ack()
            assert msgs[0].data == b"world"
            return f"stored as {ack.stream} #{ack.seq} and consumed back"
        finally:
            await nc.close()

    return asyncio.run(go())


def web_round_trip(url: str) -> str:
    request = urllib.request.Request(
        f"{url}/visit",
        data=json.dumps({"who": "ada"}).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    assert body["count"] == 1 and body["stream"] == "VISITS", body
    return f"row {body['id']}, counter {body['count']}, event {body['stream']} #{body['seq']}"


def write_report(checks: list[tuple[str, bool, str]], up: float, down: float) -> None:
    out = ROOT / "reports" / "demo.md"
    out.parent.mkdir(exist_ok=True)
    lines = [
        "# stacktest quickstart demo",
        "",
        f"- stack: `{STACK.relative_to(ROOT)}` (Postgres, Valkey, NATS JetStream, an HTTP service)",
        f"- up to all healthy: **{up:.2f} s**; down: **{down:.2f} s**",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'pass' if ok else 'FAIL'} | {detail} |" for name, ok, detail in checks]
    out.write_text("\n".join(lines) + "\n")
    print(f"==> report: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
