"""What tests do to a running stack: restart, reset, faults. Shared by Stack and AttachedStack.

Every operation is one request to the stack's owner (``AsyncStack.apply``): in this
process for :class:`~stacktest.stack.Stack`, over the control socket for
:class:`~stacktest.attach.AttachedStack`. The context managers always heal:

    with stack.fault("api->db", latency="200ms"):    # a toxic on the edge, removed after
    with stack.down("api->bus"):                     # the link refused and cut, back after
    with stack.stopped("worker"):                    # stopped, started again after
    with stack.paused("db"):                         # SIGSTOP, SIGCONT after
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from stacktest import errors


class Operations:
    """Mixin: subclasses implement ``_request``."""

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _op(self, request: dict[str, Any]) -> dict[str, Any]:
        reply = self._request(request)
        if not reply.get("ok"):
            kind = getattr(errors, str(reply.get("kind")), None)
            message = str(reply.get("error", "no answer from the stack's owner"))
            if isinstance(kind, type) and issubclass(kind, errors.FaultError):
                raise errors.FaultError(message)
            raise errors.StackStateError(message)
        return reply

    # -- services -----------------------------------------------------------------------
    def restart(self, service: str) -> None:
        """Stop and start a service (all its replicas, or ``"worker.2"``), keeping its data."""
        self._op({"op": "restart", "service": service})

    def reset(self, service: str) -> None:
        """Restart a service with fresh state (its data thrown away)."""
        self._op({"op": "reset", "service": service})

    def kill(self, service: str) -> None:
        """SIGKILL the service's process group. It stays down until ``start_service``."""
        self._op({"op": "kill", "service": service})

    def terminate(self, service: str) -> None:
        """SIGTERM (SIGKILL after its stop_timeout). It stays down until ``start_service``."""
        self._op({"op": "terminate", "service": service})

    def stop_service(self, service: str) -> None:
        """Stop a service gracefully (its stop_signal); ``start_service`` brings it back."""
        self._op({"op": "stop", "service": service})

    def start_service(self, service: str) -> None:
        """Start a stopped or killed service and wait until it is ready."""
        self._op({"op": "start", "service": service})

    def pause(self, service: str) -> None:
        """SIGSTOP: the processes keep their sockets but answer nothing."""
        self._op({"op": "pause", "service": service})

    def resume(self, service: str) -> None:
        self._op({"op": "resume", "service": service})

    # -- links --------------------------------------------------------------------------
    def add_toxic(
        self,
        edge: str,
        type: str | None = None,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        name: str | None = None,
        **attributes: Any,
    ) -> str:
        """Add a toxic to an edge's proxy; returns its name. ``add_toxic("api->db",
        latency="200ms")`` or ``add_toxic("api->db", "bandwidth", rate=100)``."""
        from stacktest.faults.toxics import Toxic

        spec: dict[str, Any] = {"stream": stream, "toxicity": toxicity, **attributes}
        if type is not None:
            spec["type"] = type
        if name is not None:
            spec["name"] = name
        toxic = Toxic.parse(spec)
        reply = self._op({"op": "add_toxic", "edge": edge, "toxic": toxic.to_json()})
        return str(reply["toxic"]["name"])

    def remove_toxic(self, edge: str, name: str) -> None:
        self._op({"op": "remove_toxic", "edge": edge, "name": name})

    def link_down(self, edge: str) -> None:
        """Refuse new connections on the edge and reset the open ones."""
        self._op({"op": "link", "edge": edge, "up": False})

    def link_up(self, edge: str) -> None:
        self._op({"op": "link", "edge": edge, "up": True})

    def heal(self) -> list[str]:
        """Undo every fault: toxics, links, paused and stopped services. Returns what it did."""
        healed: list[str] = self._op({"op": "heal"})["healed"]
        return healed

    def proxy_address(self, edge: str) -> tuple[str, int]:
        """Where an edge's proxy listens: connect there to be "the client" of that edge."""
        proxies = self.faults()["proxies"]
        if edge not in proxies:
            known = ", ".join(proxies) or "none"
            raise errors.FaultError(f"no fault proxy on edge {edge!r} (proxied edges: {known})")
        host, _, port = proxies[edge]["listen"].rpartition(":")
        return host, int(port)

    def faults(self) -> dict[str, Any]:
        """Every proxy with its toxics and state, and which services are paused or stopped."""
        reply = self._op({"op": "faults"})
        return {k: reply[k] for k in ("proxies", "paused", "stopped")}

    # -- context managers ---------------------------------------------------------------
    @contextlib.contextmanager
    def fault(self, edge: str, type: str | None = None, **options: Any) -> Iterator[str]:
        """A toxic on ``edge`` for the duration of the block."""
        name = self.add_toxic(edge, type, **options)
        try:
            yield name
        finally:
            with contextlib.suppress(errors.FaultError):
                self.remove_toxic(edge, name)

    @contextlib.contextmanager
    def down(self, edge: str) -> Iterator[None]:
        """The link cut for the duration of the block."""
        self.link_down(edge)
        try:
            yield
        finally:
            self.link_up(edge)

    @contextlib.contextmanager
    def stopped(self, service: str, *, kill: bool = False) -> Iterator[None]:
        """The service stopped (or SIGKILLed, with ``kill=True``) for the block."""
        if kill:
            self.kill(service)
        else:
            self.stop_service(service)
        try:
            yield
        finally:
            self.start_service(service)

    @contextlib.contextmanager
    def paused(self, service: str) -> Iterator[None]:
        """The service frozen (SIGSTOP) for the block."""
        self.pause(service)
        try:
            yield
        finally:
            self.resume(service)
