"""A canary password, given to the stack, is found in none of stacktest's outputs: the
CLI's (every command but `env`, which prints it on purpose), `logs` (a service prints its
URL), a failed start's hint, runner.log, the report, `config` of a compose file's DSN, and no
process's command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import run_stacktest

pytestmark = pytest.mark.integration
Write = Callable[..., Path]
PY = sys.executable
CANARY = "Canary-7f3e9b1d"
CACHE_CANARY = "Canary-cache-51ac"


def cmdlines() -> str:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return "\n".join(out)


def test_a_canary_password_is_in_no_output(write_stack: Write) -> None:
    path = write_stack(f"""
[services.db]
use = "postgres"
password = "{CANARY}"

[services.cache]
use = "valkey"
password = "{CACHE_CANARY}"

[services.app]
command = ["{PY}", "-c", "import os, time; print('connecting to', os.environ['DB'], flush=True); time.sleep(60)"]
env = {{ DB = "{{db.url}}", CACHE = "{{cache.url}}" }}
ready = {{ log = "connecting" }}
""")
    project = path.parent
    outputs: dict[str, str] = {}

    def run(*args: str) -> None:
        done = run_stacktest(*args, cwd=project)
        outputs[" ".join(args)] = done.stdout + done.stderr
        assert done.returncode == 0, done.stdout + done.stderr

    try:
        run("up", "-d")
        assert CANARY not in cmdlines() and CACHE_CANARY not in cmdlines()
        for command in (("status",), ("status", "--json"), ("logs",), ("logs", "app"),
                        ("config",), ("config", "--json"), ("report",)):  # fmt: skip
            run(*command)
        loose = [f"{p} {p.stat().st_mode & 0o777:o}" for p in (project / ".stacktest").rglob("*")
                 if not p.is_symlink() and p.stat().st_mode & 0o077]  # fmt: skip
        assert not loose, "files and directories of the run are the user's alone (0600/0700)"
        env = run_stacktest("env", cwd=project)
        assert CANARY in env.stdout  # asked for: `eval "$(stacktest env)"`
        assert f"connecting to postgresql://postgres:{CANARY}@" in (
            project / ".stacktest" / "logs" / "app.log"
        ).read_text()  # the service's own log is its output, unchanged
    finally:
        run("down")
    reports = [p.read_text() for p in (project / ".stacktest").rglob("*") if p.suffix in (".md", ".html")]
    assert reports, "the report was written"
    leaked = {name: text for name, text in outputs.items() if CANARY in text or CACHE_CANARY in text}
    assert not leaked, leaked
    assert not any(CANARY in text for text in reports)
    assert "connecting to postgresql://postgres:****@" in outputs["logs app"]


def test_a_failed_start_hides_the_password_in_its_hint(write_stack: Write) -> None:
    path = write_stack(f"""
[services.db]
use = "postgres"
password = "{CANARY}"

[services.app]
command = ["{PY}", "-c", "raise SystemExit(3)", "--db", "{{db.url}}", "dbname=x password={CANARY}"]
ready = {{ log = "never printed" }}
depends_on = ["db"]
""")
    project = path.parent
    for args in (("up",), ("up", "-d")):
        done = run_stacktest(*args, cwd=project)
        assert done.returncode != 0
        text = done.stdout + done.stderr
        assert "run it by hand to see why" in text and "postgresql://postgres:****@" in text, text
        assert CANARY not in text, text
    assert CANARY not in (project / ".stacktest" / "runner.log").read_text()


def test_config_hides_a_password_inside_a_dsn(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(f"""
services:
  db:
    image: postgres:16
    environment: {{POSTGRES_PASSWORD: "{CANARY}"}}
  app:
    build: .
    environment:
      PG_DSN: "host=db user=postgres password={CANARY} dbname=postgres"
      API_TOKEN: "{CACHE_CANARY}"
    x-stacktest: {{command: ["true"]}}
""")
    for args in (("config",), ("config", "--json")):
        done = run_stacktest(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert CANARY not in done.stdout + done.stderr and CACHE_CANARY not in done.stdout


def test_a_failed_starts_error_hides_what_the_service_printed(write_stack: Write) -> None:
    """In a library user's traceback (no CLI in between): the log lines quoted in the error
    show the URL the service printed, its password hidden."""
    from stacktest import ServiceStartError, Stack

    path = write_stack(f"""
[services.db]
use = "postgres"
password = "{CANARY}"

[services.app]
command = ["{PY}", "-c", "import os; print('cannot reach', os.environ['DB']); raise SystemExit(2)"]
env = {{ DB = "{{db.url}}" }}
ready = {{ log = "never printed" }}
depends_on = ["db"]
""")
    with pytest.raises(ServiceStartError) as caught:
        Stack.from_file(path).start()
    text = str(caught.value)
    assert "cannot reach postgresql://postgres:****@" in text and CANARY not in text
