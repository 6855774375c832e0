"""Baselines: keep a run's results, compare a later run with tolerances, print a PR-ready diff.

    stacktest load scenario.py --save-baseline perf/baseline.json
    stacktest load scenario.py --baseline perf/baseline.json --tolerance p95=10% --tolerance p99=20%

A regression is a corrected-latency percentile that grew by more than its tolerance
(in percent), or an error rate that grew by more than its tolerance (absolute, as a
fraction). Operations missing from either side are listed, not judged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TOLERANCES = {"p50": 10.0, "p95": 10.0, "p99": 20.0, "error_rate": 0.01}
EXIT_REGRESSION = 98


def parse_tolerances(items: list[str]) -> dict[str, float]:
    tolerances = dict(DEFAULT_TOLERANCES)
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in DEFAULT_TOLERANCES:
            raise ValueError(
                f"tolerance {item!r}: write METRIC=VALUE with METRIC one of "
                f"{', '.join(DEFAULT_TOLERANCES)} (e.g. p95=10%)"
            )
        text = value.strip().rstrip("%")
        try:
            tolerances[key] = float(text)
        except ValueError:
            raise ValueError(f"tolerance {item!r}: {value!r} is not a number") from None
    return tolerances


@dataclass(frozen=True)
class Row:
    operation: str
    metric: str
    baseline: float
    current: float
    change: float  # percent for latencies, absolute for the error rate
    limit: float
    regressed: bool


@dataclass(frozen=True)
class Comparison:
    rows: list[Row]
    missing: list[str]
    added: list[str]

    @property
    def ok(self) -> bool:
        return not any(row.regressed for row in self.rows)

    def markdown(self) -> str:
        lines = [
            "| operation | metric | baseline | current | change | limit | |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            if r.metric == "error_rate":
                base, cur, change = f"{r.baseline:.2%}", f"{r.current:.2%}", f"{r.change:+.2%}"
                limit = f"+{r.limit:.2%}"
            else:
                base, cur = f"{r.baseline:.2f} ms", f"{r.current:.2f} ms"
                change, limit = f"{r.change:+.1f}%", f"+{r.limit:g}%"
            mark = "**regressed**" if r.regressed else "ok"
            cells = [r.operation, r.metric, base, cur, change, limit, mark]
            lines.append("| " + " | ".join(cells) + " |")
        for name in self.missing:
            lines.append(f"| {name} | - | in the baseline | missing now | | | |")
        for name in self.added:
            lines.append(f"| {name} | - | not in the baseline | new | | | |")
        verdict = "no regression" if self.ok else "REGRESSION"
        return f"**load vs baseline: {verdict}**\n\n" + "\n".join(lines)


def load_results(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"no baseline at {path} (save one with --save-baseline)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a results file: {exc}") from None
    if "operations" not in data:
        raise ValueError(f"{path} is not a stacktest load results file (no operations)")
    return data


def compare(
    current: dict[str, Any], baseline: dict[str, Any], tolerances: dict[str, float]
) -> Comparison:
    rows = []
    now, before = current["operations"], baseline["operations"]
    for name in sorted(set(now) & set(before)):
        cur, base = now[name]["all"], before[name]["all"]
        for metric in ("p50", "p95", "p99"):
            b = base["latency_ms"].get(metric)
            c = cur["latency_ms"].get(metric)
            if b is None or c is None or b <= 0:
                continue
            change = (c - b) / b * 100
            limit = tolerances[metric]
            rows.append(Row(name, metric, b, c, change, limit, change > limit))
        b_err, c_err = base["error_rate"], cur["error_rate"]
        limit = tolerances["error_rate"]
        grew = c_err - b_err
        rows.append(Row(name, "error_rate", b_err, c_err, grew, limit, grew > limit))
    return Comparison(rows, sorted(set(before) - set(now)), sorted(set(now) - set(before)))
