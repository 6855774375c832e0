"""The pytest plugin (registered through the ``pytest11`` entry point).

Importing this module costs only pytest and the standard library; the engine,
psycopg and the providers load when a test first asks for the stack. See
docs/pytest.md for every fixture and option.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from stacktest.pytest_plugin import evidence, watch
from stacktest.pytest_plugin.fixtures import (
    SESSION_KEY,
    _stacktest_fresh_marker,
    fresh_stack,
    history,
    load,
    mariadb_database,
    mariadb_database_factory,
    namespace,
    nats_scope,
    nats_scope_factory,
    nemesis,
    pg_database,
    pg_database_factory,
    rabbitmq_vhost,
    rabbitmq_vhost_factory,
    service_log,
    stack,
    stack_session,
    valkey_scope,
    valkey_scope_factory,
)
from stacktest.pytest_plugin.options import add_options, resolve
from stacktest.pytest_plugin.session import StackSession

__all__ = [
    "_stacktest_fresh_marker",
    "fresh_stack",
    "history",
    "load",
    "mariadb_database",
    "mariadb_database_factory",
    "namespace",
    "nats_scope",
    "nats_scope_factory",
    "nemesis",
    "pg_database",
    "pg_database_factory",
    "rabbitmq_vhost",
    "rabbitmq_vhost_factory",
    "service_log",
    "stack",
    "valkey_scope",
    "valkey_scope_factory",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fresh_stack(*services): restart these services (default: all) with fresh state "
        "before the test",
    )
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    config.stash[SESSION_KEY] = StackSession(resolve(config), worker)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    problems = session.close()
    if problems:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        for problem in problems:
            if reporter is not None:
                reporter.write_line(f"stacktest: {problem}", yellow=True)


def pytest_report_header(config: pytest.Config) -> str | None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    settings = session.settings
    from stacktest.spec.files import default_compose_fallback

    mode = "attach" if settings.attach else "keep" if settings.keep else "own stack"
    used = default_compose_fallback(settings.file)
    if used != settings.file:
        return f"stacktest: {used} (no {settings.file.name} beside it) [{mode}]"
    exists = "" if settings.file.is_file() else " (not found; tests that need it will error)"
    return f"stacktest: {settings.file}{exists} [{mode}]"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    evidence.note_start(stack_session(item.config), item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    session = stack_session(item.config)
    # the stack may have started during this test's setup: watch it from here on
    evidence.note_start(session, item, only_if_unmarked=True)
    # and a service that dies while the test body runs fails the test within a second
    with watch.failing_on_death(session, item):
        return (yield)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # whatever the test did to the stack (a kill, a pause, a toxic), the next test
    # starts from a healed one
    evidence.heal_after(stack_session(item.config), item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    evidence.add_evidence(stack_session(item.config), item, report)
    return report
