"""``stacktest load SCENARIO_FILE``: load against a service of the stack, live view, verdicts."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from stacktest.cli.common import (
    DEFAULT_FILE,
    EXIT_USAGE,
    FileOpt,
    escape,
    fail,
    load_spec,
    new_console,
)


def register(app: typer.Typer) -> None:
    app.command("load")(load)


def load(
    scenario_file: Annotated[Path, typer.Argument(help="A Python scenario file (docs/load.md).")],
    file: FileOpt = DEFAULT_FILE,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Stack service to load.")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Load this URL instead (no stack is used).")
    ] = None,
    phase: Annotated[
        list[str] | None,
        typer.Option(
            "--phase", help="NAME:DURATION:RATE[:RAMP_TO], repeatable; replaces the file's."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Generator processes (default: one per core).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Results directory (default: RUN_DIR/load/TIMESTAMP).")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Compare with this saved run; exit 98 on regression.")
    ] = None,
    save_baseline: Annotated[
        Path | None, typer.Option(help="Save this run's results here as a baseline.")
    ] = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(help="For --baseline: p50|p95|p99=PERCENT, error_rate=FRACTION."),
    ] = None,
    k6_options: Annotated[
        Path | None,
        typer.Option(help="A k6 options file (JSON): its `thresholds` are added, as written."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Run open-model load; exit 99 if a threshold fails, 97 if the run is invalid."""
    from stacktest.load import baseline as baselines
    from stacktest.load.runner import LoadTest, ScenarioRef
    from stacktest.load.scenario_file import ScenarioFileError, parse_phase_option, read
    from stacktest.load.thresholds import ThresholdError, from_k6_options

    try:
        spec = read(scenario_file)
        if k6_options is not None:
            spec.thresholds.update(from_k6_options(k6_options))
        phases = [parse_phase_option(p) for p in phase] if phase else spec.phases
        tolerances = baselines.parse_tolerances(tolerance or [])
        compared_with = baselines.load_results(baseline) if baseline else None
    except (ScenarioFileError, ValueError) as exc:  # (ThresholdError is a ValueError)
        fail(str(exc), EXIT_USAGE)
    refs = [(ScenarioRef(str(spec.path), name), weight) for name, weight in spec.scenarios]
    count = workers if workers is not None else (os.cpu_count() or 1)
    console = new_console()
    with _target(file, url or spec.url, service or spec.service) as (base_url, run_dir):
        try:
            test = LoadTest(
                refs if len(refs) > 1 else refs[0][0], base_url, phases,
                thresholds=spec.thresholds, name=spec.path.stem, **spec.options,
            )  # fmt: skip
        except (ThresholdError, ValueError, TypeError) as exc:
            fail(f"{spec.path}: {exc}", EXIT_USAGE)
        total = sum(p.duration for p in phases)
        console.print(
            f"load {spec.path.name} -> {base_url}: {len(phases)} phase(s), {total:g}s, "
            f"{count} worker(s)"
        )
        try:
            result = _run_live(test, count, console)
        except (RuntimeError, ImportError, OSError) as exc:
            fail(f"the load run failed: {exc}")
        directory = out or run_dir / "load" / time.strftime("%Y%m%d-%H%M%S")
        result.write(directory)
    if as_json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        console.print(escape(result.summary()))
        console.print(f"results: {directory}")
    code = result.exit_code
    if save_baseline:
        save_baseline.parent.mkdir(parents=True, exist_ok=True)
        save_baseline.write_text(json.dumps(result.to_json(), indent=1))
        console.print(f"baseline saved: {save_baseline}")
    if compared_with is not None:
        comparison = baselines.compare(result.to_json(), compared_with, tolerances)
        console.print(comparison.markdown(), markup=False)
        if not comparison.ok and code == 0:
            code = baselines.EXIT_REGRESSION
    raise typer.Exit(code)


def _run_live(test: Any, workers: int, console: Any) -> Any:
    from rich.live import Live
    from rich.table import Table

    rows: list[dict[str, Any]] = []

    def render() -> Table:
        table = Table(title="live (per second; latency corrected)", title_justify="left")
        for column in ("second", "phase", "requests", "in flight", "p95 ms", "p99 ms", "errors"):
            table.add_column(column, justify="right")
        for s in rows[-8:]:
            table.add_row(
                str(s["second"]), s["phase"], str(s["count"]), str(s["in_flight"]),
                f"{s['p95_ms']:.1f}", f"{s['p99_ms']:.1f}", str(s["errors"]),
            )  # fmt: skip
        return table

    if not console.is_terminal:
        return test.run(workers=workers)
    with Live(render(), console=console, refresh_per_second=4) as live:

        def on_slice(summary: dict[str, Any]) -> None:
            rows.append(summary)
            live.update(render())

        return test.run(workers=workers, on_slice=on_slice)


@contextlib.contextmanager
def _target(
    file: list[Path] | None, url: str | None, service: str | None
) -> Iterator[tuple[str, Path]]:
    """(base URL, run dir): an explicit URL, or a service of the stack (attached if it
    runs, else started for the run and stopped after)."""
    if url:
        yield url, Path(".stacktest")
        return
    from stacktest.attach import AttachedStack
    from stacktest.errors import StackError
    from stacktest.stack import Stack

    spec = load_spec(file)
    candidates = [n for n, s in spec.services.items() if s.is_process]
    name = service or (candidates[0] if len(candidates) == 1 else None)
    if name is None or name not in spec.services:
        fail(
            f"which service to load? set `service = \"...\"` in the scenario file or pass "
            f"--service (services: {', '.join(spec.services)})",
            EXIT_USAGE,
        )
    try:
        attached = AttachedStack.attach(spec)
    except StackError:
        attached = None
    if attached is not None:
        _export_client_environment(attached.state)
        yield attached[name].url, spec.run_dir
        return
    stack = Stack(spec)
    try:
        stack.start()
    except StackError as exc:
        fail(str(exc))
    try:
        _export_client_environment(stack.run_dir.read_state() or {})
        yield stack[name].url, spec.run_dir
    finally:
        stack.stop()


def _export_client_environment(state: dict[str, Any]) -> None:
    """The stack's client variables (DATABASE_URL ...) for the scenario and its worker
    processes, where this environment does not set them already."""
    from stacktest.client_env import client_environment

    for key, value in client_environment(state).items():
        os.environ.setdefault(key, value)
