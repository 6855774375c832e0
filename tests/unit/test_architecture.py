"""The shape of the package: what may import what, and that every module stands alone.

Static checks read the source (every import, also those inside functions and under
TYPE_CHECKING: a cycle through a lazy import is still a cycle for the reader). The
import check runs each module in an interpreter that has imported nothing of
stacktest yet.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "stacktest"
MAX_LINES = 600
#: The one module outside cli/ that may import it: ``python -m stacktest``.
CLI_ENTRY_POINTS = {"stacktest.__main__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """The stacktest modules ``name`` imports (a ``from pkg import mod`` counts as ``mod``)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            submodules = {f"{source}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(submodules or {source})
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_graph_sees_the_package() -> None:
    assert len(MODULES) > 50
    assert "stacktest.engine.plan" in GRAPH["stacktest.engine.runtime"]
    assert "stacktest.cli.common" in GRAPH["stacktest.cli.up"]


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycles() -> None:
    # An import of a module's own parent package is implied by Python's import system
    # (the parent runs first), not a dependency one could cut: it is left out.
    graph = {name: deps - _ancestors(name) for name, deps in GRAPH.items()}
    assert _cycles(graph) == []


#: docs/architecture.md's table: each layer, and the layers it may import.
BASE = {"errors", "durations", "redact", "wait", "pgwire", "engine.procs", "engine.ports"}
LAYERS = {
    "base": {"base"},
    "containers": {"base"},  # the container engine: found, driven, reaped
    "spec": {"containers", "base"},  # (a compose image with no native server: is there an engine?)
    "providers": {"containers", "spec", "base"},
    "faults": {"spec", "base"},
    "isolation": {"spec", "base"},
    "load": {"spec", "base"},
    "observe": {"spec", "base"},
    "engine": {"providers", "faults", "observe", "containers", "spec", "base"},
    "api": {"engine", "providers", "faults", "isolation", "load", "observe", "spec", "base"},
    "plugin": {"api", "engine", "providers", "faults", "isolation", "load", "observe"}
    | {"spec", "base"},
    "report": {"load", "spec", "base"},
    "cli": {"plugin", "report", "api", "engine", "providers", "faults", "isolation", "load"}
    | {"observe", "containers", "spec", "base"},
}


def _layer(name: str) -> str:
    rest = name.removeprefix("stacktest").removeprefix(".")
    if rest in BASE:
        return "base"
    if rest in ("", "stack", "attach", "operations", "service", "client_env", "faults.nemesis"):
        return "api"  # (the nemesis drives a Stack through its operations)
    top = rest.split(".")[0]
    return {"pytest_plugin": "plugin", "__main__": "cli"}.get(top, top)


def test_layers_import_only_the_layers_above() -> None:
    assert {_layer(name) for name in MODULES} == set(LAYERS)
    wrong = sorted(
        f"{name} -> {dep}"
        for name, deps in GRAPH.items()
        for dep in deps - _ancestors(name)
        if _layer(dep) != _layer(name) and _layer(dep) not in LAYERS[_layer(name)]
    )
    assert wrong == []


def test_only_the_cli_imports_the_cli() -> None:
    offenders = {
        name: sorted(d for d in deps if d == "stacktest.cli" or d.startswith("stacktest.cli."))
        for name, deps in GRAPH.items()
        if not (name == "stacktest.cli" or name.startswith("stacktest.cli."))
        and name not in CLI_ENTRY_POINTS
    }
    assert {name: deps for name, deps in offenders.items() if deps} == {}


def test_no_module_is_longer_than_600_lines() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_every_module_imports_on_its_own() -> None:
    # One fresh interpreter that imports no stacktest module itself forks a child per
    # module: each child starts from a clean slate as a new interpreter would, at the
    # cost of a fork rather than an interpreter start-up.
    script = textwrap.dedent(
        """
        import importlib, json, os, sys, traceback
        failures = {}
        for name in json.loads(sys.argv[1]):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                try:
                    importlib.import_module(name)
                    message = b""
                except BaseException:
                    message = traceback.format_exc().encode()
                os.write(write, message)
                os._exit(0)
            os.close(write)
            with os.fdopen(read, "rb") as pipe:
                message = pipe.read()
            os.waitpid(pid, 0)
            if message:
                failures[name] = message.decode()
        print(json.dumps(failures))
        """
    )
    names = sorted(n for n in MODULES if n != "stacktest.__main__" and not n.endswith("__main__"))
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    failures = json.loads(result.stdout)
    assert failures == {}, "\n".join(failures.values())


@pytest.mark.parametrize("name", ["stacktest.__main__", "stacktest.cli.__main__"])
def test_main_modules_exist(name: str) -> None:
    assert name in MODULES
