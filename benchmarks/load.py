"""Load generator throughput per core, and schedule accuracy, measured in one run.

The target is nginx (from PATH, or Debian's package fetched with ``apt-get download``
into ``~/.cache/stacktest/tools``, no root needed), one worker pinned to CPU 1,
answering ``200 ok`` from memory. Every generator is pinned to CPU 0, so the figures
are requests per second per core of the generator:

1. stacktest: closed model, 64 virtual users, no think time (its max throughput);
2. Locust ``FastHttpUser``: 64 users, ``wait_time = constant(0)``, headless;
3. wrk (when available): ``-t1 -c64``.

Then the accuracy check: stacktest's open model at a constant 2,000 requests/s for 10 s:
achieved rate against offered, and the schedule lag p99.

Run: ``.venv/bin/python benchmarks/load.py [--seconds 5]`` (Locust: ``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
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
            closed = stacktest_run(url, "closed", args.seconds, workdir)
            st_rps = closed["operations"]["get"]["all"]["count"] / closed["seconds"]
            lo_rps = locust_rps(url, args.seconds, workdir)
            wr_rps = wrk_rps(wrk, url, args.seconds)
            constant = stacktest_run(url, "open", 10.0, workdir)
        finally:
            server.terminate()
            server.wait(10)
    print(f"# load generators against nginx, {USERS} users/connections, each generator pinned "
          f"to one core, {args.seconds:g}s")  # fmt: skip
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'generator':32} {'requests/s per core':>20}")
    print(f"{'stacktest (closed, 64 vus)':32} {st_rps:20.0f}")
    print(f"{'Locust FastHttpUser (64 users)':32} {lo_rps or float('nan'):20.0f}"
          + ("" if lo_rps else "  (pip install locust)"))  # fmt: skip
    print(f"{'wrk -t1 -c64':32} {wr_rps or float('nan'):20.0f}"
          + ("" if wr_rps else "  (not available)"))  # fmt: skip
    if lo_rps:
        print(f"ratio stacktest / Locust: {st_rps / lo_rps:.2f}x (target >= 2x)")
    phase = constant["phases"]["constant"]
    lag = constant["generator"]["schedule_lag_ms"]
    achieved = phase["started"] / phase["duration_s"]
    print(
        f"constant 2000/s for 10 s: offered {phase['offered']}, started {phase['started']}, "
        f"dropped {phase['dropped']}, achieved {achieved:.1f}/s "
        f"({(achieved - 2000) / 2000:+.2%} vs offered; target within 1%), "
        f"schedule lag p99 {lag['p99']:.2f} ms (target < 2 ms), valid {constant['valid']}"
    )
    print("  latency p50/p99 (ms):", constant["operations"]["get"]["all"]["latency_ms"]["p50"],
          constant["operations"]["get"]["all"]["latency_ms"]["p99"])  # fmt: skip


if __name__ == "__main__":
    main()

