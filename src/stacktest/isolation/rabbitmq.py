"""A vhost per test on a shared RabbitMQ broker, made and deleted through its management
API: queues, exchanges and bindings of one test are invisible to every other.

    vhost = RabbitAdmin.of("mq", stack["mq"].fields).create("t_checkout_k3x9q")
    pika.BlockingConnection(pika.URLParameters(vhost.url))

The broker's default user gets every permission on the vhost. Through the management API
(``management = true``, or a ``-management`` image: milliseconds), else through the node's
own ``rabbitmqctl`` (an Erlang VM per call: 2-4 s a vhost; turn management on for speed).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from stacktest.errors import IsolationError

TIMEOUT = 10.0


@dataclass(frozen=True)
class RabbitVhost:
    """One test's vhost, and how to reach it."""

    name: str
    host: str
    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"amqp://{auth}@{self.host}:{self.port}/{quote(self.name, safe='')}"


@dataclass(frozen=True)
class RabbitAdmin:
    """A RabbitMQ service's management API, as its fields describe it."""

    service: str
    fields: Mapping[str, str]

    @classmethod
    def of(cls, service: str, fields: Mapping[str, str]) -> RabbitAdmin:
        if "management_url" not in fields:
            raise IsolationError(f"service {service!r} is not a RabbitMQ service of stacktest's")
        return cls(service, dict(fields))

    def _ctl(self, *args: str) -> None:
        """``rabbitmqctl ARGS`` against the service's node (its cookie, its epmd)."""
        import os
        import subprocess

        f = self.fields
        env = {**os.environ, "HOME": f["home"], "RABBITMQ_NODENAME": f["node"],
               "ERL_EPMD_PORT": f["epmd_port"]}  # fmt: skip
        try:
            done = subprocess.run([f["ctl"], "-n", f["node"], *args], env=env, timeout=60,
                                  capture_output=True, text=True, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            what = f"service {self.service!r}: rabbitmqctl {args[0]}"
            raise IsolationError(f"{what}: {exc}") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()[-300:]
            raise IsolationError(f"service {self.service!r}: rabbitmqctl {' '.join(args[:2])} "
                                 f"failed: {said}")  # fmt: skip

    def _call(self, method: str, path: str, body: object = None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        token = base64.b64encode(f"{self.fields['user']}:{self.fields['password']}".encode())
        request = urllib.request.Request(
            f"{self.fields['management_url']}/api/{path}", data=data, method=method,
            headers={"Authorization": f"Basic {token.decode()}",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT):
                pass
        except urllib.error.HTTPError as exc:
            raise IsolationError(f"service {self.service!r}: {method} /api/{path} answered "
                                 f"{exc.code}: {exc.read()[:200]!r}") from None  # fmt: skip
        except OSError:
            raise IsolationError(
                f"service {self.service!r}: its management API does not answer; a vhost "
                "per test needs it: set `management = true` (or use a -management image)"
            ) from None

    @property
    def _by_ctl(self) -> bool:
        """No management API, but the node's rabbitmqctl (a stacktest service's fields)."""
        return not self.fields.get("management", "yes") and "ctl" in self.fields

    def create(self, name: str) -> RabbitVhost:
        if self._by_ctl:
            self._ctl("add_vhost", name)
            self._ctl("set_permissions", "-p", name, self.fields["user"], ".*", ".*", ".*")
            return RabbitVhost(name, self.fields["host"], int(self.fields["port"]),
                               self.fields["user"], self.fields["password"])  # fmt: skip
        vhost, user = quote(name, safe=""), quote(self.fields["user"], safe="")
        self._call("PUT", f"vhosts/{vhost}", {})
        self._call("PUT", f"permissions/{vhost}/{user}",
                   {"configure": ".*", "write": ".*", "read": ".*"})  # fmt: skip
        return RabbitVhost(name, self.fields["host"], int(self.fields["port"]),
                           self.fields["user"], self.fields["password"])  # fmt: skip

    def delete(self, name: str) -> None:
        if self._by_ctl:
            self._ctl("delete_vhost", name)
            return
        self._call("DELETE", f"vhosts/{quote(name, safe='')}")
