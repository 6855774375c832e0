"""Operations by name: one request (``{"op": "kill", "service": "worker"}``) -> one reply.

Every restart, reset and fault, however it is caused (``Stack`` in process, the CLI
and ``AttachedStack`` over the control socket, the Toxiproxy API), goes through
:func:`apply`, so the same checks, errors and event-log entries apply to all.

To add an operation: a function ``(stack, request) -> dict | None`` in ``OPERATIONS``
and, for callers, a method in :mod:`stacktest.operations`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from stacktest.errors import StackError
from stacktest.faults.toxics import Toxic

if TYPE_CHECKING:
    from stacktest.faults.plane import FaultPlane


class Target(Protocol):
    """What the operations act on (``AsyncStack``)."""

    faults: FaultPlane

    def check(self, operation: str) -> None: ...
    def status(self) -> list[dict[str, Any]]: ...
    def fault_state(self) -> dict[str, Any]: ...
    async def heal(self) -> list[str]: ...
    async def restart(self, service: str) -> None: ...
    async def reset(self, service: str) -> None: ...
    async def kill(self, service: str) -> None: ...
    async def terminate(self, service: str) -> None: ...
    async def stop_service(self, service: str) -> None: ...
    async def start_service(self, service: str) -> None: ...
    async def pause(self, service: str) -> None: ...
    async def resume(self, service: str) -> None: ...


Operation = Callable[[Target, dict[str, Any]], Awaitable[dict[str, Any] | None]]


async def apply(stack: Target, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one operation; never raises.

    The reply is ``{"ok": True, ...}`` or ``{"ok": False, "error": ..., "kind": ...}``
    where ``kind`` names the StackError subclass, so a remote caller can raise it.
    """
    op = str(request.get("op"))
    operation = OPERATIONS.get(op)
    if operation is None:
        return {"ok": False, "error": f"unknown operation {op!r}", "kind": "StackError"}
    try:
        result = await operation(stack, request)
    except StackError as exc:
        return {"ok": False, "error": str(exc), "kind": type(exc).__name__}
    except KeyError as exc:
        return {"ok": False, "error": str(exc).strip("'\""), "kind": "StackStateError"}
    return {"ok": True, **(result or {})}


def _service_op(method: str) -> Operation:
    async def operation(stack: Target, request: dict[str, Any]) -> None:
        await getattr(stack, method)(str(request["service"]))

    return operation


async def _add_toxic(stack: Target, request: dict[str, Any]) -> dict[str, Any]:
    stack.check("fault")
    edge, toxic = str(request["edge"]), Toxic.from_json(request["toxic"])
    added = await stack.faults.call(stack.faults.proxies.add_toxic, edge, toxic)
    return {"toxic": added.to_json()}


async def _remove_toxic(stack: Target, request: dict[str, Any]) -> None:
    edge, name = str(request["edge"]), str(request["name"])
    await stack.faults.call(lambda: stack.faults.proxies.get(edge).remove_toxic(name))


async def _link(stack: Target, request: dict[str, Any]) -> None:
    stack.check("fault")
    edge, up = str(request["edge"]), bool(request["up"])
    await stack.faults.call(lambda: stack.faults.proxies.get(edge).set_enabled(up))


async def _heal(stack: Target, request: dict[str, Any]) -> dict[str, Any]:
    return {"healed": await stack.heal()}


async def _faults(stack: Target, request: dict[str, Any]) -> dict[str, Any]:
    return stack.fault_state()


async def _status(stack: Target, request: dict[str, Any]) -> dict[str, Any]:
    return {"status": stack.status()}


OPERATIONS: dict[str, Operation] = {
    "restart": _service_op("restart"),
    "reset": _service_op("reset"),
    "kill": _service_op("kill"),
    "terminate": _service_op("terminate"),
    "stop": _service_op("stop_service"),
    "start": _service_op("start_service"),
    "pause": _service_op("pause"),
    "resume": _service_op("resume"),
    "add_toxic": _add_toxic,
    "remove_toxic": _remove_toxic,
    "link": _link,
    "heal": _heal,
    "faults": _faults,
    "status": _status,
}
