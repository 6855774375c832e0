"""Providers: one per kind of service. The engine looks them up here by ``use``."""

from __future__ import annotations

from stacktest.providers.base import Provider


def provider_for(kind: str, backend: str = "native") -> Provider:
    if backend == "container" and kind not in ("container", "process"):
        from stacktest.providers.containerized import ContainerizedProvider

        return ContainerizedProvider(provider_for(kind))
    if kind == "postgres":
        from stacktest.providers.postgres import PostgresProvider

        return PostgresProvider()
    if kind in ("valkey", "redis"):
        from stacktest.providers.valkey import ValkeyProvider

        return ValkeyProvider(kind)
    if kind == "nats":
        from stacktest.providers.nats import NatsProvider

        return NatsProvider()
    if kind == "mariadb":
        from stacktest.providers.mariadb import MariadbProvider

        return MariadbProvider()
    if kind == "rabbitmq":
        from stacktest.providers.rabbitmq import RabbitmqProvider

        return RabbitmqProvider()
    if kind == "nginx":
        from stacktest.providers.nginx import NginxProvider

        return NginxProvider()
    if kind == "memcached":
        from stacktest.providers.memcached import MemcachedProvider

        return MemcachedProvider()
    if kind == "container":
        from stacktest.providers.container import ContainerProvider

        return ContainerProvider()
    from stacktest.providers.process import ProcessProvider

    return ProcessProvider()


ALL_KINDS = ("postgres", "valkey", "redis", "nats", "memcached", "mariadb", "nginx", "rabbitmq")
