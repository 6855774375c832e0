"""Debian packages some real-server tests need (a second PostgreSQL, memcached...),
installed the way docs/stack-file.md tells a user: ``apt-get install`` when run as root.
Never a skip: without root and without the package the test fails with the remedy."""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

#: One install at a time across xdist workers (dpkg has its own lock, and fails on it).
LOCK = Path(tempfile.gettempdir()) / "stacktest-tests-apt.lock"


def require(package: str, *binaries: str) -> None:
    """Make sure each of ``binaries`` (a name on PATH or a glob of a path) exists,
    installing ``package`` with apt-get (as root) if one is missing."""
    if all(_present(b) for b in binaries):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"this test needs {', '.join(binaries)}: install it with "
                    f"`sudo apt-get install {package}` (or your system's package)")  # fmt: skip
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(_present(b) for b in binaries):
            return  # another worker installed it meanwhile
        # (dpkg refuses to run without the sbin directories on PATH; a scrubbed one lacks them)
        path = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": path}
        install = ["apt-get", "install", "-y", "--no-install-recommends", package]
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:  # the package lists may be missing or old
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not all(_present(b) for b in binaries):
            pytest.fail(f"apt-get install {package} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _present(binary: str) -> bool:
    return bool(glob.glob(binary)) if "/" in binary else shutil.which(binary) is not None
