"""A compose service with no native equivalent, as a container service (docs/containers.md).

When a container engine is available, a service whose image stacktest cannot run natively
(``image: elasticsearch:8``, ``build:`` without ``x-stacktest.command``) runs as that image.
Containers share the host's network: the container listens on the host's loopback at its
own port (the container port of its ``ports``/``expose``), reaches the other services by
their names (each resolves to 127.0.0.1) and their ports (addresses in its environment are
rewritten to where they listen, as for a local process). Its bind mounts are mounted as
written; a named volume is the directory ``RUN_DIR/volumes/NAME`` (kept across runs,
``down -v`` removes it), mounted, as local processes see it too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from stacktest.spec.compose.values import is_bind, literal, tmpfs_targets, volume_parts


class Translator(Protocol):
    named_volumes: set[str]
    source: Path

    def note(self, key: str, what: str) -> None: ...

    def rewrite_env(self, env: dict[str, str], ports: dict[str, int | None],
                    own: int | None) -> dict[str, str]: ...  # fmt: skip


def container_table(
    t: Translator, key: str, name: str, body: Mapping[str, Any], env: dict[str, str],
    ports: dict[str, int | None],
) -> dict[str, Any]:  # fmt: skip
    """The stack.toml table of a compose service that runs as a container."""
    table: dict[str, Any] = {"env": t.rewrite_env(env, ports, own=None)}
    if body.get("image"):
        table["image"] = str(body["image"])
    build = body.get("build")
    if build is not None:
        build = {"context": build} if isinstance(build, str) else dict(build)
        table["build"] = {k: build[k] for k in ("context", "dockerfile", "args", "target")
                          if k in build}  # fmt: skip
        args = table["build"].get("args")
        if isinstance(args, list):  # ["KEY=value"] form
            table["build"]["args"] = dict(str(a).partition("=")[::2] for a in args)
        for sub in sorted(set(build) - {"context", "dockerfile", "args", "target"}):
            t.note(f"{key}.build.{sub}", "ignored: the engine builds with its defaults")
    for field in ("command", "entrypoint"):
        value = body.get(field)
        if value is not None:
            table[field] = [str(v) for v in value] if isinstance(value, list) else str(value)
    if isinstance(table.get("entrypoint"), str):
        table["entrypoint"] = ["/bin/sh", "-c", table["entrypoint"]]
    for field in ("user", "working_dir"):
        if body.get(field) is not None:
            table[field] = str(body[field])
    own = ports.get(name)
    if own is not None:
        table["port"] = own  # host networking: it listens where the image listens
    volumes = []
    for item in body.get("volumes") or []:
        parts = volume_parts(item)
        if parts is None:  # an anonymous volume: the container's own files (kept across
            continue  # its restarts, removed with it), which is what it is for here
        source, target, read_only = parts
        if is_bind(source):  # a host path, as Compose resolves it
            host = literal(str((t.source.parent / os.path.expanduser(source)).resolve()))
        else:  # a named volume: RUN_DIR/volumes/NAME, as for a local process
            t.named_volumes.add(source)
            host = f"{{run_dir}}/volumes/{source}"
        volumes.append(f"{host}:{target}:{'ro' if read_only else 'rw'}")
    if volumes:
        table["volumes"] = volumes
    for target in tmpfs_targets(body):
        t.note(f"{key}.tmpfs", f"{target}: the container's own directory (not a tmpfs)")
    return table
