"""HTTP-level faults: find the requests in a client's byte stream, answer some with an error.

:class:`RequestSplitter` cuts HTTP/1.x requests out of the bytes a client sends
(head, then a body by ``Content-Length`` or chunked encoding). After a request
asking to ``Upgrade`` (a WebSocket) the rest of the stream is passed on as it is.
Framing that cannot be read (a Content-Length or chunk size that is not a number) is a
ValueError: the proxy resets that connection and records an event.
"""

from __future__ import annotations

from http import HTTPStatus

MAX_HEAD = 64 * 1024


class RequestSplitter:
    """Feed bytes; get back ``(request line or None, raw bytes)`` pieces in order.

    ``None`` marks bytes that are not a request of their own (after an upgrade, or a
    stream that is not HTTP): pass them on untouched.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._raw = False

    def feed(self, data: bytes) -> list[tuple[str | None, bytes]]:
        if self._raw:
            return [(None, data)]
        self._buffer += data
        out: list[tuple[str | None, bytes]] = []
        while self._buffer:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:  # not HTTP after all
                    out.append((None, self._buffer))
                    self._buffer, self._raw = b"", True
                break
            head = self._buffer[: end + 4]
            lines = head.decode("latin-1").split("\r\n")
            request_line = lines[0]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            size = _body_size(self._buffer, end + 4, headers)
            if size is None:
                break  # the body is not all here yet
            out.append((request_line, self._buffer[:size]))
            self._buffer = self._buffer[size:]
            if "upgrade" in headers or request_line.startswith("CONNECT "):
                self._raw = True
                if self._buffer:
                    out.append((None, self._buffer))
                    self._buffer = b""
                break
        return out


def _body_size(buffer: bytes, start: int, headers: dict[str, str]) -> int | None:
    """Where the request that starts the buffer ends, or None if it is not complete."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        position = start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            text = buffer[position:line_end].split(b";")[0].strip() or b"0"
            try:
                size = int(text, 16)
            except ValueError:
                raise ValueError(f"chunk size {text[:40]!r} is not a hex number") from None
            if size < 0:
                raise ValueError(f"chunk size {text[:40]!r} is negative")
            position = line_end + 2
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", position - 2)
                return None if trailer_end < 0 else trailer_end + 4
            position += size + 2
            if position > len(buffer):
                return None
    raw = headers.get("content-length", "0").strip() or "0"
    if not raw.isdigit():
        raise ValueError(f"Content-Length {raw[:40]!r} is not a length")
    length = int(raw)
    return start + length if len(buffer) >= start + length else None


def error_response(status: int, body: str = "") -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    payload = (body or f"stacktest fault: {status} {reason}\n").encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\n"
        f"Connection: close\r\n"
        f"X-Stacktest-Fault: http_error\r\n\r\n"
    ).encode() + payload
