"""The environment user code gets: how to reach each service of a running stack.

``stacktest test``, ``exec`` and ``load`` put these in the environment of what they run
(``stacktest env --client`` prints them), so a suite written for ``localhost`` servers
and its own variables finds the stack's servers without any glue:

- per service (its first instance): ``<SERVICE>_URL``, ``<SERVICE>_HOST``,
  ``<SERVICE>_PORT`` (``db`` -> ``DB_URL``; ``-`` and ``.`` become ``_``);
- the conventional names of the first service of each kind, from its provider:
  ``DATABASE_URL``, ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``
  (Postgres), ``REDIS_URL`` / ``VALKEY_URL`` (Valkey, Redis), ``NATS_URL`` (NATS);
- ``TOXIPROXY_URL``: the stack's Toxiproxy-compatible API.

A variable already set in the caller's environment is never overridden.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def env_prefix(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def client_environment(state: Mapping[str, Any]) -> dict[str, str]:
    """Every variable for the stack of ``state`` (a ``state.json``), in a stable order."""
    out: dict[str, str] = {}
    seen_services: set[str] = set()
    for info in state.get("instances", {}).values():
        service = str(info.get("service"))
        if service in seen_services:
            continue  # a replica: the first instance speaks for the service
        seen_services.add(service)
        fields = info.get("fields", {})
        prefix = env_prefix(service)
        for key in ("url", "host", "port"):
            if fields.get(key):
                out[f"{prefix}_{key.upper()}"] = str(fields[key])
        for key, value in info.get("client_env", {}).items():
            out.setdefault(key, str(value))  # the first service of each kind wins
    if state.get("toxiproxy_api"):
        out["TOXIPROXY_URL"] = str(state["toxiproxy_api"])
    return out


def with_client_environment(
    state: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, str]:
    """``environ`` plus the stack's variables that ``environ`` does not set already."""
    return {**client_environment(state), **environ}
