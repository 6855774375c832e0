"""The fault proxies of a stack: one per proxied dependency edge, named ``client->server``.

The engine asks :meth:`EdgeProxies.fields_for` when it renders a client's
``{server.url}``, ``{server.port}``... and gets the proxy's address instead of the
server's, so the client's traffic to that server crosses the proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stacktest.errors import FaultError
from stacktest.faults.proxy import EdgeProxy, EventSink
from stacktest.faults.toxics import Toxic


def edge_name(client: str, server: str) -> str:
    return f"{client}->{server}"


def proxied_fields(
    fields: Mapping[str, str], host: str, port: int, proxy_port: int
) -> dict[str, str]:
    """The server's fields as a client of the proxy sees them: its port replaced."""
    here, there = f"{host}:{port}", f"{host}:{proxy_port}"
    out = {}
    for key, value in fields.items():
        if key == "port":
            out[key] = str(proxy_port)
        else:
            out[key] = value.replace(here, there)
    return out


class EdgeProxies:
    def __init__(self) -> None:
        self.proxies: dict[str, EdgeProxy] = {}
        #: The edges the stack file declares (added with :meth:`add`), as opposed to
        #: proxies a Toxiproxy client made: services depend on them, so they cannot be
        #: deleted, and healing restores them.
        self.declared: set[str] = set()

    def add(
        self,
        client: str,
        server: str,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        on_event: EventSink | None = None,
        upstream_unix: str | None = None,
    ) -> EdgeProxy:
        name = edge_name(client, server)
        self.proxies[name] = EdgeProxy(name, listen, upstream, on_event, upstream_unix)
        self.declared.add(name)
        return self.proxies[name]

    def for_edge(self, client: str, server: str) -> EdgeProxy | None:
        return self.proxies.get(edge_name(client, server))

    def get(self, edge: str) -> EdgeProxy:
        name = edge.replace(" ", "")
        if name in self.proxies:
            return self.proxies[name]
        known = ", ".join(self.proxies) or "none"
        raise FaultError(
            f"no fault proxy on edge {edge!r} (proxied edges: {known})",
            hint="edges are CLIENT->SERVER pairs from depends_on; proxy one with "
            "depends_on.SERVER = { proxy = true }, or all with [stack] proxy = true",
        )

    def fields_for(self, client: str, server: str, fields: Mapping[str, str]) -> dict[str, str]:
        proxy = self.for_edge(client, server)
        if proxy is None:
            return dict(fields)
        host, port = proxy.upstream
        return proxied_fields(fields, host, port, proxy.listen[1])

    async def start(self) -> None:
        for proxy in self.proxies.values():
            await proxy.start()

    async def stop(self) -> None:
        for proxy in self.proxies.values():
            await proxy.stop()

    async def heal(self) -> list[str]:
        return [name for name, proxy in self.proxies.items() if await proxy.heal()]

    def add_toxic(self, edge: str, toxic: Toxic) -> Toxic:
        return self.get(edge).add_toxic(toxic)

    def to_json(self) -> dict[str, Any]:
        return {name: proxy.to_json() for name, proxy in self.proxies.items()}
