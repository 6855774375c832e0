from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def write_stack(tmp_path: Path) -> Callable[[str], Path]:
    """Write a stack.toml (dedented) into a fresh directory and return its path."""

    def write(text: str, name: str = "stack.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
