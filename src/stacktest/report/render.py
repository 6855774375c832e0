"""A :class:`RunReport` as Markdown (for CI job summaries) and as one HTML file.

The HTML has everything inline (CSS, SVG charts): it can be attached to a CI run, mailed,
or opened from disk. Charts are drawn here as SVG: a timeline of the services (started,
ready, faults, exits, stopped) and, per load run, latency percentiles per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stacktest.report.collect import Event, LoadRun, RunReport

ICON = {"passed": "✅", "failed": "❌", "error": "💥", "skipped": "⏭️"}


def to_markdown(report: RunReport) -> str:
    lines = [f"# {report.stack}: {report.verdict}", ""]
    if report.tests:
        total = sum(t.seconds for t in report.tests)
        counts = ", ".join(
            f"{report.count(o)} {o}" for o in ("passed", "failed", "error", "skipped")
            if report.count(o)
        )  # fmt: skip
        lines += [f"Tests: {counts} ({total:.1f} s of test time).", ""]
        bad = [t for t in report.tests if t.outcome in ("failed", "error")]
        if bad:
            lines += ["| failed test | message |", "|---|---|"]
            lines += [f"| `{t.module}::{t.name}` | {_cell(t.message)} |" for t in bad]
            lines.append("")
    lines += [
        "| service | kind | state | ready in | restarts | crashes | CPU while up | peak memory |",
        "|---" * 8 + "|",
    ]
    for s in report.services:
        ready = f"{s.ready_seconds:.2f} s" if s.ready_seconds is not None else "-"
        lines.append(
            f"| {s.name} | {s.kind} | {s.state} | {ready} | {s.restarts} | {s.crashes} "
            f"| {_cpu(s.cpu_seconds, s.cpu_percent)} "
            f"| {f'{s.peak_rss_mb:.0f} MB' if s.peak_rss_mb is not None else '-'} |"
        )
    faults = report.faults
    if faults:
        lines += ["", f"Faults injected: {len(faults)}", ""]
        lines += ["| t (s) | where | what |", "|---|---|---|"]
        lines += [f"| {e.t:.2f} | {e.service} | {_cell(e.what)} {_cell(e.detail)} |"
                  for e in faults]  # fmt: skip
    for run in report.load_runs:
        verdict = "ok" if run.ok else "FAILED"
        lines += ["", f"Load run {run.name}: {verdict}, {run.seconds:.1f} s", ""]
        lines += ["| operation | count | failed | p50 ms | p95 ms | p99 ms |", "|---" * 6 + "|"]
        for op in run.operations:
            lat = op["latency"]
            lines.append(
                f"| {op['name']} | {op['count']} | {op['failed']} | {lat.get('p50', 0):.2f} "
                f"| {lat.get('p95', 0):.2f} | {lat.get('p99', 0):.2f} |"
            )
        lines += [f"- threshold `{t['threshold']}` on {t['metric']}: "
                  f"{'ok' if t['ok'] else 'FAILED'} (measured {t['measured']})"
                  for t in run.thresholds]  # fmt: skip
        lines += [f"- INVALID RUN: {reason}" for reason in run.invalid_reasons]
    return "\n".join(lines) + "\n"


def _cpu(seconds: float | None, percent: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" + (f" ({percent:.0f} % of a core)" if percent is not None else "")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:300]


# -- HTML -----------------------------------------------------------------------------------
@dataclass
class _Bar:
    y: float
    label: str
    x0: float
    x1: float


@dataclass
class _Mark:
    x: float
    y: float
    kind: str  # ready / fault / trouble / other
    title: str


def _timeline(report: RunReport, width: float = 900, row: float = 22) -> dict[str, object]:
    """Bars per service instance (first event to last), marks for its events."""
    names = []
    for e in report.events:
        if e.service not in names and e.service != "stack":
            names.append(e.service)
    end = max(report.seconds, 0.001)
    left = 140.0

    def x(t: float) -> float:
        return left + (width - left - 10) * max(0.0, t) / end

    bars, marks = [], []
    for i, name in enumerate(names):
        own = [e for e in report.events if e.service == name]
        y = 10 + i * row
        bars.append(_Bar(y, name, x(own[0].t), x(own[-1].t)))
        for e in own:
            kind = "fault" if e.fault else "trouble" if e.trouble else (
                "ready" if e.what in ("ready", "completed") else "other")  # fmt: skip
            if kind != "other":
                marks.append(_Mark(x(e.t), y + row / 2 - 4, kind, _title(e)))
    stack_marks = [_Mark(x(e.t), 2, "fault" if e.fault else "other", _title(e))
                   for e in report.events if e.service == "stack"]  # fmt: skip
    ticks = [(x(end * i / 5), f"{end * i / 5:.1f}s") for i in range(6)]
    return {
        "width": width, "height": 30 + len(names) * row, "bars": bars, "row": row,
        "marks": marks + stack_marks, "ticks": ticks, "axis_y": 20 + len(names) * row,
    }  # fmt: skip


def _title(e: Event) -> str:
    return f"{e.t:.3f}s {e.service}: {e.what} {e.detail}".strip()


def _load_chart(run: LoadRun, width: float = 900, height: float = 180) -> dict[str, object]:
    """p50 / p99 latency per second as SVG polylines (log scale is not needed at this size)."""
    slices = run.slices
    top = max([s.get("p99_ms", 0) for s in slices] + [0.001])
    n = max(len(slices) - 1, 1)

    def points(key: str) -> str:
        xs = [40 + (width - 50) * i / n for i in range(len(slices))]
        ys = [height - 20 - (height - 30) * s.get(key, 0) / top for s in slices]
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))

    return {"width": width, "height": height, "p50": points("p50_ms"), "p99": points("p99_ms"),
            "top": f"{top:.1f}", "seconds": len(slices)}  # fmt: skip


TEMPLATE = "report.html.j2"  # beside this module


def to_html(report: RunReport) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("stacktest.report", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template(TEMPLATE)
    loads = [(run, _load_chart(run)) for run in report.load_runs]
    return template.render(r=report, tl=_timeline(report), loads=loads, icon=ICON, cpu=_cpu)


def write_reports(report: RunReport, directory: Path) -> tuple[Path, Path]:
    """``summary.md`` and ``report.html`` into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    md, html = directory / "summary.md", directory / "report.html"
    md.write_text(to_markdown(report), encoding="utf-8")
    html.write_text(to_html(report), encoding="utf-8")
    return md, html
