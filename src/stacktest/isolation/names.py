"""Readable, unique names for per-test resources: ``t_checkout_total_k3x9q``."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits
MAX_STEM = 32


def slug(text: str, max_length: int = MAX_STEM) -> str:
    """Lowercase letters, digits and single underscores, at most ``max_length`` long."""
    text = re.sub(r"\[.*\]$", lambda m: "_" + m.group(0)[1:-1], text)  # parametrize ids
    cleaned = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    cleaned = cleaned.removeprefix("test_") or cleaned
    return cleaned[:max_length].rstrip("_") or "x"


def unique_name(test_name: str, prefix: str = "t_") -> str:
    """``t_<test>_<5 random chars>``: valid as a SQL identifier, key prefix or NATS token."""
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(5))
    return f"{prefix}{slug(test_name)}_{suffix}"
