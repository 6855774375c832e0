"""References in command, env and cwd."""

from __future__ import annotations

import pytest

from stacktest.spec.template import Ref, TemplateSyntaxError, references, render

FIELDS = {
    Ref(None, "port"): "5000",
    Ref("db", "url"): "postgresql://u:p@127.0.0.1:5432",
    Ref("db", "port"): "5432",
}


def resolve(ref: Ref) -> str:
    return FIELDS[ref]


def test_references_are_found() -> None:
    assert references("--port={port} --db {db.url}/app") == [Ref(None, "port"), Ref("db", "url")]


def test_render_fills_references() -> None:
    assert (
        render("{db.url}/app?x={port}", resolve, {}) == "postgresql://u:p@127.0.0.1:5432/app?x=5000"
    )


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("${HOME}", {"HOME": "/h"}, "/h"),
        ("${MISSING:-fallback}", {}, "fallback"),
        ("${EMPTY:-fallback}", {"EMPTY": ""}, "fallback"),
        ("${MISSING}", {}, ""),
        ("${SET:-x}/{port}", {"SET": "v"}, "v/5000"),
    ],
)
def test_environment_variables(text: str, environ: dict[str, str], expected: str) -> None:
    assert render(text, resolve, environ) == expected


def test_escapes() -> None:
    assert render('{{"a": 1}}', resolve, {}) == '{"a": 1}'
    assert render("echo $${HOME}", resolve, {"HOME": "/h"}) == "echo ${HOME}"
    assert references('{{"json": true}}') == []


@pytest.mark.parametrize("text", ["{port", "port}", "{a.b.c}", "{ }", "{9x}"])
def test_bad_syntax(text: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        references(text)
