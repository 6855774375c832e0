"""Launching an instance's process, and waiting until it is ready.

A launch asks the provider how to start the instance (argv, env, user), starts it in
a session of its own, tagged with the run's id (so a sweep can find what a dead
owner left), its output going straight to its log file (the fd is handed to the
child, so the log outlives the owner).

Readiness is one probe attempt per call, the provider's; the wait owns polling
(from 5 ms, backing off to 100 ms) and the deadline, and watches the process' exit
at the same time, so "exited before ready" is reported the moment it happens.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from stacktest.engine import procs
from stacktest.engine.instances import Journal, Running
from stacktest.engine.rundir import RunDir, log_tail
from stacktest.errors import (
    BinaryNotFound,
    ServiceExited,
    ServiceRefused,
    ServiceStartError,
    ServiceStartTimeout,
    StackError,
)
from stacktest.providers.base import Instance
from stacktest.redact import redact

#: Run by /bin/sh in the new process: write its pid to the record (stdin), then become
#: the service's program (same pid), stdin from /dev/null.
RECORD_AND_EXEC = 'echo $$ >&0 && exec "$@" </dev/null'
FIRST_POLL = 0.005
MAX_POLL = 0.1


class Launcher:
    """Starts instances' processes for one run, and waits for them to be ready."""

    def __init__(self, run_id: str, run_dir: RunDir, journal: Journal) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.journal = journal

    async def launch(self, run: Running) -> None:
        """Start the instance's process; return once it is running (not yet ready)."""
        instance = run.instance
        run.state = "starting"
        run.stopping = False
        self.journal.emit(instance.name, "starting")
        try:
            launch = await run.provider.prepare(instance)
        except BinaryNotFound as exc:  # name the service (and the image it stands for)
            image = instance.spec.options.get("image")
            who = f"{instance.spec.name!r} ({f'image {image}' if image else instance.spec.use})"
            raise BinaryNotFound(
                exc.binary, looked_in=exc.looked_in, hint=exc.hint, service=who
            ) from None
        env = {
            **launch.env,
            procs.TAG_RUN_ID: self.run_id,
            procs.TAG_RUN_DIR: str(self.run_dir.path),
            procs.TAG_SERVICE: instance.name,
        }
        instance.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(instance.log_path, "ab") as log:
            if run.restarts:
                log.write(f"--- stacktest: restart {run.restarts} ---\n".encode())
                log.flush()
            _check_executable(instance, launch.argv[0], launch.env, launch.cwd)
            # the process writes its pid to its record, then becomes the server
            record = self.run_dir.spawn_record(instance.name)
            try:
                run.proc = await asyncio.create_subprocess_exec(
                    "/bin/sh", "-c", RECORD_AND_EXEC, "sh", *launch.argv,
                    stdin=record,
                    stdout=log,
                    stderr=log,
                    cwd=launch.cwd,
                    env=env,
                    start_new_session=True,
                    user=launch.user,
                )
            except OSError as exc:
                raise ServiceStartError(
                    instance.name,
                    f"could not be started: {exc}",
                    hint=f"check services.{instance.spec.name}.command and cwd",
                ) from None
            finally:
                os.close(record)
        run.started_at = time.time()
        run.start_ticks = procs.start_ticks(run.proc.pid)
        run.exit_code = None
        run.exit_task = asyncio.ensure_future(run.proc.wait())
        run.state = "started"
        self.journal.emit(instance.name, "started", pid=run.proc.pid)
        self.journal.write_state()

    async def wait_ready(self, run: Running, *, completion_awaited: bool = False) -> None:
        """Poll the provider's probe until ready, under the service's start_timeout.

        Raises ServiceExited if the process exits first (unless it exits 0 and
        ``completion_awaited``: a job a dependent waits to complete), and
        ServiceStartTimeout at the deadline, with the log's tail and the last error.
        """
        instance = run.instance
        assert run.exit_task is not None
        timeout = instance.spec.start_timeout
        deadline = time.monotonic() + timeout
        interval = FIRST_POLL
        last_error: str | None = None
        while True:
            if run.exit_task.done():
                code = run.exit_task.result()
                if code == 0 and completion_awaited:
                    break
                raise ServiceExited(
                    instance.name,
                    code,
                    waited_for=waited_for(instance),
                    log_tail=log_tail(instance.log_path),
                    log_path=instance.log_path,
                    hint=exit_hint(instance),
                )
            remaining = deadline - time.monotonic()
            try:
                ok = await asyncio.wait_for(run.provider.probe(instance), max(remaining, 0.001))
                if ok and instance.ready is not None and not instance.spec.own_ready_check:
                    ok, said = await own_check(run)  # the server's own healthcheck as well
                    last_error = said or last_error
            except TimeoutError as exc:
                # an attempt cut short by the deadline says less than the one before it
                cut_short = time.monotonic() >= deadline
                ok = False
                if not (cut_short and last_error):
                    last_error = f"{type(exc).__name__}: {exc}".strip()
            except ServiceRefused:
                raise
            except (OSError, StackError) as exc:
                ok, last_error = False, f"{type(exc).__name__}: {exc}".strip()
            except Exception as exc:  # a client library's own error (psycopg ...)
                ok, last_error = False, f"{type(exc).__name__}: {exc}".strip()
            if ok and not run.exit_task.done():
                break  # (nothing awaits from here to ready_at: the supervisor sees one or other)
            if ok:
                continue  # it exited while the probe ran: judged at the top, not called ready
            if time.monotonic() >= deadline:
                hint = (
                    f"raise services.{instance.spec.name}.start_timeout,"
                    " or check its ready settings"
                )
                if last_error:
                    hint = f"last attempt said: {last_error.splitlines()[0]}\n  hint: {hint}"
                raise ServiceStartTimeout(
                    instance.name,
                    timeout,
                    waited_for=waited_for(instance),
                    log_tail=log_tail(instance.log_path),
                    log_path=instance.log_path,
                    hint=hint,
                )
            await asyncio.wait([run.exit_task], timeout=min(interval, max(remaining, 0)))
            interval = min(interval * 1.5, MAX_POLL)
        run.ready_at = time.time()
        if run.exit_task.done():  # a job that completed (exit 0) before it was seen running
            return
        run.state = "ready" if instance.spec.has_health else "running"
        seconds = round(run.ready_at - (run.started_at or 0), 3)
        self.journal.emit(instance.name, "ready", seconds=seconds)
        self.journal.write_state()


