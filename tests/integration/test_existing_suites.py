"""Suites that know nothing of stacktest run through `stacktest test`, unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import run_stacktest

pytestmark = pytest.mark.integration
SUITE = Path(__file__).resolve().parent.parent / "thirdparty_suite"


def test_a_third_party_suite_passes_unchanged(tmp_path: Path) -> None:
    """Conventional variables (DATABASE_URL, REDIS_URL, NATS_URL), Toxiproxy's default
    port, and a stock Toxiproxy teardown (destroy_all) that must not cut the app off."""
    project = tmp_path / "project"
    shutil.copytree(SUITE, project)
    result = run_stacktest(
        "test", "--python", sys.executable, "--", "-q", "-p", "no:cacheprovider", "tests",
        cwd=project, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert "stacktest: stopped" in result.stderr


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project virtualenv with pytest and nothing else: no stacktest, no psycopg."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "pytest"],
        check=True, timeout=300,
    )  # fmt: skip
    return venv


def test_a_project_venv_without_stacktest_or_psycopg(tmp_path: Path, bare_venv: Path) -> None:
    (tmp_path / "stack.toml").write_text('[services.db]\nuse = "postgres"\ndatabases = ["app"]\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_bare.py").write_text(
        textwrap.dedent(
            """
            import importlib.util, os, socket

            def test_nothing_of_stacktest_installed_here():
                assert importlib.util.find_spec("psycopg") is None

            def test_the_stack_fixture_and_the_variables(stack):
                assert os.environ["DATABASE_URL"].endswith("/app")
                assert stack["db"].port == int(os.environ["PGPORT"]) == int(os.environ["DB_PORT"])
                socket.create_connection(("127.0.0.1", stack["db"].port), timeout=5).close()
            """
        )
    )
    result = run_stacktest(
        "test", "--python", str(bare_venv), "--", "-q", "-p", "no:cacheprovider", "tests",
        cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert f"pytest with {bare_venv / 'bin' / 'python'} (--python)" in result.stderr


def test_a_suite_assuming_well_known_ports_through_a_compose_file(tmp_path: Path) -> None:
    """localhost:5432, :6379, :4222 as the compose file publishes them, unchanged."""
    project = tmp_path / "project"
    shutil.copytree(SUITE.parent / "compose" / "wellknown", project)
    result = run_stacktest(
        "test", "-f", "docker-compose.yml", "--python", sys.executable, "--",
        "-q", "-p", "no:cacheprovider", "tests", cwd=project, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    # what is not honoured (here: which servers run for the image tags) is said before
    # the tests run, every note `config` lists
    config = run_stacktest("config", "--json", "-f", "docker-compose.yml", cwd=project)
    notes = json.loads(config.stdout)["not_honoured"]
    assert notes and all(note in result.stderr for note in notes), (notes, result.stderr)
