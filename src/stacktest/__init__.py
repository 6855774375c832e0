"""stacktest: real multi-service stacks for integration tests, without Docker.

The public API is small: :class:`Stack` (and :class:`AsyncStack`,
:class:`AttachedStack`), :func:`load_stack`, :func:`eventually`, and the errors in
:mod:`stacktest.errors`. The pytest plugin is :mod:`stacktest.pytest_plugin`. Heavier names are
imported on first use so ``import stacktest`` (and the pytest plugin) stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stacktest.errors import (
    BinaryNotFound,
    ConfigError,
    DependencyFailed,
    IsolationError,
    ServiceExited,
    ServiceStartError,
    ServiceStartTimeout,
    StackError,
    StackNotRunning,
    StackStateError,
)

if TYPE_CHECKING:
    from stacktest.attach import AttachedStack
    from stacktest.engine.runtime import AsyncStack
    from stacktest.service import Service
    from stacktest.spec.load import load_stack
    from stacktest.stack import Stack
    from stacktest.wait import EventuallyTimeout, eventually, eventually_async

__version__ = "0.1.0"

__all__ = [
    "AsyncStack",
    "AttachedStack",
    "BinaryNotFound",
    "ConfigError",
    "DependencyFailed",
    "EventuallyTimeout",
    "IsolationError",
    "Service",
    "ServiceExited",
    "ServiceStartError",
    "ServiceStartTimeout",
    "Stack",
    "StackError",
    "StackNotRunning",
    "StackStateError",
    "eventually",
    "eventually_async",
    "load_stack",
]

_LAZY = {
    "AsyncStack": "stacktest.engine.runtime",
    "Stack": "stacktest.stack",
    "Service": "stacktest.service",
    "load_stack": "stacktest.spec.load",
    "AttachedStack": "stacktest.attach",
    "eventually": "stacktest.wait",
    "eventually_async": "stacktest.wait",
    "EventuallyTimeout": "stacktest.wait",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stacktest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
