"""Pinned ports: `port = N` (and a compose file's published ports) are where a service is
reached; a busy one is one clear error naming who holds it; --remap-ports moves them."""

from __future__ import annotations

import dataclasses
import socket
import textwrap
from pathlib import Path

import pytest
import redis

from stacktest import Stack, load_stack
from stacktest.errors import ServiceStartError
from tests.helpers import run_stacktest

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compose_with_published(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            services:
              cache:
                image: valkey/valkey:8
                ports: ["127.0.0.1:${{CACHE_PORT:-{port}}}:6379"]
            """
        )
    )
    return path


def test_a_published_port_is_where_the_server_listens(tmp_path: Path) -> None:
    port = free_port()
    spec = load_stack(compose_with_published(tmp_path, port))
    assert spec.services["cache"].port == port
    with Stack(spec) as stack:
        assert stack["cache"].port == port
        assert redis.Redis(host="127.0.0.1", port=port).ping()  # a client with the file's port


def test_a_busy_port_names_its_holder_and_remapping_moves_it(tmp_path: Path) -> None:
    port = free_port()
    spec = load_stack(compose_with_published(tmp_path, port))
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        with pytest.raises(ServiceStartError) as caught, Stack(spec, run_dir=tmp_path / "one"):
            pass
        message = str(caught.value)
        assert f"cannot listen on 127.0.0.1:{port}" in message
        assert "in use by pid" in message and "--remap-ports" in message
        remapped = dataclasses.replace(spec, remap_ports=True)
        with Stack(remapped, run_dir=tmp_path / "two") as stack:
            assert stack["cache"].port != port
            assert redis.Redis(host="127.0.0.1", port=stack["cache"].port).ping()
    finally:
        holder.close()


def test_two_stacks_of_one_file_with_remap_ports_from_the_cli(tmp_path: Path) -> None:
    port = free_port()
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
        compose_with_published(directory, port)
    try:
        up = run_stacktest("up", "-d", cwd=first)
        assert up.returncode == 0, up.stderr + up.stdout
        taken = run_stacktest("up", "-d", cwd=second)
        assert taken.returncode == 1 and f"127.0.0.1:{port}" in taken.stderr, taken.stderr
        moved = run_stacktest("up", "-d", "--remap-ports", cwd=second)
        assert moved.returncode == 0, moved.stderr + moved.stdout
        assert f"cache: port {port} remapped to 127.0.0.1:" in moved.stdout
    finally:
        for directory in (first, second):
            run_stacktest("down", cwd=directory)