async def own_check(run: Running) -> tuple[bool, str | None]:
    """A built-in server's own ready check (a compose healthcheck), run as the image would:
    its clients on PATH and pointed at this server (``redis-cli`` gets ``-h``/``-p``), the
    image's variables (``POSTGRES_USER``...) and the clients' (``PGHOST``...) set."""
    instance = run.instance
    check = instance.ready
    assert check is not None
    wrappers = _client_wrappers(run)
    path = [str(wrappers), *map(str, run.provider.client_bin_dirs(instance)),
            os.environ.get("PATH", "")]  # fmt: skip
    env = {**os.environ, **run.provider.image_env(instance), **run.provider.client_env(instance),
           **instance.env, "PATH": os.pathsep.join(path)}  # fmt: skip
    argv = ["/bin/sh", "-c", check.argv[0]] if check.shell else list(check.argv)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), check.attempt_timeout)
    except TimeoutError:
        procs.signal_group(proc.pid, 9)
        await proc.wait()
        return False, f"its healthcheck {' '.join(argv[-1:])!r} took over {check.attempt_timeout}s"
    if proc.returncode == 0:
        return True, None
    said = out.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return False, f"its healthcheck exited {proc.returncode}: {said[0]}"


def _client_wrappers(run: Running) -> Path:
    """A directory of scripts that run the server's clients with the arguments that point
    them at it (``valkey-cli -h 127.0.0.1 -p PORT``): a check written for a container, where
    the server is on the client's default address, reaches this one."""
    instance = run.instance
    made = instance.scratch.get("client_wrappers")
    if isinstance(made, str):
        return Path(made)
    directory = instance.run_dir / "clients" / instance.name  # (ports change with each run)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    instance.scratch["client_wrappers"] = str(directory)
    search = os.pathsep.join(
        [*map(str, run.provider.client_bin_dirs(instance)), os.environ.get("PATH", "")]
    )
    clients = run.provider.client_args(instance)
    found = {program: shutil.which(program, path=search) for program in clients}
    # the clients of one server are alike (redis-cli and valkey-cli): one found stands in
    fallback = next((path for path in found.values() if path), None)
    for program, args in clients.items():
        real = found[program] or fallback
        if real is None:
            continue
        script = directory / program
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(real)} {shlex.join(args)} "$@"\n')
        script.chmod(0o700)
    return directory


def waited_for(instance: Instance) -> str:
    """What readiness meant for this instance, in words (for error messages)."""
    check = instance.ready
    if not instance.spec.own_ready_check:
        own = f", then its own check {' '.join(check.argv)!r}" if check is not None else ""
        return {
            "postgres": "a query (SELECT 1) on its unix socket",
            "valkey": "PING answered with PONG",
            "redis": "PING answered with PONG",
            "nats": "its monitoring endpoint /healthz to answer 200",
            "memcached": "a `version` command answered",
            "nginx": "an HTTP answer on its port",
            "rabbitmq": "an AMQP handshake (and the management API, when on)",
            "mariadb": "a query (SELECT 1) on its unix socket",
        }.get(instance.spec.use, "its readiness check") + own
    if check is None:
        return "the process to start"
    if check.kind == "http":
        return f"GET {check.target} to answer {check.status}"
    if check.kind == "tcp":
        return f"a TCP connection to {check.target or instance.port}"
    if check.kind == "log":
        return f"a log line matching {check.target!r}"
    inside = " inside the container" if instance.spec.is_container else ""
    return f"command {' '.join(check.argv)!r} to exit 0{inside}"


def _check_executable(
    instance: Instance, program: str, env: Mapping[str, str], cwd: Path | None
) -> None:
    """What exec would say, said before the record-and-exec shell runs it."""
    if "/" in program:
        path: str | None = str(Path(cwd or ".") / program)
        found = path if os.access(str(path), os.X_OK) and Path(str(path)).is_file() else None
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise ServiceStartError(
            instance.name,
            f"could not be started: {program!r} is not an executable file"
            + ("" if "/" in program else " on PATH"),
            hint=f"check services.{instance.spec.name}.command and cwd",
        )


def exit_hint(instance: Instance) -> str:
    spec = instance.spec
    if spec.is_process:
        return f"run it by hand to see why: {redact(shlex.join(instance.command))}"
    if spec.is_container:
        return "see the log above (the container's own output, and stacktest's lines about it)"
    return f"see the log above; `stacktest doctor` shows which {spec.use} binary was used"
