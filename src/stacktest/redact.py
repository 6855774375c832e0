"""Hiding secrets in text shown to people: the CLI's tables, the run report."""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Hide the password of ``scheme://user:password@host`` URLs, and every value of
    ``secrets`` wherever it appears."""
    text = _URL_PASSWORD.sub(r"\1****@", text)
    for secret in secrets:
        text = text.replace(secret, "****")
    return text
