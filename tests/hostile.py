"""Hostile stack and compose documents, for the loaders' robustness test and
benchmarks/reliability.py: real projects' files with one node (or a few) replaced by a value
of the wrong kind, plus the documents a parser meets only from an attacker (not UTF-8, deep
nesting, alias bombs, a thousand-service chain).

The promise they check: loading any of them raises :class:`ConfigError` or nothing, fast,
and never anything else.
"""

from __future__ import annotations

import copy
import json
import random
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SEED_COMPOSE = sorted((ROOT / "tests" / "compose").glob("*/compose.y*ml"))
SEED_TOML = [
    ROOT / "examples" / "quickstart" / "stack.toml",
    ROOT / "examples" / "taskflow" / "stack.toml",
    ROOT / "tests" / "thirdparty_suite" / "stack.toml",
]

#: Values of every kind a key might wrongly hold.
HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, -5, 1, 5, 70000, 10**20, 1e9, -1e9, float("inf"), float("nan"),
    "", " ", "a\x00b", "a\nb\n", "x=y", "=", "${", "$${X}", "{nope.url}", "{", "}", "-1",
    "1e20", "inf", "nan", "../../../etc/passwd", "/", "\u202e", "é", "a" * 300, [], [1], [None],
    ["a", 1, {}], {}, {"a": 1}, {1: 2}, {"": ""}, [[[[]]]], {"x": {"y": {"z": []}}},
]  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def mutate(doc: Any, rng: random.Random, edits: int = 1) -> Any:
    """``doc`` with ``edits`` random nodes replaced, renamed or deleted."""
    doc = copy.deepcopy(doc)
    for _ in range(edits):
        paths = list(_paths(doc))
        path = rng.choice(paths)
        action = rng.random()
        if action < 0.7 or not path:
            doc = _set(doc, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))
        else:
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict):
                value = parent.pop(path[-1])
                if action < 0.85:  # renamed: an integer, a newline, an unknown key
                    parent[rng.choice([7, "x\n", "unknown_key", "", "a b", True])] = value
            elif isinstance(parent, list):
                parent.pop(path[-1])
    return doc


def deep(depth: int) -> str:
    return "services:\n  a:\n    image: " + "[" * depth + "]" * depth + "\n"


def alias_bomb(levels: int) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    return "\n".join(lines) + "\nservices: {x: {image: *" + chr(ord("a") + levels - 1) + "}}\n"


def chain(n: int) -> str:
    """``n`` services, each depending on the next: a graph deeper than Python's stack."""
    run = {"build": ".", "x-stacktest": {"command": ["true"]}}
    services = {f"s{i}": {**run, "depends_on": [f"s{i + 1}"]} for i in range(n)}
    services[f"s{n}"] = run
    return yaml.safe_dump({"services": services})


def toml_chain(n: int) -> str:
    return "".join(f'[services.s{i}]\ncommand = ["true"]\ndepends_on = ["s{i + 1}"]\n'
                   for i in range(n)) + f'[services.s{n}]\ncommand = ["true"]\n'  # fmt: skip


def fixed_cases() -> list[tuple[str, str, bytes]]:
    """``(name, suffix, content)`` of the attacks no mutation finds."""
    return [
        ("latin-1 compose", ".yaml", "services:\n  a:\n    image: caf\xe9\n".encode("latin-1")),
        ("latin-1 toml", ".toml", '[services.a]\ncommand = "caf\xe9"\n'.encode("latin-1")),
        ("binary", ".yaml", bytes(range(256))),
        ("utf-16", ".toml", '[services.a]\ncommand = "x"\n'.encode("utf-16")),
        ("deep list", ".yaml", deep(5000).encode()),
        ("deep map", ".yaml", ("services:\n" + "".join(" " * (i + 1) + f"k{i}:\n"
                                                       for i in range(3000))).encode()),
        ("deep toml", ".toml", ("x = " + "[" * 5000 + "]" * 5000 + "\n").encode()),
        ("alias bomb", ".yaml", alias_bomb(9).encode()),
        ("alias bomb deeper", ".yaml", alias_bomb(12).encode()),
        ("1000-service chain", ".yaml", chain(1000).encode()),
        ("1000-service toml chain", ".toml", toml_chain(1000).encode()),
        ("a cycle", ".toml", b'[services.a]\ncommand = "x"\nshell = true\ndepends_on = ["b"]\n'
                             b'[services.b]\ncommand = "x"\nshell = true\ndepends_on = ["a"]\n'),
        ("services: {a: 1}", ".yaml", b"services: {a: 1}\n"),
        ("integer service name", ".yaml", b"services: {1: {image: postgres}}\n"),
        ("command: 5", ".yaml", b"services: {a: {image: busybox, command: 5}}\n"),
        ("NUL in a command", ".toml", b'[services.a]\ncommand = ["echo", "a\\u0000b"]\n'),
        ("NUL in run_dir", ".toml", b'[stack]\nrun_dir = "a\\u0000b"\n[services.a]\ncommand = ["x"]\n'),
        ("= in an env name", ".toml", b'[services.a]\ncommand = ["x"]\nenv = { "A=B" = "1" }\n'),
        ("tcp -1", ".toml", b'[services.a]\ncommand = ["x"]\nready = { tcp = -1 }\n'),
        ("tcp 70000", ".toml", b'[services.a]\ncommand = ["x"]\nready = { tcp = 70000 }\n'),
        ("replicas 1e9", ".toml", b'[services.a]\ncommand = ["x"]\nreplicas = 1e9\n'),
        ("start_timeout inf", ".toml", b'[services.a]\ncommand = ["x"]\nstart_timeout = inf\n'),
        ("stop_timeout nan", ".toml", b'[services.a]\ncommand = ["x"]\nstop_timeout = nan\n'),
        ("max_restarts -5", ".toml", b'[services.a]\ncommand = ["x"]\nmax_restarts = -5\n'),
        ("status 1e20", ".toml", b'[services.a]\ncommand = ["x"]\nready = { http = "/", status = 1e20 }\n'),
        ("name with a newline", ".yaml", b'services: {"a\\n": {image: postgres}}\n'),
        ("status 700", ".toml", b'[services.a]\ncommand = ["x"]\nready = { http = "/", status = 700 }\n'),
        ("tcp 0", ".toml", b'[services.a]\ncommand = ["x"]\nready = { tcp = 0 }\n'),
        ("start_timeout 0", ".toml", b'[services.a]\ncommand = ["x"]\nstart_timeout = 0\n'),
        ("replicas 100000", ".toml", b'[services.a]\ncommand = ["x"]\nreplicas = 100000\n'),
    ]  # fmt: skip


