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
from stacktest.errors import StackNotRunning, StackStateError

STATE_FILE = "state.json"
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
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        (self.path / "logs").mkdir(mode=0o700, exist_ok=True)
        gitignore = self.path / ".gitignore"
        if not gitignore.exists():
            gitignore.write_text("*\n")

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
        state = self.read_state() or {}
        for name, info in (state.get("instances") or {}).items():
            pid, ticks = info.get("pid"), info.get("start_ticks")
            if pid and ticks and procs.start_ticks(int(pid)) == ticks:
                procs.signal_group(int(pid), signal.SIGKILL)  # its own group: pgid == pid
                reaped.append(name)
            private = info.get("private_dir")
            if private:
                shutil.rmtree(private, ignore_errors=True)
            sock = info.get("unix_socket")  # outside the run dir, like private_dir
            if sock:
                with contextlib.suppress(OSError):
                    Path(sock).unlink()
        control = state.get("control")
        if control:
            with contextlib.suppress(OSError):
                Path(control).unlink()
        # anything else tagged with this run dir (grandchildren that left their group)
        strays = procs.kill_tagged(**{procs.TAG_RUN_DIR: str(self.path)})
        reaped += [f"pid {pid}" for pid in strays]
        if state and state.get("state") not in ("stopped", None):
            state["state"] = "stopped"
            state["reaped"] = reaped
            self.write_state(state)
        return reaped

    def reset_for_new_run(self) -> None:
        """Fresh data and logs for a new run (the previous run's are gone)."""
        for sub in ("services", "logs", "tmpfs"):
            target = self.path / sub
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
        (self.path / "logs").mkdir(mode=0o700, exist_ok=True)
        for old in (self.events_file, self.resources_file):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
