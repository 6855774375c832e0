"""Any command: the user's own processes, with the ready check from the stack file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from stacktest.errors import ServiceStartError
from stacktest.providers.base import Instance, Launch, Provider
from stacktest.providers.probes import LogWatch, command_ok, http_status, tcp_open


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
        program = argv[0]
        path_env = instance.env.get("PATH", os.environ.get("PATH", ""))
        if os.sep not in program and not shutil.which(program, path=path_env):
            raise ServiceStartError(
                instance.name,
                f"cannot start: program {program!r} not found on PATH",
                hint=f"install it, or give its full path in services.{spec.name}.command",
            )
        instance.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **instance.env}
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
            env = {**os.environ, **instance.env}
            return await command_ok(argv, env, instance.cwd, check.attempt_timeout)
        watch = instance.scratch.get("_log_watch")
        if not isinstance(watch, LogWatch):
            watch = LogWatch(instance.log_path, check.target)
            instance.scratch["_log_watch"] = watch
        return watch.found()
