"""The fixtures. Imports here stay cheap: the engine loads when a test first needs it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from stacktest.pytest_plugin.evidence import LOAD_KEY, MARK_KEY
from stacktest.pytest_plugin.session import StackSession, StackUnavailable

if TYPE_CHECKING:
    from stacktest.attach import AttachedStack
    from stacktest.faults.history import History
    from stacktest.faults.nemesis import Nemesis
    from stacktest.isolation.mariadb import MariadbDatabase
    from stacktest.isolation.nats import SubjectScope
    from stacktest.isolation.postgres import PgDatabase
    from stacktest.isolation.rabbitmq import RabbitVhost
    from stacktest.isolation.valkey import KeyScope
    from stacktest.load.results import LoadResult
    from stacktest.stack import Stack

SESSION_KEY = pytest.StashKey[StackSession]()


def stack_session(config: pytest.Config) -> StackSession:
    return config.stash[SESSION_KEY]


def _require_stack(request: pytest.FixtureRequest) -> Stack | AttachedStack:
    session = stack_session(request.config)
    try:
        return session.get()
    except StackUnavailable as exc:
        reason = str(exc)
    # outside the except block, so the report does not chain the two
    if session.settings.skip_if_unavailable:
        pytest.skip(f"{reason}\n(skipped: {session.settings.sources['skip_if_unavailable']})")
    pytest.fail(reason, pytrace=False)


def _services_of(request: pytest.FixtureRequest, kinds: tuple[str, ...]) -> list[str]:
    spec = stack_session(request.config).spec
    assert spec is not None
    return [name for name, s in spec.services.items() if s.use in kinds]


def _pick(request: pytest.FixtureRequest, service: str | None, kinds: tuple[str, ...]) -> str:
    """The service a factory call means: the one named, or the only one of its kind."""
    spec = stack_session(request.config).spec
    assert spec is not None
    candidates = _services_of(request, kinds)
    what = "/".join(kinds)
    if service is not None:
        if service not in spec.services:
            pytest.fail(
                f"stacktest: no service {service!r} in {spec.source} "
                f"(services: {', '.join(spec.services)})",
                pytrace=False,
            )
        if spec.services[service].use not in kinds:
            pytest.fail(
                f"stacktest: service {service!r} is {spec.services[service].use}, not {what}",
                pytrace=False,
            )
        return service
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        pytest.fail(f"stacktest: {spec.source} has no {what} service", pytrace=False)
    pytest.fail(
        f"stacktest: {spec.source} has several {what} services ({', '.join(candidates)}); "
        "use the factory fixture and name one",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Stack | AttachedStack:
    """The running stack, for the whole session: ``stack["db"].url``, ``.host``, ``.port``,
    ``.env``; ``stack.restart("api")``; ``stack.reset("db")`` (fresh data)."""
    return _require_stack(request)


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A unique, readable id for this test (``t_<test>_<5 chars>``): a tenant, a key
    prefix, a subject token. The Valkey and NATS scopes use it as their prefix."""
    from stacktest.isolation.names import unique_name

    return unique_name(request.node.name)


@pytest.fixture
def pg_database_factory(
    request: pytest.FixtureRequest, stack: Stack | AttachedStack
) -> Iterator[Callable[..., PgDatabase]]:
    """``pg_database_factory("db")``: a fresh database on that Postgres service, cloned
    from a template holding its ``init`` SQL (or ``template="name"``: a copy of that
    database). Dropped after the test, in the background."""
    session = stack_session(request.config)
    taken: list[tuple[Any, PgDatabase]] = []

    def make(service: str | None = None, *, template: str | None = None) -> PgDatabase:
        name = _pick(request, service, ("postgres",))
        pool = session.pool(name, template)
        database = pool.acquire()
        taken.append((pool, database))
        return database

    yield make
    for pool, database in taken:
        pool.release(database)


@pytest.fixture
def pg_database(pg_database_factory: Callable[..., PgDatabase]) -> PgDatabase:
    """A fresh database on the stack's Postgres service (see ``pg_database_factory``)."""
    return pg_database_factory()


