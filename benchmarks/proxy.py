"""What a fault proxy with no toxics costs: redis-benchmark PING, direct vs through the proxy.

One stack (Valkey, and a client service whose edge to it is proxied), measured in
the same run, alternating direct and proxied rounds (plus the proxy's own CPU per round
trip, user and system, from this process' times: it hosts the proxies):

- throughput: ``redis-benchmark -t ping -c 50 -n N`` (requests/s);
- latency: ``redis-benchmark -t ping -c 1 -n N``, p50 (one request at a time, so the
  figure is the round trip, not queueing).

Three paths: ``direct`` (to Valkey's port), ``proxy`` (the edge ``client->cache``:
the proxy reaches Valkey over its unix socket, as every proxied edge to a Valkey
does) and ``proxy, tcp`` (a proxy made through the Toxiproxy API, which reaches Valkey
over loopback TCP, as edges to your own processes do). The target applies to ``proxy``.

redis-benchmark runs in a session of its own (``start_new_session``), as the stack
runs the client service it stands in for. This matters on Linux with autogroup
scheduling (``/proc/sys/kernel/sched_autogroup_enabled``): CPU is shared between
sessions first, so a benchmark in the proxy's own session would get half the CPU it
gets as a real client service, and measure that instead of the proxy.

``valkey-benchmark`` or ``redis-benchmark`` is taken from PATH; if neither is there,
Debian's redis-tools package is fetched with ``apt-get download`` (no root needed) and
unpacked into ``~/.cache/stacktest/tools``.

Run: ``.venv/bin/python benchmarks/proxy.py [--rounds 5] [--requests 100000]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import httpx

from stacktest import Stack

TOOLS = Path.home() / ".cache" / "stacktest" / "tools"
STACK = """
[services.cache]
use = "valkey"

[services.client]
command = ["sleep", "3600"]
depends_on = { cache = { proxy = true } }
"""


def find_benchmark() -> tuple[str, dict[str, str]]:
    for name in ("valkey-benchmark", "redis-benchmark"):
        found = shutil.which(name)
        if found:
            return found, {}
    root = TOOLS / "redis-tools"
    binary = root / "usr" / "bin" / "redis-benchmark"
    libs = root / "usr" / "lib" / "x86_64-linux-gnu"
    if not binary.exists():
        if not shutil.which("apt-get"):
            raise SystemExit("no valkey-benchmark / redis-benchmark; install redis-tools")
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            for package in ("redis-tools", "liblzf1", "libjemalloc2"):
                subprocess.run(
                    ["apt-get", "download", package], cwd=tmp, check=True, capture_output=True
                )
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return str(binary), {"LD_LIBRARY_PATH": str(libs)}


def run(
    tool: str, env: dict[str, str], port: int, clients: int, requests: int
) -> tuple[float, float]:
    """(requests/s, p50 ms), the mean of PING_INLINE and PING_MBULK."""
    out = subprocess.run(
        [tool, "-h", "127.0.0.1", "-p", str(port), "-t", "ping", "-c", str(clients),
         "-n", str(requests), "--csv"],
        capture_output=True, text=True, check=True, env={**os.environ, **env},
        start_new_session=True,  # as the stack runs its client service: see the docstring
    ).stdout  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    if not rows:
        raise SystemExit(f"no results from {tool}:\n{out}")
    rps = statistics.mean(float(r["rps"]) for r in rows)
    p50 = statistics.mean(float(r["p50_latency_ms"]) for r in rows)
    return rps, p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    tool, env = find_benchmark()
    paths = ("direct", "proxy", "proxy, tcp")
    results: dict[str, dict[str, list[float]]] = {p: {"rps": [], "p50": []} for p in paths}
    with tempfile.TemporaryDirectory(prefix="st-bench-proxy-") as tmp:
        (Path(tmp) / "stack.toml").write_text(STACK)
        with Stack.from_file(Path(tmp) / "stack.toml") as stack:
            direct_port = stack["cache"].port
            api = stack.toxiproxy_url
            tcp = {"name": "tcp", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{direct_port}"}
            made = httpx.post(f"{api}/proxies", json=tcp).json()
            ports = {
                "direct": direct_port,
                "proxy": stack.proxy_address("client->cache")[1],
                "proxy, tcp": int(made["listen"].rsplit(":", 1)[1]),
            }
            loop = stack.engine.faults.loop_name
            for port in ports.values():  # warm up every path
                run(tool, env, port, 50, 10_000)
            cpu: dict[str, list[tuple[float, float]]] = {label: [] for label in paths}
            for _ in range(args.rounds):
                for label, port in ports.items():
                    # this process' CPU is the proxies' (the main thread waits, the engine idles)
                    before = os.times()
                    rps, _ = run(tool, env, port, 50, args.requests)
                    after = os.times()
                    trips = 2 * args.requests  # PING_INLINE and PING_MBULK
                    cpu[label].append(((after.user - before.user) / trips * 1e6,
                                       (after.system - before.system) / trips * 1e6))  # fmt: skip
                    _, p50 = run(tool, env, port, 1, args.requests // 5)
                    results[label]["rps"].append(rps)
                    results[label]["p50"].append(p50)

    version = subprocess.run(
        [tool, "--version"], capture_output=True, text=True, env={**os.environ, **env}
    )
    print(f"# PING through a stacktest fault proxy (no toxics) vs direct, {args.rounds} rounds")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"proxy loop: {loop}, {version.stdout.strip()}")  # fmt: skip
    print(f"{'':12} {'requests/s (c=50)':>18} {'p50 ms (c=1)':>14} {'of direct':>10}")
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in results.items()}
    for label in paths:
        ratio = med[label]["rps"] / med["direct"]["rps"]
        print(f"{label:12} {med[label]['rps']:18.0f} {med[label]['p50']:14.3f} {ratio:10.0%}")
    for label in ("proxy", "proxy, tcp"):
        user = statistics.median(u for u, _ in cpu[label])
        system = statistics.median(s for _, s in cpu[label])
        print(f"{label}: the proxy's CPU per round trip: user {user:.1f} us, "
              f"system {system:.1f} us")  # fmt: skip
    ratio = med["proxy"]["rps"] / med["direct"]["rps"]
    added = (med["proxy"]["p50"] - med["direct"]["p50"]) * 1000
    print(f"throughput through the proxy: {ratio:.0%} of direct (target >= 60%)")
    print(f"added p50: {added:.0f} us (target <= 50 us)")


if __name__ == "__main__":
    main()
