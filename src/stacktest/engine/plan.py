"""Planning a run: every port, password, fault proxy and rendered command, up front.

Pure: nothing is started, nothing is written. Because every instance's fields are
known before anything starts, every reference can be rendered at once, whichever
way it points (``{api.url}`` in a worker, ``{worker.port}`` in the api), and a
restart keeps the same port and password. A client's reference to a server it
reaches through a fault proxy renders with the proxy's port.

Ports come from ``allocate`` (by default the cross-stack reservation of
:mod:`stacktest.engine.ports`; the engine passes one that remembers them, to release
them when the run ends), so a test can plan with ports of its own choosing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stacktest.engine.ports import allocate_port
from stacktest.engine.rundir import RunDir
from stacktest.faults.edges import edge_name, proxied_fields
from stacktest.providers import provider_for
from stacktest.providers.base import Instance, Provider
from stacktest.redact import remember
from stacktest.spec.model import ReadyCheck, StackSpec
from stacktest.spec.schema import SECRET_FIELDS
from stacktest.spec.template import Ref, render


@dataclass(frozen=True)
class EdgePlan:
    """The fault proxy of one ``client->server`` edge: where it listens, where it goes."""

    client: str
    server: str
    listen: tuple[str, int]
    upstream: tuple[str, int]
    #: A unix socket reaching the server as its TCP port does (cheaper), or None.
    upstream_unix: str | None = None

    @property
    def name(self) -> str:
        return edge_name(self.client, self.server)


@dataclass
class Plan:
    """What a run will be: instances (fields filled, commands rendered) and proxies."""

    #: Each service's instances, in start order; replicas in order.
    services: dict[str, list[Instance]] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)
    edges: dict[str, EdgePlan] = field(default_factory=dict)
    #: The Toxiproxy-compatible API's port: the stack's ``toxiproxy_port`` (8474) when
    #: it is free at start, else ``api_fallback_port``.
    api_port: int = 0
    api_fallback_port: int = 0

    def edge(self, client: str, server: str) -> EdgePlan | None:
        return self.edges.get(edge_name(client, server))

    def fields_seen_by(self, client: str, server: str) -> dict[str, str]:
        """``server``'s fields as ``client`` reaches it: through the edge's proxy if any."""
        target = self.services[server][0]
        edge = self.edge(client, server)
        if edge is None:
            return dict(target.fields)
        return proxied_fields(target.fields, target.host, target.port, edge.listen[1])


def plan_stack(
    spec: StackSpec,
    run_dir: RunDir,
    run_id: str,
    allocate: Callable[[], int] = allocate_port,
) -> Plan:
    """Plan every instance of ``spec`` and every proxied edge; render their commands."""
    plan = Plan()
    port = allocate
    for name in spec.start_order():
        service = spec.services[name]
        provider = plan.providers[name] = provider_for(service.use, service.backend)
        instances = []
        for replica, instance_name in enumerate(service.instance_names(), start=1):
            instance = Instance(
                name=instance_name,
                spec=service,
                run_id=run_id,
                replica=replica,
                port=service.port if service.port and not spec.remap_ports else port(),
                data_dir=run_dir.data_dir(instance_name),
                run_dir=run_dir.path,
                log_path=run_dir.log_path(instance_name),
                extra_ports={label: port() for label in provider.extra_ports},
            )
            instance.fields.update(
                name=instance_name, run_dir=str(run_dir.path), data_dir=str(instance.data_dir)
            )
            if service.is_container:  # (the names a container resolves to this host)
                instance.scratch["peers"] = [n for n in spec.services if n != name]
            provider.plan(instance)
            remember(instance.fields.get(k) for k in SECRET_FIELDS)  # hidden wherever shown
            instances.append(instance)
        plan.services[name] = instances
    for client, server in spec.proxied_edges():
        target = plan.services[server][0]
        edge = EdgePlan(
            client,
            server,
            listen=(target.host, port()),
            upstream=(target.host, target.port),
            upstream_unix=plan.providers[server].unix_socket(target),
        )
        plan.edges[edge.name] = edge
    plan.api_fallback_port = port()
    plan.api_port = spec.toxiproxy_port or plan.api_fallback_port
    for instances in plan.services.values():
        for instance in instances:
            render_instance(instance, plan, spec.base_dir)
    return plan


def render_instance(instance: Instance, plan: Plan, base_dir: Path) -> None:
    """Fill ``instance.env`` (and a process's command, cwd, ready) with every reference."""
    spec = instance.spec

    def resolve(ref: Ref) -> str:
        if ref.service is None:
            return instance.fields[ref.field]
        return plan.fields_seen_by(spec.name, ref.service)[ref.field]

    instance.env = {key: render(value, resolve) for key, value in spec.env.items()}
    instance.options = dict(spec.options)
    for listed in ("args", "volumes"):
        if isinstance(spec.options.get(listed), list):
            instance.options[listed] = [render(str(a), resolve) for a in spec.options[listed]]
    for table in ("settings", "addresses"):
        if isinstance(spec.options.get(table), dict):
            instance.options[table] = {
                k: render(v, resolve) if isinstance(v, str) else v
                for k, v in spec.options[table].items()
            }
    if spec.own_ready_check:
        instance.command = [render(arg, resolve) for arg in spec.command]
    if spec.is_process:
        cwd = Path(render(spec.cwd, resolve)) if spec.cwd else base_dir
        instance.cwd = cwd if cwd.is_absolute() else base_dir / cwd
    if spec.ready is not None:
        ready = spec.ready
        instance.ready = ReadyCheck(
            ready.kind,
            target=render(ready.target, resolve) if ready.kind != "log" else ready.target,
            argv=tuple(render(a, resolve) for a in ready.argv),
            shell=ready.shell,
            status=ready.status,
            attempt_timeout=ready.attempt_timeout,
        )
