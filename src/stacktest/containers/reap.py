"""Removing what a run left in a container engine: containers and their anonymous volumes.

Every container stacktest makes carries the label ``stacktest.run_dir`` (the run
directory's absolute path) and the run directory records the engine that holds it
(``RUN_DIR/container-engine``), written before the first container is made. So whoever
reaps a run (``down``, the watchdog after an owner's kill -9, the next ``up``) finds the
engine and removes every container of that run, running or not, even one made a moment
before the owner died: Ryuk's promise, without Ryuk.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

LABEL_RUN_DIR = "stacktest.run_dir"
LABEL_RUN_ID = "stacktest.run_id"
LABEL_SERVICE = "stacktest.service"
ENGINE_FILE = "container-engine"


def record_engine(run_dir: Path, host: str) -> None:
    (run_dir / ENGINE_FILE).write_text(host + "\n")


def recorded_engine(run_dir: Path) -> str | None:
    try:
        return (run_dir / ENGINE_FILE).read_text().strip() or None
    except OSError:
        return None


def labelled(client: Any, run_dir: Path) -> list[dict[str, Any]]:
    """The run's containers, as the engine lists them (one request: the SDK's high-level
    list asks again for each, and one removed in between would fail it)."""
    found: list[dict[str, Any]] = client.api.containers(
        all=True, filters={"label": f"{LABEL_RUN_DIR}={run_dir}"}
    )
    return found


def remove_run(run_dir: Path, *, keep_volumes: bool = False) -> list[str]:
    """Remove every container labelled with ``run_dir`` in its recorded engine; their
    names. Quiet when no engine was recorded or it cannot be reached (nothing to do, or
    nothing that can be done from here)."""
    host = recorded_engine(run_dir)
    if host is None:
        return []
    try:
        import docker

        client = docker.DockerClient(base_url=host, version="auto", timeout=30)
    except Exception:
        return []
    removed = []
    try:
        for container in labelled(client, run_dir):
            name = (container.get("Names") or [container["Id"][:12]])[0].lstrip("/")
            with contextlib.suppress(Exception):
                client.api.remove_container(container["Id"], force=True, v=not keep_volumes)
                removed.append(f"container {name}")
    except Exception:
        return removed
    finally:
        client.close()
    return removed
