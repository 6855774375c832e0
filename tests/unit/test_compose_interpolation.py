"""Compose's interpolation rules, one row each; then the same through `stacktest config`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stacktest.cli import app
from stacktest.spec.compose.dotenv import DotenvError, parse_dotenv
from stacktest.spec.compose.interpolate import InterpolationError, Interpolator

ENV = {"SET": "value", "EMPTY": "", "B": "bee", "C": "sea", "PORT": "5433"}

ROWS = [
    ("plain text", "plain text"),
    ("$SET", "value"),
    ("${SET}", "value"),
    ("pre-${SET}-post", "pre-value-post"),
    ("$$SET", "$SET"),
    ("$${SET}", "${SET}"),
    ("cost: $$5", "cost: $5"),
    ("${UNSET:-default}", "default"),
    ("${EMPTY:-default}", "default"),
    ("${SET:-default}", "value"),
    ("${UNSET-default}", "default"),
    ("${EMPTY-default}", ""),
    ("${SET:+replaced}", "replaced"),
    ("${EMPTY:+replaced}", ""),
    ("${UNSET:+replaced}", ""),
    ("${EMPTY+replaced}", "replaced"),
    ("${UNSET+replaced}", ""),
    ("${UNSET:-${B}}", "bee"),
    ("${UNSET:-${ALSO_UNSET:-c}}", "c"),
    ("${UNSET-$B}", "bee"),
    ("${UNSET:-${B} ${C}}", "bee sea"),
    ("${UNSET:-{\"k\": 1}}", '{"k": 1}'),
    ("${SET:-${NEVER_LOOKED_AT}}", "value"),
    ("${PORT:-5432}:5432", "5433:5432"),
    ("${UNSET}", ""),
    ("$UNSET", ""),
]


@pytest.mark.parametrize(("template", "expected"), ROWS)
def test_interpolation(template: str, expected: str) -> None:
    assert Interpolator.over(ENV).expand(template) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${", "is not closed"),
        ("${SET", "is not closed"),
        ("$}", "must be followed by a name"),
        ("cost $5", "must be followed by a name"),
        ("end $", "must be followed by a name"),
        ("${}", "names no variable"),
        ("${ x}", "names no variable"),
        ("${x }", "after the name comes"),
        ("${x!}", "after the name comes"),
        ("${UNSET:?give it}", "required variable UNSET is missing a value: give it"),
        ("${EMPTY:?}", "required variable EMPTY is missing a value"),
        ("${UNSET?no ${B}}", "required variable UNSET is missing a value: no bee"),
    ],
)
def test_invalid_templates_and_required_variables(template: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$")):
        Interpolator.over(ENV).expand(template)


def test_required_with_only_unset_not_empty() -> None:
    assert Interpolator.over(ENV).expand("${EMPTY?unused}") == ""


def test_unset_variables_are_named_once_and_strict_refuses_them() -> None:
    interpolator = Interpolator.over(ENV)
    interpolator.expand("$NOPE ${NOPE} ${OTHER}")
    assert interpolator.unset == ["NOPE", "OTHER"]
    with pytest.raises(InterpolationError, match="NOPE is not set"):
        Interpolator.over(ENV, strict=True).expand("${NOPE}")


def test_dotenv_rules() -> None:
    text = textwrap.dedent(
        """\
        # a comment
        export EXPORTED=yes
        PLAIN = some value   # an inline comment
        HASH=no#comment
        SINGLE='literal ${PLAIN} \\n'
        DOUBLE="line one\\nquote \\" dollar \\$PLAIN ${PLAIN}"
        MULTI="first
        second"
        EARLIER=${PLAIN:-x}-${FROM_SHELL}
        EMPTY=
        PASSTHROUGH
        """
    )
    values = parse_dotenv(text, {"FROM_SHELL": "sh", "PASSTHROUGH": "through"}.get)
    assert values == {
        "EXPORTED": "yes",
        "PLAIN": "some value",
        "HASH": "no#comment",
        "SINGLE": "literal ${PLAIN} \\n",
        "DOUBLE": 'line one\nquote " dollar $PLAIN some value',
        "MULTI": "first\nsecond",
        "EARLIER": "some value-sh",
        "EMPTY": "",
        "PASSTHROUGH": "through",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [("1BAD=x", "line 1: '1BAD=x' does not start"), ('A="open\n', "line 1: the \" quote is never closed"),
     ("A=${", "line 1: A: invalid template")],
)
def test_dotenv_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DotenvError, match=message):
        parse_dotenv(text)


def test_what_a_user_sees_in_stacktest_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interpolation everywhere Compose applies it: environment, ports, command, image..."""
    monkeypatch.setenv("SET", "value")
    monkeypatch.setenv("IMAGE_TAG", "16")
    monkeypatch.delenv("UNSET_FOR_CONFIG", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)  # (output not wrapped: the message is whole)
    (tmp_path / ".env").write_text("FROM_DOTENV=dotenv\nSET=not-this-one\n")
    (tmp_path / "compose.yaml").write_text(
        textwrap.dedent(
            """\
            services:
              db:
                image: postgres:${IMAGE_TAG:-15}
                environment:
                  POSTGRES_PASSWORD: ${PW:-s3cret}
              app:
                build: .
                command: ["run", "${SET}"]
                ports: ["127.0.0.1:${APP_PORT:-8000}:8000"]
                environment:
                  A: ${SET}
                  B: ${FROM_DOTENV}
                  C: ${UNSET_FOR_CONFIG:-${SET:+replaced}}
                  D: $$literal
                  E: ${UNSET_FOR_CONFIG}
                x-stacktest:
                  command: ["python", "-m", "app", "${SET}"]
            """
        )
    )
    result = CliRunner().invoke(app, ["config", "--json", "-f", str(tmp_path / "compose.yaml")])
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    env = config["services"]["app"]["env"]
    assert (env["A"], env["B"], env["C"], env["D"], env["E"]) == (
        "value", "dotenv", "replaced", "$literal", ""
    )  # the shell wins over .env; $$ is a $
    assert config["services"]["app"]["command"] == ["python", "-m", "app", "value"]
    notes = "\n".join(config["not_honoured"])
    assert "variable UNSET_FOR_CONFIG is not set" in notes
    assert config["services"]["db"]["version"] == "16"  # the tag, interpolated: the version
    assert config["services"]["app"]["port"] == 8000  # ${APP_PORT:-8000}, published: pinned
    strict = CliRunner().invoke(app, ["config", "--strict", "-f", str(tmp_path / "compose.yaml")])
    assert strict.exit_code == 2 and "UNSET_FOR_CONFIG is not set (strict" in strict.output
