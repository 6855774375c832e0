"""Every command answers --help, through the app and through ``python -m``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from stacktest.cli import app


def _commands() -> list[list[str]]:
    group = typer.main.get_group(app)
    found = []
    for name, command in group.commands.items():
        found.append([name])
        for sub in getattr(command, "commands", {}):
            found.append([name, sub])
    return found


COMMANDS = _commands()


def test_the_app_has_every_command_group() -> None:
    names = {c[0] for c in COMMANDS}
    assert {"up", "down", "test", "report", "status", "logs", "exec", "env", "doctor"} <= names
    assert {"config", "restart", "fault", "kill", "pause", "cache", "load"} <= names
    assert ["fault", "add"] in COMMANDS and ["cache", "clean"] in COMMANDS


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_has_help(argv: list[str]) -> None:
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-m", "stacktest", "--help"], "fault"),
        (["-m", "stacktest", "load", "--help"], "Run open-model load"),
        (["-m", "stacktest.cli", "load", "--help"], "Run open-model load"),
        (["-m", "stacktest.cli", "--help"], "status"),
    ],
)
def test_python_dash_m(argv: list[str], needle: str) -> None:
    result = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert needle in result.stdout