@pytest.fixture
def valkey_scope_factory(
    request: pytest.FixtureRequest, stack: Stack | AttachedStack, namespace: str
) -> Iterator[Callable[..., KeyScope]]:
    """``valkey_scope_factory("cache")``: this test's key prefix on that service; every
    key under it is removed after the test."""
    from stacktest.isolation.valkey import KeyScope

    scopes: list[KeyScope] = []

    def make(service: str | None = None) -> KeyScope:
        name = _pick(request, service, ("valkey", "redis"))
        info = stack[name]
        password = info.fields.get("password", "")
        scope = KeyScope(name, info.host, info.port, password, namespace + ":")
        scopes.append(scope)
        return scope

    yield make
    for scope in scopes:
        scope.clear()


@pytest.fixture
def valkey_scope(valkey_scope_factory: Callable[..., KeyScope]) -> KeyScope:
    """This test's key prefix on the stack's Valkey/Redis service: ``scope.key("cart")``."""
    return valkey_scope_factory()


@pytest.fixture
def nats_scope_factory(
    request: pytest.FixtureRequest, stack: Stack | AttachedStack, namespace: str
) -> Iterator[Callable[..., SubjectScope]]:
    """``nats_scope_factory("bus")``: this test's subject prefix on that service, and
    streams created through it, deleted after the test."""
    from stacktest.isolation.nats import SubjectScope

    scopes: list[SubjectScope] = []

    def make(service: str | None = None) -> SubjectScope:
        name = _pick(request, service, ("nats",))
        info = stack[name]
        scope = SubjectScope(name, info.host, info.port, namespace)
        scopes.append(scope)
        return scope

    yield make
    for scope in scopes:
        if scope.streams:
            scope.clear()


@pytest.fixture
def nats_scope(nats_scope_factory: Callable[..., SubjectScope]) -> SubjectScope:
    """This test's subject prefix on the stack's NATS service: ``scope.subject("orders")``,
    ``scope.create_stream("orders")``."""
    return nats_scope_factory()


@pytest.fixture
def mariadb_database_factory(
    request: pytest.FixtureRequest, stack: Stack | AttachedStack, namespace: str
) -> Iterator[Callable[..., MariadbDatabase]]:
    """``mariadb_database_factory("db")``: a new database on that MariaDB service, a copy
    of its first database (tables and rows), the service's user granted on it; dropped
    after the test."""
    from stacktest.isolation.mariadb import MariadbServer

    made: list[tuple[MariadbServer, str]] = []

    def make(service: str | None = None) -> MariadbDatabase:
        name = _pick(request, service, ("mariadb",))
        server = MariadbServer.of(name, stack[name].fields)
        database = f"{namespace}_{len(made)}" if made else namespace
        made.append((server, database))
        return server.clone(database)

    yield make
    for server, database in made:
        server.drop(database)


@pytest.fixture
def mariadb_database(
    mariadb_database_factory: Callable[..., MariadbDatabase],
) -> MariadbDatabase:
    """This test's own database on the stack's MariaDB service: ``mariadb_database.url``,
    ``.name``, ``.user``, ``.password``; a copy of the service's first database."""
    return mariadb_database_factory()


@pytest.fixture
def rabbitmq_vhost_factory(
    request: pytest.FixtureRequest, stack: Stack | AttachedStack, namespace: str
) -> Iterator[Callable[..., RabbitVhost]]:
    """``rabbitmq_vhost_factory("mq")``: a vhost of this test's own on that RabbitMQ service
    (its default user may do anything there), deleted after the test."""
    from stacktest.isolation.rabbitmq import RabbitAdmin

    made: list[tuple[RabbitAdmin, str]] = []

    def make(service: str | None = None) -> RabbitVhost:
        name = _pick(request, service, ("rabbitmq",))
        admin = RabbitAdmin.of(name, stack[name].fields)
        vhost = f"{namespace}_{len(made)}" if made else namespace
        made.append((admin, vhost))
        return admin.create(vhost)

    yield make
    for admin, vhost in made:
        admin.delete(vhost)


@pytest.fixture
def rabbitmq_vhost(rabbitmq_vhost_factory: Callable[..., RabbitVhost]) -> RabbitVhost:
    """This test's own vhost on the stack's RabbitMQ service: ``rabbitmq_vhost.url``."""
    return rabbitmq_vhost_factory()


