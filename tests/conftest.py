from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# Many stacks run at once here (xdist, pytester sessions): none of them takes Toxiproxy's
# well-known port 8474 unless its stack file asks for it (the third-party suite does).
os.environ["STACKTEST_TOXIPROXY_PORT"] = "0"
#: A project of its own, run through `stacktest test` by a test, not collected here.
collect_ignore = ["thirdparty_suite", "compose"]


@pytest.fixture
def write_stack(tmp_path: Path) -> Callable[[str], Path]:
    """Write a stack.toml (dedented) into a fresh directory and return its path."""

    def write(text: str, name: str = "stack.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
