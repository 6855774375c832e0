"""A container service's process: ``python -m stacktest.containers.runner SPEC.json``.

The engine runs this in place of a server binary, so a container service is an instance
like any other: its output (the container's, as it is written) is the service log, its
exit code is the container's, and SIGTERM stops it gracefully (the container's own stop
signal, then SIGKILL after its stop timeout). It reuses a stopped container of the same
name, so ``stop``/``start`` and ``restart`` keep the container's files and volumes; the
stack's end (or ``reset``) removes it.

While the container runs, its listening sockets are checked twice a second: one bound
beyond loopback (``0.0.0.0``, a LAN address) ends the service with a message naming the
address and the remedy, since a test stack must not be reachable from the network.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stacktest.containers.listeners import beyond_loopback

#: Exit code when the container listened beyond loopback (the log says where).
EXPOSED = 3
#: Exit code when the engine refused to create or start the container.
ENGINE_ERROR = 4


def say(text: str) -> None:
    sys.stdout.write(f"stacktest: {text}\n")
    sys.stdout.flush()


def get_or_create(client: Any, spec: dict[str, Any]) -> Any:
    import docker.errors

    try:
        container = client.containers.get(spec["name"])
    except docker.errors.NotFound:
        container = None
    if container is not None:
        if container.status in ("running", "paused", "restarting"):
            container.kill()  # a previous runner was killed with it still running
            container.wait(timeout=30)
        return container
    return client.containers.create(
        spec["image"],
        command=spec.get("command"),
        entrypoint=spec.get("entrypoint"),
        name=spec["name"],
        environment=spec.get("env") or {},
        labels=spec.get("labels") or {},
        network_mode="host",
        extra_hosts=spec.get("extra_hosts") or {},
        stop_signal=spec.get("stop_signal") or None,
        working_dir=spec.get("working_dir") or None,
        user=spec.get("user") or None,
        volumes=spec.get("volumes") or None,
        detach=True,
    )


def stream_logs(container: Any, since: float, done: threading.Event) -> None:
    """The container's output into ours (the service log), as it is written."""
    out = sys.stdout.buffer
    try:
        for chunk in container.logs(stream=True, follow=True, since=since):
            out.write(chunk)
            out.flush()
    except Exception as exc:  # the engine went away: say so, the exit is judged elsewhere
        say(f"log stream ended: {exc}")
    finally:
        done.set()


def exposed(container: Any) -> list[str]:
    """Addresses beyond loopback the container's processes listen on."""
    try:
        top = container.top()
        column = top["Titles"].index("PID")
        pids = [int(row[column]) for row in top.get("Processes") or []]
    except Exception:
        try:
            container.reload()
            pids = [int(container.attrs["State"]["Pid"])]
        except Exception:
            return []
    return beyond_loopback(pids)


def exposed_message(service: str, found: list[str]) -> str:
    return (
        f"{service} listens beyond loopback: {', '.join(found)}; a test stack must not be "
        "reachable from the network. Remedy: make it bind 127.0.0.1 (its command or "
        "environment, e.g. a --host/--bind flag), as containers here share the host's "
        "network (docs/containers.md)"
    )


def watch_listeners(container: Any, finished: threading.Event, exposed_to: list[str]) -> None:
    while not finished.wait(0.5):
        found = exposed(container)
        if found:
            exposed_to.extend(found)
            finished.set()
            return


def main(argv: list[str]) -> int:
    import docker

    spec = json.loads(Path(argv[0]).read_text())
    image = spec.get("image_name") or spec["image"]
    client = docker.DockerClient(base_url=spec["host"], version="auto", timeout=120)
    stopping = threading.Event()
    finished = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()
        finished.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        container = get_or_create(client, spec)
        since = time.time()
        container.start()
    except docker.errors.DockerException as exc:
        say(f"the engine could not start {spec['name']} ({image}): {exc}")
        return ENGINE_ERROR
    say(f"container {container.short_id} ({image}) started")
    try:  # its first process, as this host sees it: the resource sampler's root for it
        container.reload()
        Path(spec["pid_file"]).write_text(str(container.attrs["State"]["Pid"]))
    except (KeyError, OSError, docker.errors.DockerException):
        pass
    logs_done = threading.Event()
    threading.Thread(target=stream_logs, args=(container, since, logs_done), daemon=True).start()
    seen: list[str] = []
    threading.Thread(target=watch_listeners, args=(container, finished, seen), daemon=True).start()
    result: dict[str, Any] = {}

    def wait() -> None:
        try:
            result.update(container.wait())
        except Exception as exc:
            result["Error"] = str(exc)
        finished.set()

    threading.Thread(target=wait, daemon=True).start()
    while not finished.wait(0.5):
        pass
    if seen:
        say(exposed_message(spec["service"], seen))
        container.kill()
        logs_done.wait(2)
        return EXPOSED
    if stopping.is_set() and "StatusCode" not in result:
        try:
            container.stop(timeout=int(spec.get("stop_timeout", 10)))
        except docker.errors.DockerException as exc:
            say(f"stopping the container: {exc}")
        deadline = time.monotonic() + 10
        while "StatusCode" not in result and time.monotonic() < deadline:
            time.sleep(0.05)
    logs_done.wait(2)
    code = result.get("StatusCode")
    return int(code) if isinstance(code, int) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
