"""Category 8 (continued): the client library's CLI, and where it finds the orchestrator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def taskflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "taskflow.cli", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**base, **(env or {})},
    )  # fmt: skip


def test_task_create_get_list(api_url, namespace) -> None:
    made = taskflow("task", "create", namespace, "linear_workflow", "--context",
                    '{"even_number": 10}', "--wait", "30", "--url", api_url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    task = json.loads(made.stdout)
    assert task["status"] == "complete" and task["result"] == 165  # ((100 + 10) * 3) / 2
    got = json.loads(taskflow("task", "get", task["task_uuid"], "--url", api_url).stdout)
    assert got["task_uuid"] == task["task_uuid"] and len(got["steps"]) == 4
    listed = json.loads(taskflow("task", "list", "--namespace", namespace, "--url", api_url).stdout)
    assert [t["task_uuid"] for t in listed["tasks"]] == [task["task_uuid"]]
    bad = taskflow("task", "create", namespace, "linear_workflow", "--context", '{"even_number": 3}',
                   "--url", api_url)  # fmt: skip
    assert bad.returncode == 1 and "must be even" in bad.stderr


def test_url_from_flag_then_environment_then_config_file(api_url, tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{api_url}"\n')
    from_file = taskflow("system", "health", env={"TASKFLOW_CONFIG": str(config)})
    assert from_file.returncode == 0 and json.loads(from_file.stdout)["status"] == "ok"
    from_env = taskflow("worker", "status", env={"TASKFLOW_URL": api_url,
                                                 "TASKFLOW_CONFIG": str(tmp_path / "none.toml")})  # fmt: skip
    assert from_env.returncode == 0 and "2 of 2 worker(s) alive" in from_env.stdout
    wrong_env = {"TASKFLOW_URL": "http://127.0.0.1:9", "TASKFLOW_CONFIG": str(config)}
    flag_wins = taskflow("worker", "list", "--url", api_url, env=wrong_env)
    assert flag_wins.returncode == 0
    unreachable = taskflow("worker", "list", env=wrong_env)
    assert unreachable.returncode == 1 and "cannot reach the orchestrator" in unreachable.stderr
    nothing = taskflow("system", "info", env={"TASKFLOW_CONFIG": str(tmp_path / "none.toml")})
    assert nothing.returncode == 1 and "no orchestrator URL" in nothing.stderr
