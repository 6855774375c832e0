"""Errors raised by stacktest.

Every error a user can meet derives from :class:`StackError` and carries the
evidence that explains it (file and key, service, exit code, log tail) plus a
remedy. Where a builtin exception is the natural thing to catch, it is mixed in.

    StackError
    ├── ConfigError (ValueError)            the stack file is wrong: file, key path, line
    ├── BinaryNotFound (FileNotFoundError)  a server binary is missing: every place looked
    ├── ServiceStartError                   a service did not become ready
    │   ├── ServiceExited                   ... because its process exited first
    │   ├── ServiceRefused                  ... because it must not be (beyond loopback)
    │   └── ServiceStartTimeout (TimeoutError)  ... before its deadline
    ├── DependencyFailed                    a service could not start because a dependency failed
    ├── StackStateError (RuntimeError)      an operation not allowed in the current state
    │   └── StackNotRunning                 no stack is running in this run directory
    ├── IsolationError                      a per-test database, key prefix or stream failed
    └── FaultError (ValueError)             a fault that cannot be applied (bad toxic, unknown edge)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class StackError(Exception):
    """Root of every stacktest error."""


class ConfigError(StackError, ValueError):
    """The stack file (or a value given on the command line) is invalid."""

    def __init__(
        self,
        problem: str,
        *,
        file: Path | str | None = None,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = Path(file) if file is not None else None
        self.key = key
        self.line = line
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        where = str(self.file) if self.file is not None else "<stack>"
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            where += f": {self.key}"
        text = f"{where}: {self.problem}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class BinaryNotFound(StackError, FileNotFoundError):
    """A server binary could not be found in any of the places stacktest looks."""

    def __init__(
        self, binary: str, *, looked_in: Sequence[str], hint: str, service: str | None = None
    ) -> None:
        self.binary = binary
        self.looked_in = list(looked_in)
        self.hint = hint
        self.service = service
        who = f"service {service}: " if service else ""
        lines = [f"{who}could not find {binary!r}; looked in:"]
        lines += [f"  - {place}" for place in self.looked_in]
        lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))


class ServiceStartError(StackError):
    """A service did not become ready."""

    def __init__(
        self,
        service: str,
        problem: str,
        *,
        waited_for: str | None = None,
        log_tail: Sequence[str] = (),
        log_path: Path | None = None,
        hint: str | None = None,
    ) -> None:
        self.service = service
        self.problem = problem
        self.waited_for = waited_for
        self.log_tail = list(log_tail)
        self.log_path = log_path
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"service {self.service!r} {self.problem}"
        if self.waited_for:
            text += f" (waited for: {self.waited_for})"
        if self.log_tail:
            text += f"\n  last {len(self.log_tail)} log lines"
            if self.log_path is not None:
                text += f" of {self.log_path}"
            text += ":\n" + "\n".join(f"    | {line}" for line in self.log_tail)
        elif self.log_path is not None:
            text += f"\n  (its log {self.log_path} is empty)"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        # a service's log may print its URLs; the message goes to terminals and CI logs
        from stacktest.redact import redact

        return redact(text)


class ServiceRefused(ServiceStartError):
    """A service that must not be called ready at all (it listens beyond loopback): not
    retried until the deadline, reported at once."""


class ServiceExited(ServiceStartError):
    """The service's process exited before the service was ready."""

    def __init__(self, service: str, returncode: int, **kwargs: object) -> None:
        self.returncode = returncode
        super().__init__(service, _describe_exit(returncode), **kwargs)  # type: ignore[arg-type]


class ServiceStartTimeout(ServiceStartError, TimeoutError):
    """The service was not ready before its ``start_timeout``."""

    def __init__(self, service: str, timeout: float, **kwargs: object) -> None:
        self.timeout = timeout
        super().__init__(
            service,
            f"was not ready after {timeout:g}s",
            **kwargs,  # type: ignore[arg-type]
        )


class DependencyFailed(StackError):
    """A service was not started because one of its dependencies failed."""

    def __init__(self, service: str, dependency: str) -> None:
        self.service = service
        self.dependency = dependency
        super().__init__(
            f"service {service!r} was not started: its dependency {dependency!r} failed"
        )


class StackStateError(StackError, RuntimeError):
    """The operation is not allowed in the stack's current state."""


class StackNotRunning(StackStateError):
    """No stack is running in the given run directory."""


class IsolationError(StackError):
    """A per-test resource (database, key prefix, stream) could not be made or removed."""


class FaultError(StackError, ValueError):
    """A fault that cannot be applied: an unknown edge or service, a bad toxic."""

    def __init__(self, problem: str, *, hint: str | None = None) -> None:
        self.problem = problem
        self.hint = hint
        super().__init__(problem + (f"\n  hint: {hint}" if hint else ""))


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} before it was ready"
    return f"exited with code {returncode} before it was ready"
