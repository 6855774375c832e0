"""``stacktest report``: summary.md and report.html of a stack's last run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stacktest.cli.common import (
    DEFAULT_FILE,
    Commands,
    FileOpt,
    escape,
    fail,
    load_spec,
    new_console,
)

commands = Commands()
register = commands.register


@commands.command()
def report(
    file: FileOpt = DEFAULT_FILE,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="JUnit XML of the tests to include.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory to write to (default: RUN_DIR/report).")
    ] = None,
) -> None:
    """Write summary.md and report.html for the last run of the stack (running or stopped):
    services, timeline of events and faults, load runs, and the tests of --junit."""
    spec = load_spec(file)
    if junit is not None and not junit.exists():
        fail(f"no JUnit XML at {junit}\n  hint: pass the file pytest wrote with --junitxml")
    target = out or spec.run_dir / "report"
    default_junit = target / "junit.xml"
    write_report(
        spec.run_dir,
        junit or (default_junit if default_junit.exists() else None),
        target,
        new_console(),
    )


def write_report(run_dir: Path, junit: Path | None, out: Path, console: Any) -> None:
    from stacktest.errors import StackError
    from stacktest.report import collect, write_reports

    try:
        md, html = write_reports(collect(run_dir, junit), out)
    except (StackError, OSError) as exc:  # the tests' exit code stands; say why, plainly
        console.print(f"stacktest: no report: {escape(str(exc))}")
        return
    console.print(f"stacktest: report: {escape(str(html))} (summary: {escape(str(md))})")
