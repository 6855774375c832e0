"""A Toxiproxy-compatible HTTP API over the stack's fault proxies.

Existing Toxiproxy clients, in any language, can drive stacktest: point them at
the URL in ``stacktest status`` (``toxiproxy_api`` in ``state.json``). The routes and
JSON are Toxiproxy 2.x's:

    GET    /version                         GET    /proxies/{proxy}/toxics
    POST   /reset                           POST   /proxies/{proxy}/toxics
    GET    /proxies                         GET    /proxies/{proxy}/toxics/{toxic}
    POST   /proxies                         POST   /proxies/{proxy}/toxics/{toxic}
    POST   /populate                        DELETE /proxies/{proxy}/toxics/{toxic}
    GET    /proxies/{proxy}
    POST   /proxies/{proxy}   (enabled: false is the link ``down``)
    DELETE /proxies/{proxy}

Proxies made through the API (``POST /proxies``) listen on loopback only. The edges the
stack file declares cannot be deleted (``DELETE`` answers 403 and heals the edge, so a
client's ``destroy_all()`` teardown leaves them healthy); ``POST /reset`` heals all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import unquote

import h11

from stacktest.errors import FaultError
from stacktest.faults.edges import EdgeProxies
from stacktest.faults.proxy import EdgeProxy, EventSink
from stacktest.faults.toxics import Toxic

VERSION = "2.9.0"  # the Toxiproxy API version these routes follow
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class ToxiproxyAPI:
    def __init__(self, proxies: EdgeProxies, on_event: EventSink | None = None) -> None:
        self.proxies = proxies
        self._on_event = on_event
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    def _event(self, what: str, detail: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(what, detail)

    @property
    def url(self) -> str | None:
        return f"http://{self.address[0]}:{self.address[1]}" if self.address else None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        self.address = (host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None

    # -- HTTP ---------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, reader)
                if request is None:
                    return
                method, target = request.method.decode(), request.target.decode()
                status, payload = await self._dispatch(method, target, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                if data:
                    writer.write(conn.send(h11.Data(data=data)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError, TimeoutError):
            return
        finally:
            writer.close()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), 30)
                if not data and conn.their_state is h11.IDLE:
                    return None, b""
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None, b""

    async def _dispatch(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        path = [unquote(p) for p in target.split("?")[0].strip("/").split("/") if p]
        try:
            data = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError:
            return 400, {"error": "the body is not JSON", "status": 400}
        try:
            return await self._route(method, path, data)
        except _HTTPError as exc:
            return exc.status, {"error": exc.message, "status": exc.status}
        except FaultError as exc:
            status = 409 if "already" in exc.problem else 404 if "no " in exc.problem else 400
            return status, {"error": exc.problem, "status": status}

    async def _route(self, method: str, path: list[str], data: Any) -> tuple[int, Any]:
        match (method, path):
            case ("GET", ["version"]):
                return 200, {"version": VERSION}
            case ("POST", ["reset"]):
                await self.proxies.heal()
                return 204, None
            case ("GET", ["proxies"]):
                return 200, self.proxies.to_json()
            case ("POST", ["proxies"]):
                proxy = await self._create(data)
                return 201, proxy.to_json()
            case ("POST", ["populate"]):
                items = data.get("proxies", data) if isinstance(data, dict) else data
                made = [(await self._create(item, replace=True)).to_json() for item in items]
                return 201, {"proxies": made}
            case ("GET", [_, name]) if path[0] == "proxies":
                return 200, self._proxy(name).to_json()
            case ("POST", [_, name]) if path[0] == "proxies":
                proxy = self._proxy(name)
                if "enabled" in data:
                    await proxy.set_enabled(bool(data["enabled"]))
                return 200, proxy.to_json()
            case ("DELETE", [_, name]) if path[0] == "proxies":
                proxy = self._proxy(name)
                if proxy.name in self.proxies.declared:
                    # A stock client's teardown (destroy_all) must not cut a service off
                    # its dependency for the rest of the run: refuse, but leave the edge
                    # healthy, which is what that teardown is for.
                    await proxy.heal()
                    self._event("delete refused", {"edge": proxy.name})
                    raise _HTTPError(
                        403,
                        f"proxy {proxy.name!r} is an edge the stack file declares: a service "
                        "reaches its dependency through it, so it is not deleted; its toxics "
                        "were removed and its link enabled instead (as POST /reset does). "
                        'To cut the link, POST /proxies/NAME {"enabled": false}',
                    )
                await proxy.stop()
                del self.proxies.proxies[proxy.name]
                self._event("deleted", {"edge": proxy.name})
                return 204, None
            case ("GET", [_, name, "toxics"]) if path[0] == "proxies":
                return 200, [t.to_json() for t in self._proxy(name).toxics.values()]
            case ("POST", [_, name, "toxics"]) if path[0] == "proxies":
                toxic = self._proxy(name).add_toxic(Toxic.from_json(data))
                return 200, toxic.to_json()
            case ("GET", [_, name, "toxics", toxic]) if path[0] == "proxies":
                return 200, self._proxy(name).get_toxic(toxic).to_json()
            case ("POST", [_, name, "toxics", toxic]) if path[0] == "proxies":
                return 200, self._proxy(name).update_toxic(toxic, data).to_json()
            case ("DELETE", [_, name, "toxics", toxic]) if path[0] == "proxies":
                self._proxy(name).remove_toxic(toxic)
                return 204, None
        raise _HTTPError(404, f"no route {method} /{'/'.join(path)}")

    def _proxy(self, name: str) -> EdgeProxy:
        if name not in self.proxies.proxies:
            raise _HTTPError(404, f"proxy {name!r} not found")
        return self.proxies.proxies[name]

    async def _create(self, data: Any, replace: bool = False) -> EdgeProxy:
        if not isinstance(data, dict) or not data.get("name") or not data.get("upstream"):
            raise _HTTPError(400, "a proxy needs a name and an upstream")
        name = str(data["name"])
        if name in self.proxies.proxies:
            existing = self.proxies.proxies[name]
            if not replace:
                raise _HTTPError(409, f"proxy {name!r} already exists")
            return existing
        listen = _address(str(data.get("listen") or "127.0.0.1:0"), "listen")
        if listen[0] not in LOOPBACK:
            raise _HTTPError(400, f"stacktest proxies listen on loopback only, not {listen[0]}")
        upstream = _address(str(data["upstream"]), "upstream")
        proxy = EdgeProxy(name, listen, upstream, self._on_event)
        await proxy.start()
        self.proxies.proxies[name] = proxy
        listening = f"{proxy.listen[0]}:{proxy.listen[1]}"
        self._event("created", {"edge": name, "listen": listening, "upstream": data["upstream"]})
        if data.get("enabled") is False:
            await proxy.set_enabled(False)
        return proxy


def _address(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return (host or "127.0.0.1", int(port))
    except ValueError:
        raise _HTTPError(400, f"{what} must be HOST:PORT, not {text!r}") from None
