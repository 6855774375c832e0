"""A test server with a known service time: every request takes ``SERVICE_MS`` (10 ms).

``POST /stall?ms=1000`` freezes every request for that long (the wrk2 demonstration):
requests that arrive during the stall, and those in progress, wait it out.
``GET /fast`` answers at once. ``GET /stats`` answers the median time the server itself spent
on the slow requests since the last ``/stats`` (milliseconds, its own clock), so a test can
compare a client's measurement with what really happened on this machine. Run: ``python load_server.py PORT [SERVICE_MS]``.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SERVICE_MS = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
stall_until = 0.0
lock = threading.Lock()
handled_ms: list[float] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms ACK wait

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"ok") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/fast":
            self._reply(200)
            return
        if url.path == "/stats":
            with lock:
                taken = sorted(handled_ms)
                handled_ms.clear()
            median = taken[len(taken) // 2] if taken else 0.0
            self._reply(200, f"{median:.3f}".encode())
            return
        started = time.perf_counter()
        wait = stall_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        time.sleep(SERVICE_MS / 1000)
        with lock:
            handled_ms.append((time.perf_counter() - started) * 1000)
        self._reply(200)

    def do_POST(self) -> None:
        global stall_until
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if url.path == "/stall":
            ms = float(parse_qs(url.query).get("ms", ["1000"])[0])
            with lock:
                stall_until = time.monotonic() + ms / 1000
            self._reply(200)
            return
        self._reply(404)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("serving", flush=True)
    server.serve_forever()
