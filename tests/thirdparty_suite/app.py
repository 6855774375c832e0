"""The project's app: GET /items counts the rows of its database (through its edge)."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(200, {"ok": True})
            return
        with psycopg.connect(os.environ["APP_DATABASE"], connect_timeout=5) as conn:
            (count,) = conn.execute("SELECT count(*) FROM items").fetchone()
        self._answer(200, {"items": count})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        print(self.address_string(), *args)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
