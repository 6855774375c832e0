"""The main job: taskflow's integration suite against its real stack, a summary, a report.

``stacktest test`` starts examples/taskflow's stack (Postgres, NATS JetStream, the
orchestrator, two workers, the reducer), runs the suite against it (templates, namespaces,
150 concurrent workflows, errors, kills and restarts, outages, a nemesis, protocols, a
load gate) and stops it. This script prints a summary per category (passed / failed,
duration), the faults injected and what the system processed, and writes
reports/taskflow.md beside the JUnit XML. Exit code: pytest's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKFLOW = ROOT / "examples" / "taskflow"
REPORTS = ROOT / "reports"
CATEGORIES = {
    "test_workflows": "1. workflow templates end to end",
    "test_namespaces": "2. namespace isolation",
    "test_concurrency": "3. 150 concurrent workflows",
    "test_errors": "4. errors, retries, bus outage",
    "test_recovery": "5. persistence and recovery",
    "test_outage": "6. service outage",
    "test_nemesis": "7. nemesis, 500+ tasks",
    "test_protocols": "8. protocols: REST, WebSocket, metrics",
    "test_cli": "8. protocols: client CLI",
    "test_performance": "9. performance gate (load)",
}


def main() -> int:
    REPORTS.mkdir(exist_ok=True)
    junit = REPORTS / "taskflow-junit.xml"
    counts_file = REPORTS / "taskflow-counts.json"
    for stale in (junit, counts_file):
        stale.unlink(missing_ok=True)
    print("==> stacktest test: examples/taskflow (real Postgres, NATS, orchestrator, 2 workers, reducer)")
    env = {**os.environ, "TASKFLOW_REPORT": str(counts_file)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started = time.monotonic()
    code = subprocess.run(
        [sys.executable, "-m", "stacktest", "test", "--file", str(TASKFLOW / "stack.toml"),
         "--report", str(REPORTS / "taskflow"), "--",
         "-p", "no:cacheprovider", "-q", f"--junitxml={junit}", "-o", "junit_family=xunit1"],
        cwd=TASKFLOW, env=env,
    ).returncode  # fmt: skip
    took = time.monotonic() - started
    if not junit.exists():
        print("error: the suite produced no results (see above)", file=sys.stderr)
        return code or 1
    rows = summarize(junit)
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    lines = report(rows, counts, took, code)
    print()
    print("\n".join(lines))
    (REPORTS / "taskflow.md").write_text("\n".join(lines) + "\n")
    print(f"\n==> report: {(REPORTS / 'taskflow.md').relative_to(ROOT)}; "
          f"HTML (services, timeline of faults, tests): "
          f"{(REPORTS / 'taskflow' / 'report.html').relative_to(ROOT)}; "
          f"JUnit: {junit.relative_to(ROOT)}; service logs: examples/taskflow/.stacktest/logs/")  # fmt: skip
    return code


def summarize(junit: Path) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")[-1]
        category = CATEGORIES.get(module, module)
        row = rows.setdefault(category, {"passed": 0, "failed": 0, "skipped": 0, "seconds": 0.0})
        row["seconds"] += float(case.get("time", 0))
        if case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += 1
        elif case.find("skipped") is not None:
            row["skipped"] += 1
        else:
            row["passed"] += 1
    return dict(sorted(rows.items()))


def report(rows: dict[str, dict[str, float]], counts: dict, took: float, code: int) -> list[str]:
    passed = sum(int(r["passed"]) for r in rows.values())
    failed = sum(int(r["failed"]) for r in rows.values())
    skipped = sum(int(r["skipped"]) for r in rows.values())
    verdict = "PASSED" if code == 0 and not failed else "FAILED"
    lines = [
        f"# taskflow integration suite: {verdict}",
        "",
        f"{passed} passed, {failed} failed, {skipped} skipped in {took:.0f} s "
        "(stack up, suite, stack down), against real services, nothing mocked.",
        "",
        "| category | passed | failed | seconds |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {int(r['passed'])} | {int(r['failed'])} | {r['seconds']:.1f} |")
    if counts:
        tasks = counts.get("tasks", {})
        lines += [
            "",
            "What the system did during the suite:",
            "",
            f"- tasks: {sum(tasks.values())} ({', '.join(f'{k} {v}' for k, v in sorted(tasks.items()))})"
            f" in {counts.get('namespaces')} namespaces",
            f"- steps run: {counts.get('steps_run')} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(counts.get('steps_by_worker', {}).items()))});"
            f" state transitions recorded: {counts.get('transitions')}",
            f"- BLAKE3 stamps: {counts.get('stamps')}; outbox rows left unpublished: "
            f"{counts.get('outbox_left')}",
        ]
        if not counts.get("quiescent", True):
            lines.append("- (the system was still busy 30 s after the suite: counts are a snapshot)")
        errors = counts.get("errors", [])
        if errors:
            lines.append(f"- tasks that ended in error ({len(errors)}), each one on purpose or not:")
            for e in errors:
                step = f"step {e['step']!r}: {e['step_error']}" if e.get("step") else e.get("error")
                lines.append(f"  - {e['task']} in namespace {e['namespace']}: {step}")
        faults = counts.get("faults", {})
        if faults:
            lines.append(
                "- faults injected: "
                + ", ".join(f"{what} x{n}" for what, n in sorted(faults.items()))
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())
