"""Any command: the user's own processes, with the ready check from the stack file."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from stacktest.errors import ServiceStartError
from stacktest.providers.base import Instance, Launch, Provider
from stacktest.providers.probes import LogWatch, command_ok, http_status, tcp_open

#: What every service process gets unless its own ``env`` says otherwise: Python
#: writes its output as it goes (a ``log`` ready check, ``stacktest logs -f`` and the
#: per-test log sections see lines when they are written, not when a block is full).
DEFAULT_ENV = {"PYTHONUNBUFFERED": "1"}


def service_environment(own: Mapping[str, str]) -> dict[str, str]:
    """The environment of a service process: stacktest's, the defaults, its own ``env``.

    When stacktest runs from a virtualenv, that environment's ``bin`` comes first on
    PATH (as if it were activated), so ``uvicorn`` and friends are the ones installed
    beside the tests.
    """
    env = {**os.environ, **DEFAULT_ENV}
    if sys.prefix != sys.base_prefix:
        bin_dir = str(Path(sys.executable).parent)
        parts = env.get("PATH", "").split(os.pathsep) if env.get("PATH") else []
        if bin_dir not in parts:
            env["PATH"] = os.pathsep.join([bin_dir, *parts])
    env.update(own)
    return env


class ProcessProvider(Provider):
    kind = "process"

    def plan(self, instance: Instance) -> None:
        instance.fields.update(
            host=instance.host,
            port=str(instance.port),
            url=f"http://{instance.host}:{instance.port}",
            replica=str(instance.replica),
        )

    async def prepare(self, instance: Instance) -> Launch:
        spec = instance.spec
        argv = ["/bin/sh", "-c", instance.command[0]] if spec.shell else list(instance.command)
        cwd = instance.cwd or instance.run_dir.parent
        if not cwd.is_dir():
            raise ServiceStartError(
                instance.name,
                f"cannot start: working directory {cwd} does not exist",
                hint=f"fix services.{spec.name}.cwd (relative paths start at the stack file)",
            )
        env = service_environment(instance.env)
        if not spec.shell and argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the interpreter running stacktest (docs/stack-file.md)
        program = argv[0]
        path_env = env.get("PATH", "")
        if os.sep not in program and not shutil.which(program, path=path_env):
            raise ServiceStartError(
                instance.name,
                f"cannot start: program {program!r} not found on PATH",
                hint=f"install it, or give its full path in services.{spec.name}.command",
            )
        instance.data_dir.mkdir(parents=True, exist_ok=True)
        return Launch(argv=argv, env=env, cwd=Path(cwd))

    async def probe(self, instance: Instance) -> bool:
        check = instance.ready
        if check is None:
            return True
        if check.kind == "tcp":
            host, port = instance.host, instance.port
            if check.target:
                host, _, raw = check.target.rpartition(":")
                port = int(raw)
            return await tcp_open(host or "127.0.0.1", port, check.attempt_timeout)
        if check.kind == "http":
            url = check.target
            if url.startswith("/"):
                url = f"http://{instance.host}:{instance.port}{url}"
            return await http_status(url, check.attempt_timeout) == check.status
        if check.kind == "command":
            argv = ["/bin/sh", "-c", check.argv[0]] if check.shell else list(check.argv)
            env = service_environment(instance.env)
            return await command_ok(argv, env, instance.cwd, check.attempt_timeout)
        watch = instance.scratch.get("_log_watch")
        if not isinstance(watch, LogWatch):
            watch = LogWatch(instance.log_path, check.target)
            instance.scratch["_log_watch"] = watch
        return watch.found()
