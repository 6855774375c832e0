"""Pure logic of the container backend: where an engine is looked for, socket addresses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from stacktest.containers.engine import candidates, discover
from stacktest.containers.listeners import _address, is_loopback


def test_the_search_order_is_docker_host_context_default_socket_then_podman(
    tmp_path: Path,
) -> None:
    docker_dir = tmp_path / ".docker"
    digest = hashlib.sha256(b"colima").hexdigest()
    meta = docker_dir / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (docker_dir / "config.json").write_text(json.dumps({"currentContext": "colima"}))
    (meta / "meta.json").write_text(
        json.dumps({"Name": "colima", "Endpoints": {"docker": {"Host": "unix:///colima.sock"}}})
    )
    env = {"HOME": str(tmp_path), "DOCKER_HOST": "tcp://127.0.0.1:2375",
           "XDG_RUNTIME_DIR": "/run/user/1000"}  # fmt: skip
    assert candidates(env) == [
        ("DOCKER_HOST", "tcp://127.0.0.1:2375"),
        ("docker context 'colima'", "unix:///colima.sock"),
        ("the default Docker socket", "unix:///var/run/docker.sock"),
        ("rootless Podman", "unix:///run/user/1000/podman/podman.sock"),
        ("rootful Podman", "unix:///run/podman/podman.sock"),
    ]
    # the default context, or none, adds nothing; DOCKER_CONTEXT wins over the file
    (docker_dir / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert candidates({"HOME": str(tmp_path)})[0][0] == "the default Docker socket"
    env = {"HOME": str(tmp_path), "DOCKER_CONTEXT": "colima"}
    assert candidates(env)[0] == ("docker context 'colima'", "unix:///colima.sock")


def test_no_engine_says_what_each_place_said(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    import socket

    with socket.socket(socket.AF_UNIX) as s:  # a socket file nobody listens on
        s.bind(str(stale))
    engine, tried = discover({"DOCKER_HOST": f"unix://{stale}", "HOME": str(tmp_path)})
    if engine is not None:
        pytest.fail(f"an engine answered at {engine.host}: this test needs none reachable")
    assert tried[0] == (f"unix://{stale} (DOCKER_HOST)", "Connection refused")
    assert any(why == "no such socket" for _, why in tried[1:])


@pytest.mark.parametrize(
    ("raw", "address", "port", "loopback"),
    [
        ("0100007F:1F90", "127.0.0.1", 8080, True),
        ("00000000:0050", "0.0.0.0", 80, False),
        ("0101A8C0:01BB", "192.168.1.1", 443, False),
        ("00000000000000000000000001000000:0016", "::1", 22, True),
        ("00000000000000000000000000000000:0016", "::", 22, False),
        ("0000000000000000FFFF00000100007F:0016", "::ffff:7f00:1", 22, True),  # ::ffff:127.0.0.1
    ],
)
def test_proc_net_addresses_are_read_in_host_order(
    raw: str, address: str, port: int, loopback: bool
) -> None:
    assert _address(raw) == (address, port)
    assert is_loopback(address) is loopback


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[services.a]\nimage = ""\n', "the image name is empty"),
        ('[services.a]\nimage = "x"\nbackend = "native"\n', "is a container"),
        ('[services.a]\nuse = "postgres"\nbackend = "container"\n', "cannot run as a container yet"),
        ('[services.a]\ncommand = ["x"]\nbackend = "container"\n', "give its image instead"),
        ('[services.a]\nimage = "x"\nbackend = "vm"\n', "unknown backend 'vm'"),
        ('[services.a]\nbuild = "nowhere"\n', "build context 'nowhere' not found"),
        ('[services.a]\nbuild = { context = ".", dockerfile = "Nope" }\n', "'Nope' not found"),
        ('[services.a]\nbuild = { context = ".", platform = "arm" }\n', "unknown key"),
        ('[services.a]\nimage = "x"\nshell = true\n', "`shell` is not for a container service"),
        ('[services.a]\nimage = "x"\nreplicas = 0\n', "replicas must be 1 to 100"),
        ('[services.a]\nimage = "x"\nentrypoint = "sh"\n', "(a list of strings), got a string"),
    ],
)
def test_container_keys_are_checked(write_stack, text: str, needle: str) -> None:
    from stacktest.errors import ConfigError
    from stacktest.spec.load import load_stack

    with pytest.raises(ConfigError) as caught:
        load_stack(write_stack(text))
    assert needle in str(caught.value)


def test_a_container_service_as_parsed(write_stack, tmp_path: Path) -> None:
    from stacktest.spec.load import load_stack

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    spec = load_stack(write_stack(
        '[services.a]\nbuild = { context = "app", args = { V = 2 } }\n'
        'command = "httpd -p \'127.0.0.1:{port}\'"\nready = { command = ["true"] }\n'
    ))  # fmt: skip
    a = spec["a"]
    assert a.is_container and a.own_ready_check and a.has_health
    assert a.command == ("httpd", "-p", "127.0.0.1:{port}")
    assert a.options["build"] == {"context": str(tmp_path / "app"), "dockerfile": "Dockerfile",
                                  "args": {"V": "2"}}  # fmt: skip
