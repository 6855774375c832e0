"""Finding a container engine (Docker or Podman) and talking to it.

Where to look, in order, as the Docker CLI does and then beyond it:

1. ``DOCKER_HOST`` (``unix:///path``, ``tcp://host:port``);
2. the current Docker context (``DOCKER_CONTEXT``, else ``currentContext`` in
   ``~/.docker/config.json``; its endpoint from ``~/.docker/contexts/meta``);
3. ``/var/run/docker.sock``;
4. Podman's API socket: ``$XDG_RUNTIME_DIR/podman/podman.sock`` (rootless), then
   ``/run/podman/podman.sock`` (rootful).

The first that answers a version request is the engine. The answer is kept for the
process (:func:`find_engine`); ``stacktest doctor`` prints it, or every place tried and
why none was usable.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacktest.errors import StackError

#: How long a candidate may take to answer before the next one is tried.
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Engine:
    """A container engine that answered."""

    host: str  # the API address (unix:///var/run/docker.sock ...)
    source: str  # where it was found (DOCKER_HOST, context NAME, default socket ...)
    name: str  # Docker Engine, Podman Engine ...
    version: str
    api_version: str

    def client(self, timeout: float = 60.0) -> Any:
        """A Docker SDK client for this engine (the SDK speaks to Podman too)."""
        import docker

        # (the API version it answered with: "auto" would ask again on every client)
        version = self.api_version if self.api_version[:1].isdigit() else "auto"
        return docker.DockerClient(base_url=self.host, timeout=max(int(timeout), 1),
                                   version=version)  # fmt: skip

    def describe(self) -> str:
        api = f"API {self.api_version}"
        return f"{self.name} {self.version} ({api}) at {self.host}, from {self.source}"


class NoEngine(StackError):
    """No container engine answered; ``tried`` says where stacktest looked and why."""

    def __init__(self, tried: list[tuple[str, str]], *, need: str = "") -> None:
        self.tried = tried
        places = "\n".join(f"    {where}: {why}" for where, why in tried)
        lead = f"{need}: " if need else ""
        self.hint = (
            "start Docker or Podman (or set DOCKER_HOST to a running engine's socket); "
            "`stacktest doctor` shows the same search"
        )
        super().__init__(
            f"{lead}no container engine (Docker or Podman) is usable here; looked at:\n"
            f"{places}\n  hint: {self.hint}"
        )


def candidates(environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``(source, host)`` pairs, in the order they are tried."""
    env = dict(os.environ if environ is None else environ)
    out: list[tuple[str, str]] = []
    if env.get("DOCKER_HOST"):
        out.append(("DOCKER_HOST", env["DOCKER_HOST"]))
    context = _context_host(env)
    if context is not None:
        out.append(context)
    out.append(("the default Docker socket", "unix:///var/run/docker.sock"))
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        out.append(("rootless Podman", f"unix://{runtime}/podman/podman.sock"))
    out.append(("rootful Podman", "unix:///run/podman/podman.sock"))
    seen: set[str] = set()
    return [(s, h) for s, h in out if not (h in seen or seen.add(h))]  # type: ignore[func-returns-value]


def _context_host(env: dict[str, str]) -> tuple[str, str] | None:
    """The current Docker context's endpoint, unless it is the default one."""
    home = Path(env.get("HOME", "~")).expanduser()
    config_dir = Path(env.get("DOCKER_CONFIG") or home / ".docker")
    name = env.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((config_dir / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            name = None
    if not name or name == "default":
        return None
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest / "meta.json"
    try:
        host = json.loads(meta.read_text())["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (f"docker context {name!r}", str(host))


def probe(host: str) -> tuple[dict[str, Any] | None, str]:
    """The engine's version answer at ``host``, or None and why not."""
    if host.startswith("unix://"):
        path = Path(host.removeprefix("unix://"))
        if not path.exists():
            return None, "no such socket"
        refused = accepts(path)
        if refused:  # (the SDK would leave its socket open after a failed connect)
            return None, refused
    try:
        import docker
        import docker.errors
    except ImportError:  # pragma: no cover - a dependency of stacktest
        return None, "the Docker SDK for Python (`docker`) is not installed"
    try:
        # (a fixed, old API version: "auto" asks in the constructor, and a failure there
        # leaves the SDK's socket open; every engine answers /version at 1.24)
        client = docker.DockerClient(base_url=host, timeout=int(PROBE_TIMEOUT), version="1.24")
        try:
            return client.version(), ""
        finally:
            client.close()
    except docker.errors.DockerException as exc:
        return None, _first_line(exc)
    except Exception as exc:  # requests' and urllib3's own errors
        return None, f"{type(exc).__name__}: {_first_line(exc)}"


def accepts(path: Path) -> str:
    """Why a unix socket does not accept a connection ("" when it does)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def discover(environ: dict[str, str] | None = None) -> tuple[Engine | None, list[tuple[str, str]]]:
    """The first engine that answers, and every place tried with what it said."""
    tried: list[tuple[str, str]] = []
    for source, host in candidates(environ):
        answer, why = probe(host)
        if answer is None:
            tried.append((f"{host} ({source})", why))
            continue
        components = {c.get("Name", ""): c for c in answer.get("Components") or []}
        name = next((n for n in components if "Engine" in n), "") or "container engine"
        name = "Docker Engine" if name == "Engine" else name
        return Engine(
            host=host,
            source=source,
            name=name,
            version=str(answer.get("Version", "?")),
            api_version=str(answer.get("ApiVersion", "?")),
        ), tried
    return None, tried


@functools.cache
def _cached(key: str) -> tuple[Engine | None, tuple[tuple[str, str], ...]]:
    engine, tried = discover()
    return engine, tuple(tried)


def find_engine(*, need: str = "") -> Engine:
    """The engine to use (found once per process and per DOCKER_HOST), or NoEngine."""
    engine, tried = _cached(os.environ.get("DOCKER_HOST", ""))
    if engine is None:
        raise NoEngine(list(tried), need=need)
    return engine


def engine_available() -> bool:
    return _cached(os.environ.get("DOCKER_HOST", ""))[0] is not None


def forget() -> None:
    """Look again next time (tests that start and stop an engine)."""
    _cached.cache_clear()