@pytest.fixture
def fresh_stack(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``fresh_stack("db", "cache")``: restart those services with fresh state now (no
    names: every service). Or mark the test: ``@pytest.mark.fresh_stack("db")``."""
    session = stack_session(request.config)

    def reset(*services: str) -> None:
        _require_stack(request)
        assert session.spec is not None
        names = list(services) or session.spec.start_order()
        unknown = [n for n in names if n not in session.spec.services]
        if unknown:
            pytest.fail(
                f"stacktest: fresh_stack: no service {', '.join(map(repr, unknown))} in "
                f"{session.spec.source} (services: {', '.join(session.spec.services)})",
                pytrace=False,
            )
        session.reset(names)

    return reset


@pytest.fixture(autouse=True)
def _stacktest_fresh_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("fresh_stack")
    if marker is not None:
        request.getfixturevalue("fresh_stack")(*marker.args)


@pytest.fixture
def service_log(
    request: pytest.FixtureRequest, stack: Stack | AttachedStack
) -> Callable[[str], list[str]]:
    """``service_log("api")``: the lines that service (all its replicas) wrote during this
    test so far."""

    session = stack_session(request.config)

    def lines(service: str) -> list[str]:
        spec = session.spec
        assert spec is not None
        if service not in spec.services:
            pytest.fail(
                f"stacktest: service_log: no service {service!r} in {spec.source} "
                f"(services: {', '.join(spec.services)})",
                pytrace=False,
            )
        out: list[str] = []
        for instance, _, new in session.logs_since(request.node.stash.get(MARK_KEY, None)):
            if instance == service or instance.startswith(service + "."):
                out += new
        return out

    return lines


@pytest.fixture
def history(tmp_path: Any) -> History:
    """A Jepsen-style history of client operations, also written as JSON lines to
    ``<tmp_path>/history.jsonl``: ``with history.op("enqueue", 7): ...``. Check it with
    ``stacktest.faults.history.total_queue(history)`` and friends."""
    from stacktest.faults.history import History

    return History(tmp_path / "history.jsonl")


@pytest.fixture
def nemesis(
    request: pytest.FixtureRequest, stack: Stack | AttachedStack
) -> Iterator[Callable[..., Nemesis]]:
    """``nemesis([kill("worker"), pause("db")], every="2s")``: a started Nemesis on the
    stack (recording into ``history`` when the test uses it), stopped and healed after."""
    from stacktest.faults.nemesis import Nemesis

    started: list[Nemesis] = []

    def make(faults: list[Any], **options: Any) -> Nemesis:
        if "history" not in options and "history" in request.fixturenames:
            options["history"] = request.getfixturevalue("history")
        running = Nemesis(stack, faults, **options).start()
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


@pytest.fixture
def load(request: pytest.FixtureRequest, stack: Stack | AttachedStack) -> Callable[..., LoadResult]:
    """``load(scenario, phases, service="api", thresholds={...})``: run open-model load
    against a service of the stack; returns a LoadResult (percentiles, verdicts) to assert
    on. A failing test's report gets each run's summary; every run is saved in the run
    directory (``load/TEST-TIME/``), so the run report shows it with its charts."""
    import re
    import time

    from stacktest.load.runner import LoadTest

    def run(
        scenario: Any,
        phases: list[Any],
        *,
        service: str | None = None,
        url: str | None = None,
        workers: int = 1,
        **options: Any,
    ) -> LoadResult:
        if url is None:
            spec = stack_session(request.config).spec
            assert spec is not None
            processes = [n for n, s in spec.services.items() if s.is_process]
            if service is None and len(processes) != 1:
                pytest.fail(
                    f"stacktest: load(): name the service to load (services: "
                    f"{', '.join(spec.services)})",
                    pytrace=False,
                )
            url = stack[service or processes[0]].url
        options.setdefault("name", request.node.name)
        result = LoadTest(scenario, url, phases, **options).run(workers=workers)
        runs = request.node.stash.setdefault(LOAD_KEY, [])
        runs.append(result)
        # in the stack's own run directory, where its report looks
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        result.write(stack.run_dir.path / "load" / f"{stamp}-{slug}-{len(runs)}")
        return result

    return run
