"""What a fault proxy with no toxics costs: redis-benchmark PING, direct vs through the proxy.

One stack (Valkey, and a client service whose edge to it is proxied), measured in
the same run, alternating direct and proxied rounds:

- throughput: ``redis-benchmark -t ping -c 50 -n N`` (requests/s);
- latency: ``redis-benchmark -t ping -c 1 -n N``, p50 (one request at a time, so the
  figure is the round trip, not queueing).

``valkey-benchmark`` or ``redis-benchmark`` is taken from PATH; if neither is there,
Debian's redis-tools package is fetched with ``apt-get download`` (no root needed) and
unpacked into ``~/.cache/stacktest/tools``.

Run: ``.venv/bin/python benchmarks/proxy.py [--rounds 3] [--requests 100000]``.
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
    ).stdout  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    if not rows:
        raise SystemExit(f"no results from {tool}:\n{out}")
    rps = statistics.mean(float(r["rps"]) for r in rows)
    p50 = statistics.mean(float(r["p50_latency_ms"]) for r in rows)
    return rps, p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    tool, env = find_benchmark()
    with tempfile.TemporaryDirectory(prefix="st-bench-proxy-") as tmp:
        (Path(tmp) / "stack.toml").write_text(STACK)
        with Stack.from_file(Path(tmp) / "stack.toml") as stack:
            direct_port = stack["cache"].port
            proxy_port = stack.proxy_address("client->cache")[1]
            results: dict[str, dict[str, list[float]]] = {
                "direct": {"rps": [], "p50": []},
                "proxy": {"rps": [], "p50": []},
            }
            run(tool, env, direct_port, 50, 10_000)  # warm up both paths
            run(tool, env, proxy_port, 50, 10_000)
            for _ in range(args.rounds):
                for label, port in (("direct", direct_port), ("proxy", proxy_port)):
                    rps, _ = run(tool, env, port, 50, args.requests)
                    _, p50 = run(tool, env, port, 1, args.requests // 5)
                    results[label]["rps"].append(rps)
                    results[label]["p50"].append(p50)

    version = subprocess.run(
        [tool, "--version"], capture_output=True, text=True, env={**os.environ, **env}
    )
    print(f"# PING through a stacktest fault proxy (no toxics) vs direct, {args.rounds} rounds")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{version.stdout.strip()}")  # fmt: skip
    print(f"{'':8} {'requests/s (c=50)':>18} {'p50 ms (c=1)':>14}")
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in results.items()}
    for label in ("direct", "proxy"):
        print(f"{label:8} {med[label]['rps']:18.0f} {med[label]['p50']:14.3f}")
    ratio = med["proxy"]["rps"] / med["direct"]["rps"]
    added = (med["proxy"]["p50"] - med["direct"]["p50"]) * 1000
    print(f"throughput through the proxy: {ratio:.0%} of direct (target >= 60%)")
    print(f"added p50: {added:.0f} us (target <= 50 us)")


if __name__ == "__main__":
    main()
