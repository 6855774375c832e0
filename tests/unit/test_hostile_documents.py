"""Any document, however hostile, loads or is one ConfigError: never another exception,
never a hang. Real projects' files with random values put where they do not belong
(hypothesis, a fast profile here; `benchmarks/reliability.py` runs thousands), and the
attacks no mutation finds (tests/hostile.py)."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stacktest import load_stack
from stacktest.errors import ConfigError
from tests import hostile

SEEDS = hostile.seeds()
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """A copy of each seed's directory: a mutation is written beside the files it names."""
    root = tmp_path_factory.mktemp("seeds")
    ignore = shutil.ignore_patterns(".stacktest", "__pycache__", ".venv")
    return {beside: Path(shutil.copytree(beside, root / f"{i}-{beside.name}", ignore=ignore))
            for i, (_, beside, _) in enumerate(SEEDS)}  # fmt: skip


def load(path: Path) -> str:
    """'loaded', or the refusal's text; anything else escapes and fails the test."""
    started = time.perf_counter()
    try:
        load_stack(path)
        outcome = "loaded"
    except ConfigError as exc:
        outcome = str(exc) if exc.problem.strip() else "a ConfigError that says nothing"
    assert time.perf_counter() - started < 2.0, f"{path.name} took too long"
    return outcome


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return list(hostile._paths(node, prefix))


@given(data=st.data())  # examples: the profile's (tests/conftest.py: 150 here, 5000 long)
def test_a_mutated_real_file_loads_or_is_one_config_error(
    data: st.DataObject, projects: dict[Path, Path]
) -> None:
    suffix, beside, base = data.draw(st.sampled_from(SEEDS), label="seed")
    doc = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(_paths(doc)), label="where")
        doc = hostile._set(doc, path, data.draw(VALUES, label="value"))
    name = "fuzz.toml" if suffix == ".toml" else "fuzz-compose.yaml"
    target = projects[beside] / name
    target.write_bytes(hostile.render(suffix, doc))
    load(target)


@pytest.mark.parametrize(
    ("name", "suffix", "content"),
    [pytest.param(*case, id=case[0]) for case in hostile.fixed_cases()],
)
def test_an_attack_is_refused_in_time(name: str, suffix: str, content: bytes, tmp_path: Path) -> None:
    path = tmp_path / ("stack.toml" if suffix == ".toml" else "compose.yaml")
    path.write_bytes(content)
    outcome = load(path)
    expected = hostile.EXPECTED.get(name, "loaded")
    assert expected in outcome, f"{name}: {outcome}"


def test_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  db:\n    image: postgres\n    ports: 5432\n")
    with pytest.raises(ConfigError) as caught:
        load_stack(path)
    assert caught.value.line == 4 and "services.db.ports" in str(caught.value)
    path.write_bytes(b"services:\n  db:\n    image: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text: byte 0xe9 at line 3") as caught:
        load_stack(path)
    assert caught.value.line == 3
    path.write_text(hostile.alias_bomb(9))
    with pytest.raises(ConfigError, match=r"aliases .* expand to more than"):
        load_stack(path)
