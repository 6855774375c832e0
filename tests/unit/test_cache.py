"""`stacktest cache` and `cache clean` on a cache laid out in a temp dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stacktest.cli import app
from stacktest.providers import pgdata


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("STACKTEST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(pgdata, "SHM", tmp_path / "shm")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    uid = os.getuid()
    places = {
        "cached": tmp_path / "cache" / "postgres" / "key1" / "data",
        "shm": tmp_path / "shm" / f"stacktest-pgspare-{uid}" / "key1" / "ready-a" / "data",
        "tmp": tmp_path / "tmp" / f"stacktest-pgspare-{uid}" / "key2" / "ready-b" / "data",
    }
    for path in places.values():
        path.mkdir(parents=True)
        (path / "PG_VERSION").write_text("15\n" + "x" * 2000)
    return places


def test_cache_shows_every_place_with_its_size(caches: dict[str, Path]) -> None:
    entries = pgdata.cache_entries()
    assert [(e.what, e.entries) for e in entries] == [
        ("initialised data directories", 1), ("spare copies", 1), ("spare copies", 1),
    ]  # fmt: skip
    assert all(e.size == 2003 for e in entries)
    shown = CliRunner().invoke(app, ["cache"])
    assert shown.exit_code == 0, shown.output
    assert "postgres spare copies: 1 in " in shown.output and "(2.0 KB)" in shown.output


def test_clean_removes_the_spares_and_with_all_the_cache(caches: dict[str, Path]) -> None:
    cleaned = CliRunner().invoke(app, ["cache", "clean"])
    assert cleaned.exit_code == 0, cleaned.output
    assert cleaned.output.count("removed postgres spare copies") == 2
    assert not caches["shm"].exists() and not caches["tmp"].exists()
    assert caches["cached"].exists()
    again = CliRunner().invoke(app, ["cache", "clean"])
    assert "nothing to remove" in again.output
    everything = CliRunner().invoke(app, ["cache", "clean", "--all"])
    assert "removed postgres initialised data directories" in everything.output
    assert not caches["cached"].exists()
    assert "nothing cached" in CliRunner().invoke(app, ["cache"]).output
