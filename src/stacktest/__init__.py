"""stacktest: real multi-service stacks for integration tests, without Docker.

The public API is small: :class:`Stack` (and :class:`AsyncStack`),
:func:`load_stack`, and the errors in :mod:`stacktest.errors`. Heavier names are
imported on first use so ``import stacktest`` (and the pytest plugin) stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stacktest.errors import (
    BinaryNotFound,
    ConfigError,
    DependencyFailed,
    ServiceExited,
    ServiceStartError,
    ServiceStartTimeout,
    StackError,
    StackNotRunning,
    StackStateError,
)

if TYPE_CHECKING:
    from stacktest.engine.runtime import AsyncStack
    from stacktest.spec.load import load_stack
    from stacktest.stack import Service, Stack

__version__ = "0.1.0"

__all__ = [
    "AsyncStack",
    "BinaryNotFound",
    "ConfigError",
    "DependencyFailed",
    "Service",
    "ServiceExited",
    "ServiceStartError",
    "ServiceStartTimeout",
    "Stack",
    "StackError",
    "StackNotRunning",
    "StackStateError",
    "load_stack",
]

_LAZY = {
    "AsyncStack": "stacktest.engine.runtime",
    "Stack": "stacktest.stack",
    "Service": "stacktest.stack",
    "load_stack": "stacktest.spec.load",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stacktest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
