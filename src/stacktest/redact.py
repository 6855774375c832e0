"""Hiding secrets in text shown to people: one redaction for every exit (the CLI's output,
``stacktest logs``, the per-test log sections, failure hints and errors, the run report).

What is hidden:

- the password of ``scheme://user:password@host`` URLs;
- the value of a ``key=value`` / ``key: value`` pair whose key names a secret
  (``password=x`` in a libpq DSN, ``POSTGRES_PASSWORD=x``, ``"api_token": "x"``);
- the argument of a secret flag (``--requirepass x``, ``--pass=x``);
- every secret this process has been told of (:func:`remember`: the stack's passwords,
  given or generated), wherever it appears, whole.

Over-hiding (a ``passthrough=1`` shown as ``passthrough=****``) is accepted; showing a
password is not.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable
from typing import TextIO

MASK = "****"
#: Shorter values are not hidden by themselves (``a`` would hide every a).
MIN_SECRET = 4

_URL_PASSWORD = re.compile(r"(://[^:/@\s'\"]*:)[^@\s'\"]+@")
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:password|passwd|pwd|pass|secret|token|requirepass|masterauth)"
_PAIR = re.compile(
    rf"(?i)(\b{_SECRET_NAME}['\"]?\s*(?:=|:\s)\s*)('[^']*'|\"[^\"]*\"|[^\s,;&'\")\]}}]+)"
)
_FLAG = re.compile(
    r"(?i)(--(?:requirepass|masterauth|pass|password|auth|token|secret)(?:=|\s+))(\S+)"
)

_known: set[str] = set()
_lock = threading.Lock()


def remember(secrets: Iterable[object]) -> None:
    """Hide these values wherever this process shows text from now on."""
    fresh = {str(s) for s in secrets if s is not None and len(str(s)) >= MIN_SECRET}
    if fresh - _known:
        with _lock:
            _known.update(fresh)


def _pair(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[0] in "'\"" else ""
    bare = value.strip("'\"")
    if bare == MASK or bare.startswith(("{", "$")):
        return match.group(0)  # already hidden; a reference ({db.password}, ${PW}) is no secret
    return f"{match.group(1)}{quote}{MASK}{quote}"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret hidden (see the module's docstring); ``secrets``: more
    values to hide, besides the remembered ones."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(rf"\1{MASK}@", text)
    text = _PAIR.sub(_pair, text)
    text = _FLAG.sub(lambda m: m.group(1) + MASK, text)
    values = {s for s in secrets if s and len(s) >= MIN_SECRET} | _known
    for secret in sorted(values, key=len, reverse=True):  # longest first: one inside another
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingWriter(io.TextIOBase):
    """A text stream that hides secrets in what is written to it, line by line (a secret
    is never cut in two by a write boundary within a line)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._partial = ""

    def write(self, text: str) -> int:
        data = self._partial + text
        head, newline, tail = data.rpartition("\n")
        if newline:
            self.stream.write(redact(head + newline))
            self._partial = tail
        else:
            self._partial = data
        if len(self._partial) > 65536:  # no newline for long: show it anyway
            self.stream.write(redact(self._partial))
            self._partial = ""
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.stream.write(redact(self._partial))
            self._partial = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def writable(self) -> bool:
        return True
