"""Evidence on failure: what each service logged during the test, and who died.

Before each test the plugin notes every service log's size and crash count (a
:class:`~stacktest.pytest_plugin.session.Mark`). When a phase of the test fails, the
report gets one section per service with the lines written since; when a service
died during the test, the test fails even if its own assertions passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from stacktest.pytest_plugin.session import Mark, StackSession, read_from
from stacktest.redact import redact

if TYPE_CHECKING:
    from stacktest.load.results import LoadResult

MARK_KEY = pytest.StashKey[Mark]()
#: The load runs of a test (the ``load`` fixture adds them), for its report.
LOAD_KEY = pytest.StashKey[list["LoadResult"]]()


def note_start(session: StackSession, item: pytest.Item, *, only_if_unmarked: bool = False) -> None:
    if session.active and not (only_if_unmarked and MARK_KEY in item.stash):
        item.stash[MARK_KEY] = session.mark()


def add_evidence(session: StackSession, item: pytest.Item, report: pytest.TestReport) -> None:
    if not session.active:
        return
    mark = item.stash.get(MARK_KEY, None)
    needs_state = (report.when == "call" and mark is not None) or report.failed
    instances = session.instances() if needs_state else {}  # state.json, read once
    if report.when == "call" and mark is not None:
        deaths = session.deaths_since(mark, instances)
        if deaths:
            if report.passed:
                report.outcome = "failed"
                report.longrepr = redact(
                    "\n".join(death_report(deaths, instances, session.settings.log_lines))
                    + "\n(the test's own assertions passed; stacktest fails it because a "
                    "service it relied on died)"
                )
            elif not _interrupted_for(report, deaths):
                died = death_report(deaths, instances, session.settings.log_lines)
                _section(report, "stacktest: services that died", "\n".join(died))
    healed = item.stash.get(HEALED_KEY, None)
    if report.when == "teardown" and healed:
        _section(report, "stacktest: faults undone after the test", "\n".join(healed))
    if not report.failed:
        return
    runs: list[LoadResult] = item.stash.get(LOAD_KEY, [])
    for i, result in enumerate(runs):
        _section(report, f"stacktest: load run {i + 1}", result.summary())
    limit = session.settings.log_lines
    if limit == 0:
        return
    for instance, path, lines in session.logs_since(mark, instances):
        shown = lines[-limit:]
        header = (
            f"{len(lines)} line(s) written during this test"
            + (f", the last {len(shown)} shown" if len(shown) < len(lines) else "")
            + f"; full log: {path}"
        )
        _section(report, f"stacktest: {instance} log (during this test)",
                 "\n".join([header, *shown]))  # fmt: skip


def _section(report: pytest.TestReport, title: str, text: str) -> None:
    """A section of the test's report, secrets hidden (the stack's passwords, URLs,
    ``password=`` pairs)."""
    report.sections.append((title, redact(text)))


def _interrupted_for(report: pytest.TestReport, deaths: list[str]) -> bool:
    """The test was stopped for these deaths (its failure already says it all)."""
    return all(d in str(report.longrepr) for d in deaths)


HEALED_KEY = pytest.StashKey[list[str]]()


def heal_after(session: StackSession, item: pytest.Item) -> None:
    if session.stack is None:
        return
    try:
        healed = session.stack.heal()
    except Exception as exc:  # the stack may be gone (a test stopped it); report, go on
        healed = [f"heal failed: {exc}"]
    if healed:
        item.stash[HEALED_KEY] = healed


TAIL_LINES = 20


def death_report(deaths: list[str], instances: dict[str, dict[str, Any]], lines: int) -> list[str]:
    """The failure: who died, how, and each dead instance's last log lines."""
    out = list(deaths)
    for name in dead_instances(deaths, instances):
        tail = last_lines(Path(instances[name].get("log", "")), lines or TAIL_LINES)
        out.append(f"last {len(tail)} line(s) of {name}'s log ({instances[name].get('log')}):")
        out += [f"    | {line}" for line in tail] or ["    (empty)"]
    return out


def dead_instances(deaths: list[str], instances: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name in instances if any(d.startswith(f"service {name!r}") for d in deaths)]


def last_lines(path: Path, count: int) -> list[str]:
    return read_from(path, 0, max_bytes=64 * 1024)[-count:]
