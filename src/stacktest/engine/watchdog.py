"""The watchdog: a stack's services end when its owner dies, however it dies.

The owner of a run directory (a ``Stack``, a pytest session, ``stacktest up``) starts one
small process, ``python -m stacktest.engine.watchdog RUN_DIR``, in a session of its own,
and keeps the write end of a pipe to its stdin. It never writes until the stack has
stopped; then it writes ``bye`` and closes. If the pipe closes without ``bye`` (the owner
was killed with SIGKILL, ran out of memory, crashed in C), the kernel has closed it, the
owner's lock is free, and the watchdog takes the lock and reaps what the dead owner
left: the processes ``state.json`` lists (matched by pid and start time), anything tagged
with the run directory, private data directories and sockets.

This is testcontainers' Ryuk, without a container: the resource owner's death is what a
closed pipe tells, with nothing to poll. (Linux's ``PR_SET_PDEATHSIG`` would need a
``preexec_fn`` per service, is unsafe with threads, fires when the *thread* that forked
exits, and is cleared when Postgres is started as another user.)

If another owner takes the lock first (``stacktest up`` right after the crash), it reaps
at its own start and the watchdog has nothing to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from stacktest.engine import procs
from stacktest.engine.rundir import RunDir
from stacktest.errors import StackStateError

BYE = b"bye"


class Watchdog:
    """The owner's side: start the watchdog, and say goodbye after a clean stop."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        tags = {procs.TAG_RUN_ID, procs.TAG_RUN_DIR, procs.TAG_SERVICE}
        env = {k: v for k, v in os.environ.items() if k not in tags}  # no sweep may kill it
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "stacktest.engine.watchdog", str(self.run_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the owner's terminal is not for it
            env=env,
        )

    def stand_down(self) -> None:
        """The stack stopped cleanly: the watchdog exits without reaping."""
        proc, self._proc = self._proc, None
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(BYE)
            proc.stdin.close()
        except OSError:  # it is gone already (killed by someone): nothing to tell
            pass
        try:
            proc.wait(timeout=5)  # it exits at once; reap it so no zombie stays
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def watch(stdin: IO[bytes], run_dir: RunDir) -> list[str]:
    """Block until the owner is gone; reap if it did not say goodbye. Returns what was reaped."""
    if stdin.read() == BYE:
        return []
    deadline = time.monotonic() + 5
    while True:
        if not run_dir.path.exists():  # deleted with its temp dir: only tagged strays remain
            return [f"pid {p}" for p in procs.kill_tagged(**{procs.TAG_RUN_DIR: str(run_dir.path)})]
        try:
            run_dir.acquire()
        except StackStateError:
            # the lock is held: a new owner (who reaps at its own start), or the dying
            # owner's last moments; wait a little, then leave it to the new owner
            if time.monotonic() > deadline:
                return []
            time.sleep(0.05)
            continue
        try:
            return run_dir.reap()
        finally:
            run_dir.release()


def main() -> None:
    watch(sys.stdin.buffer, RunDir(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