#: What the error of each fixed attack must name (the key, or the problem): refused for the
#: right reason, not another one. The rest load (a long chain is a valid stack).
EXPECTED = {
    "latin-1 compose": "not UTF-8", "latin-1 toml": "not UTF-8", "binary": "not UTF-8",
    "utf-16": "not UTF-8", "deep list": "nested too deeply", "deep map": "nested too deeply",
    "deep toml": "nested too deeply", "alias bomb": "expand to more than",
    "alias bomb deeper": "expand to more than", "a cycle": "dependency cycle",
    "services: {a: 1}": "services.a", "integer service name": "service name 1",
    "command: 5": "services.a.command", "NUL in a command": "NUL",
    "NUL in run_dir": "NUL", "= in an env name": "services.a.env",
    "tcp -1": "ready.tcp", "tcp 70000": "ready.tcp", "replicas 1e9": "replicas",
    "start_timeout inf": "start_timeout", "stop_timeout nan": "stop_timeout",
    "max_restarts -5": "max_restarts", "status 1e20": "ready.status",
    "name with a newline": "service name", "status 700": "ready.status",
    "tcp 0": "ready.tcp", "start_timeout 0": "start_timeout",
    "replicas 100000": "replicas",
}  # fmt: skip


def seeds() -> list[tuple[str, Path, Any]]:
    """``(suffix, directory, document)`` of the real files the mutations start from (a
    mutation is written beside its seed, so the files it names are there)."""
    out: list[tuple[str, Path, Any]] = []
    for path in SEED_COMPOSE:
        out.append((".yaml", path.parent, yaml.safe_load(path.read_text(encoding="utf-8"))))
    for path in SEED_TOML:
        out.append((".toml", path.parent, tomllib.loads(path.read_text(encoding="utf-8"))))
    return out


def render(suffix: str, doc: Any) -> bytes:
    """A document as file content: YAML as is; for TOML, JSON-like values inline (the
    loader's table is what matters; what TOML cannot write goes through as YAML-free
    text the TOML parser will refuse)."""
    if suffix == ".yaml":
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode()
    return toml_text(doc).encode()


def toml_text(doc: Any) -> str:
    """A small TOML writer (inline tables), enough for hostile values: not a general one."""

    def value(v: Any) -> str:
        if v is None:
            return '""'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if v != v else ("inf" if v == float("inf") else
                                         "-inf" if v == float("-inf") else repr(v))
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(str(v))

    if not isinstance(doc, dict):
        return f"x = {value(doc)}\n"
    return "".join(f"{json.dumps(str(k))} = {value(v)}\n" for k, v in doc.items())


def documents(count: int, seed: int = 0) -> Iterator[tuple[str, Path | None, str, bytes]]:
    """``count`` hostile documents ``(name, beside, suffix, content)``: the fixed attacks,
    then mutations of the seeds (one to three edits each), to be written in a copy of
    ``beside`` (the seed's directory) when it is given."""
    rng = random.Random(seed)
    for name, suffix, content in fixed_cases()[:count]:
        yield name, None, suffix, content
    bases = seeds()
    for i in range(max(0, count - len(fixed_cases()))):
        suffix, beside, base = rng.choice(bases)
        doc = mutate(base, rng, edits=rng.choice([1, 1, 2, 3]))
        yield f"mutation {i} of {beside.name}{suffix}", beside, suffix, render(suffix, doc)
