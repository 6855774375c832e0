"""The public surface is small and pinned; importing it is cheap."""

from __future__ import annotations

import subprocess
import sys

import stacktest


def test_all_is_pinned() -> None:
    assert sorted(stacktest.__all__) == [
        "AsyncStack",
        "AttachedStack",
        "BinaryNotFound",
        "ConfigError",
        "DependencyFailed",
        "EventuallyTimeout",
        "IsolationError",
        "Service",
        "ServiceExited",
        "ServiceStartError",
        "ServiceStartTimeout",
        "Stack",
        "StackError",
        "StackNotRunning",
        "StackStateError",
        "eventually",
        "eventually_async",
        "load_stack",
    ]
    for name in stacktest.__all__:
        assert getattr(stacktest, name) is not None


def test_errors_mix_in_builtins() -> None:
    assert issubclass(stacktest.ConfigError, ValueError)
    assert issubclass(stacktest.ServiceStartTimeout, TimeoutError)
    assert issubclass(stacktest.BinaryNotFound, FileNotFoundError)
    assert issubclass(stacktest.ServiceExited, stacktest.ServiceStartError)


def test_import_does_not_pull_engine_or_clients() -> None:
    code = (
        "import sys, stacktest; "
        "heavy = [m for m in ('asyncio', 'psycopg', 'httpx', 'rich', 'stacktest.engine.runtime') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_service_exited_message_has_code_and_log_tail() -> None:
    err = stacktest.ServiceExited("api", 3, log_tail=["boom", "bye"], waited_for="GET /health")
    text = str(err)
    assert "service 'api' exited with code 3 before it was ready" in text
    assert "| boom" in text and "| bye" in text and "GET /health" in text
    killed = stacktest.ServiceExited("api", -9)
    assert "killed by SIGKILL" in str(killed)
