"""How ``stacktest test`` runs the project's pytest: which interpreter, and how
stacktest's plugin gets into it.

The interpreter, first found wins:

1. ``--python PATH`` (an interpreter, or a virtualenv directory);
2. the active virtualenv (``$VIRTUAL_ENV/bin/python``);
3. ``python3`` / ``python`` on PATH;
4. the interpreter running stacktest.

If that interpreter has stacktest installed, its pytest loads the plugin by itself
(the ``pytest11`` entry point). If not, stacktest's own package, and nothing else of
its environment, is put on ``PYTHONPATH`` (a directory holding only a link to it) and
the plugin is loaded with ``-p``: the project's environment needs pytest, and no
driver of stacktest's choosing (it may hold a development checkout of psycopg).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PLUGIN = "stacktest.pytest_plugin"


def resolve_python(explicit: Path | None) -> tuple[str, str]:
    """(interpreter, why it was chosen); raises ValueError naming the problem when the
    explicit or the active virtualenv's interpreter cannot run pytest."""
    if explicit is not None:
        candidate = explicit / "bin" / "python" if explicit.is_dir() else explicit
        return _checked(str(candidate), "--python")
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and (Path(venv) / "bin" / "python").exists():
        return _checked(str(Path(venv) / "bin" / "python"), "the active virtualenv")
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found and check_python(found) is None:
            return found, f"{name} on PATH"
    return sys.executable, "stacktest's own interpreter (no python3 with pytest on PATH)"


def _checked(python: str, why: str) -> tuple[str, str]:
    problem = check_python(python, why)
    if problem:
        raise ValueError(problem)
    return python, why


def check_python(python: str, why: str = "") -> str | None:
    """None if ``python`` runs pytest; else what is wrong, with a remedy."""
    label = f"{python} ({why})" if why else python
    try:
        probe = subprocess.run(
            [python, "-c", "import pytest"], capture_output=True, text=True, timeout=60
        )
    except OSError as exc:
        return f"cannot run {label}: {exc}\n  hint: pass --python PATH to an interpreter"
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"{label} cannot run pytest: {said}\n"
            f"  hint: `{python} -m pip install pytest`, or pass --python PATH"
        )
    return None


def plugin_wiring(python: str, shim_dir: Path) -> tuple[list[str], dict[str, str]]:
    """(extra pytest arguments, extra environment) that load stacktest's plugin."""
    if _has_stacktest(python):
        return [], {}
    package = Path(__file__).resolve().parent.parent  # .../stacktest
    shim_dir.mkdir(parents=True, exist_ok=True)
    link = shim_dir / "stacktest"
    if not (link.is_symlink() and link.resolve() == package):
        link.unlink(missing_ok=True)
        link.symlink_to(package, target_is_directory=True)
    path = os.pathsep.join(p for p in (str(shim_dir), os.environ.get("PYTHONPATH", "")) if p)
    return ["-p", PLUGIN], {"PYTHONPATH": path}


def _has_stacktest(python: str) -> bool:
    probe = subprocess.run(
        [python, "-c", "import importlib.metadata as m; m.distribution('stacktest')"],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0
