"""The run directory: ``.stacktest/`` beside the stack file, private (0700).

    .stacktest/
      owner.lock         held (flock) by the process that owns the running stack
      state.json         run id, owner pid, each instance's pid, port, fields, state
      events.jsonl       what happened when (started, ready, exited, restarted ...)
      runner.log         output of a detached runner (``stacktest up -d``)
      logs/NAME.log      each instance's stdout and stderr
      services/NAME/     each instance's data (Postgres data dir, JetStream store)

The lock says whether an owner is alive (the kernel drops it when the owner
dies, however it dies); the state file says what the owner left running, so a
later start or ``down`` can reap it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, TextIO

from stacktest.engine import procs
from stacktest.engine.control import socket_path
from stacktest.errors import StackNotRunning, StackStateError
from stacktest.redact import remember
from stacktest.spec.schema import SECRET_FIELDS

STATE_FILE = "state.json"
SPAWNED = "spawned"


def private_files() -> None:
    """From now on, what this process (and what it starts) creates is its user's alone:
    files 0600, directories 0700 (umask 077). Set when a run directory is made: logs, state,
    reports and the services' own files hold addresses, passwords and data."""
    os.umask(0o077)
LOG_TAIL_LINES = 20


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a log (read from its last 64 KB)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").rstrip("\n").splitlines()[-lines:]


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: TextIO | None = None

    # -- layout -------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def resources_file(self) -> Path:
        return self.path / "resources.jsonl"

    def log_path(self, instance: str) -> Path:
        return self.path / "logs" / f"{instance}.log"

    def volume_dir(self, name: str) -> Path:
        """A named volume: kept across runs, removed by ``down -v``."""
        return self.path / "volumes" / name

    def tmpfs_dir(self, name: str) -> Path:
        """A tmpfs mount of a local process: empty at each start."""
        return self.path / "tmpfs" / name

    def remove_volumes(self) -> list[str]:
        root = self.path / "volumes"
        names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        shutil.rmtree(root, ignore_errors=True)
        return names

    def data_dir(self, instance: str) -> Path:
        return self.path / "services" / instance

    def create(self) -> None:
        private_files()
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        (self.path / "logs").mkdir(mode=0o700, exist_ok=True)
        gitignore = self.path / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")

    # -- what was started ---------------------------------------------------------------
    def spawn_record(self, instance: str) -> int:
        """A file descriptor the process about to be started writes its own pid to, before
        it becomes the server (engine/launch.py): its record is durable whenever the owner
        dies, even between the fork and the owner's next line. The file's name is when it
        was made; the pid's start time must fall between that and the file's last write."""
        directory = self.path / SPAWNED
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / f"{instance}.{time.time_ns()}"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)

    def spawned_pids(self) -> list[tuple[str, int]]:
        """``(instance, pid)`` of every recorded process still alive as itself; a record
        not yet written (the process between fork and exec) is waited for, briefly."""
        directory = self.path / SPAWNED
        found: list[tuple[str, int]] = []
        for record in sorted(directory.iterdir()) if directory.is_dir() else []:
            instance, _, made = record.name.rpartition(".")
            deadline = time.monotonic() + 1.0
            text = ""
            while True:
                with contextlib.suppress(OSError):
                    text = record.read_text().strip()
                if text or time.monotonic() > deadline:
                    break
                if time.time() - int(made) / 1e9 > 5:  # never written: nothing was started
                    break
                time.sleep(0.01)
            if not text.isdigit():
                continue
            pid = int(text)
            if procs.started_between(pid, int(made) / 1e9, record.stat().st_mtime):
                found.append((instance, pid))
        return found

    # -- ownership ----------------------------------------------------------------------
    def acquire(self) -> None:
        """Become the owner of this run directory, or fail naming the current owner."""
        self.create()
        handle = open(self.path / "owner.lock", "a+")  # noqa: SIM115 - held for the run
        deadline = time.monotonic() + 2
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                state = self.read_state() or {}
                owner = state.get("owner_pid")
                # held, but its owner is dead: a watchdog is reaping it (milliseconds)
                if owner and not procs.alive(int(owner)) and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
            handle.close()
            raise StackStateError(
                f"a stack is already running from {self.path} "
                f"(owner pid {state.get('owner_pid', '?')}, state {state.get('state', '?')})\n"
                "  hint: run `stacktest down` first, or use it as it is (`stacktest status`)"
            ) from None
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def owner_alive(self) -> bool:
        """True if some process (maybe this one) holds the owner lock."""
        if self._lock is not None:
            return True
        lock = self.path / "owner.lock"
        if not lock.exists():
            return False
        with open(lock, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # -- state --------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        for info in (data.get("instances") or {}).values():  # hidden wherever shown
            remember((info.get("fields") or {}).get(k) for k in SECRET_FIELDS)
        return data

    def write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=1)
        os.replace(tmp, self.state_file)

    def running_state(self) -> dict[str, Any]:
        """The state of a live stack here, or StackNotRunning."""
        state = self.read_state()
        if state is None or not self.owner_alive() or state.get("state") in ("stopped", None):
            raise StackNotRunning(
                f"no stack is running from {self.path}\n"
                "  hint: start one with `stacktest up -d` (or pass --file for another stack)"
            )
        return state

    def event(self, service: str, what: str, **detail: Any) -> None:
        record = {"t": time.time(), "service": service, "event": what, **detail}
        with open(self.events_file, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- reaping ------------------------------------------------------------------------
    def reap(self) -> list[str]:
        """Kill whatever a dead owner left running here; returns what was reaped.

        Call only while holding the lock (so no live owner can be hurt).
        """
        reaped: list[str] = []
        killed: set[int] = set()
        state = self.read_state() or {}
        instances = state.get("instances") or {}
        for name, info in instances.items():
            pid, ticks = info.get("pid"), info.get("start_ticks")
            if pid and ticks and procs.start_ticks(int(pid)) == ticks:
                procs.signal_group(int(pid), signal.SIGKILL)  # its own group: pgid == pid
                reaped.append(name)
                killed.add(int(pid))
        # what was started but not yet in the state (the owner died in between): each
        # process recorded its own pid before it became the server
        for name, pid in self.spawned_pids():
            if pid not in killed:
                procs.signal_group(pid, signal.SIGKILL)
                reaped.append(name)
                killed.add(pid)
        # anything else tagged with this run dir (grandchildren that left their group)
        strays = procs.kill_tagged(**{procs.TAG_RUN_DIR: str(self.path)})
        reaped += [f"pid {pid}" for pid in strays]
        # gone, not just signalled: a caller (down, the next up) may reuse ports and data,
        # and a dying server still writes into its directory
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
            procs.group_alive(pgid) for pgid in killed | set(strays)
        ):
            time.sleep(0.01)
        from stacktest.containers.reap import remove_run  # (imports the SDK only if needed)

        reaped += remove_run(self.path)
        for info in instances.values():
            private = info.get("private_dir")
            if private:
                shutil.rmtree(private, ignore_errors=True)
            sock = info.get("unix_socket")  # outside the run dir, like private_dir
            if sock:
                with contextlib.suppress(OSError):
                    Path(sock).unlink()
        for control in {state.get("control"), str(socket_path(self.path))} - {None}:
            with contextlib.suppress(OSError):  # (recorded, or where it would have been)
                Path(str(control)).unlink()
        if state and state.get("state") not in ("stopped", None):
            state["state"] = "stopped"
            state["reaped"] = reaped
            self.write_state(state)
        return reaped

    def reset_for_new_run(self) -> None:
        """Fresh data and logs for a new run (the previous run's are gone)."""
        for sub in ("services", "logs", "tmpfs", SPAWNED):
            target = self.path / sub
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
        (self.path / "logs").mkdir(mode=0o700, exist_ok=True)
        for old in (self.events_file, self.resources_file):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
