"""A service that dies while a test runs fails that test at once, not when it returns.

While a test's body runs, a thread reads the run's ``state.json`` every 0.1 s (the
owner rewrites it the moment a service exits, whichever process owns the stack); a
death seen on two reads in a row (so not a restart the test asked for, caught half-way)
counts when the service died without being asked to (a crash, a kill from outside; not
a fault the test caused). Then the thread interrupts the test the way pytest-timeout's signal
method does: a signal to the main thread (``SIGUSR2``), whose handler raises pytest's
failure exception (a BaseException, so ``except Exception`` in the test does not
swallow it). Blocking sleeps and socket waits are interrupted too.

The failure names the service, its exit code, and its last log lines, even when they
were written before the test began (a killed server writes nothing as it dies).

Only on the main thread, where signals can be handled; elsewhere (a test run in a
thread of its own) the death still fails the test when its body returns.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import pytest

from stacktest.engine.procs import block_signals_in_this_thread
from stacktest.pytest_plugin.evidence import MARK_KEY, death_report
from stacktest.pytest_plugin.session import StackSession

POLL_SECONDS = 0.1
SIGNAL = signal.SIGUSR2


class _Alarm:
    """The signal handler, installed once per process; it acts only while armed."""

    installed = False
    armed: list[str] | None = None  # the message to fail with, once a death is seen

    @classmethod
    def install(cls) -> None:
        if not cls.installed:
            signal.signal(SIGNAL, cls._handle)
            cls.installed = True

    @classmethod
    def _handle(cls, signum: int, frame: object) -> None:
        message, cls.armed = cls.armed, None
        if message:
            raise pytest.fail.Exception("\n".join(message), pytrace=False)


@contextlib.contextmanager
def failing_on_death(session: StackSession, item: pytest.Item) -> Iterator[None]:
    mark = item.stash.get(MARK_KEY, None)
    main = threading.main_thread()
    if not session.active or mark is None or threading.current_thread() is not main:
        yield
        return
    _Alarm.install()
    stop = threading.Event()
    main_id = main.ident
    assert main_id is not None

    def watch() -> None:
        block_signals_in_this_thread()  # Ctrl-C must reach the main thread, in its sleep
        seen: list[str] = []
        while not stop.wait(POLL_SECONDS):
            try:
                instances = session.instances()
                deaths = session.deaths_since(mark, instances)
            except Exception:  # a state file being rewritten: read it next time
                continue
            # the same deaths on two reads in a row: not a restart caught half-way
            confirmed, seen = bool(deaths) and deaths == seen, deaths
            if confirmed and not stop.is_set():
                report = death_report(deaths, instances, session.settings.log_lines)
                _Alarm.armed = [*report, "(stacktest stopped the test when it saw this)"]
                signal.pthread_kill(main_id, SIGNAL)
                return

    thread = threading.Thread(target=watch, name="stacktest-death-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _Alarm.armed = None  # a signal still on its way finds nothing to raise
