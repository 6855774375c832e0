"""The README's promises under attack, with figures (docs/reliability.md records them).

1. Hostile documents (tests/hostile.py: the fixed attacks, then mutations of real stack and
   compose files): how many gave a traceback instead of a ConfigError, how many took over
   1 s, the slowest, the worker's peak memory; `stacktest config` on every tenth. Peer, in
   the same run: the bare parse of the same bytes (PyYAML's safe_load, tomllib), to show
   what the bounds and checks cost.
2. kill -9 of the owner at the instant a service process is spawned (the nth child, per
   server kind) and at random moments of a start: processes of the run left 2 s later,
   with no other command run.
3. Ctrl-C of a foreground `stacktest up`, once ready and while starting: the exit code,
   and the time until every service process is gone.
4. Four stacks started at once, N rounds: port collisions and failed starts.
5. A canary password: found in how many outputs (every CLI command's, `logs`, the report,
   a failed start's error, runner.log, every process's command line); run-directory
   entries not 0600/0700.
6. A socket scan of that running stack (/proc/net/tcp of the servers' process groups and the
   owner): listeners that are not on loopback.

Run: ``.venv/bin/python benchmarks/reliability.py [--trials N] [--documents N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import hostile  # noqa: E402
from tests.helpers import kill_owner_at_spawn, leftovers, listening_addresses  # noqa: E402

PY = sys.executable
KINDS = {
    "valkey": '[services.s]\nuse = "valkey"\n',
    "nats": '[services.s]\nuse = "nats"\njetstream = true\n',
    "postgres": '[services.s]\nuse = "postgres"\n',
    "process": '[services.s]\ncommand = ["sleep", "300"]\n',
}
STACK = "".join(text.replace("services.s", f"services.{kind}") for kind, text in KINDS.items())


# -- 1. hostile documents ---------------------------------------------------------------
def documents_worker(count: int, seed: int) -> None:
    """In a process of its own (its peak memory is the figure): load every document."""
    from typer.testing import CliRunner

    from stacktest import load_stack
    from stacktest.cli import app
    from stacktest.errors import ConfigError

    def on_alarm(*_: object) -> None:
        raise TimeoutError

    signal.signal(signal.SIGALRM, on_alarm)
    tmp = Path(tempfile.mkdtemp(prefix="st-hostile-"))
    copies: dict[Path, Path] = {}
    out = {"documents": 0, "refused": 0, "loaded": 0, "tracebacks": [], "hangs": [],
           "slowest": 0.0, "total": 0.0, "peer_total": 0.0, "cli_runs": 0,
           "cli_tracebacks": []}  # fmt: skip
    runner = CliRunner()
    for i, (name, beside, suffix, content) in enumerate(hostile.documents(count, seed)):
        where = tmp
        if beside is not None:
            if beside not in copies:
                copies[beside] = Path(shutil.copytree(
                    beside, tmp / beside.name,
                    ignore=shutil.ignore_patterns(".stacktest", "__pycache__")))  # fmt: skip
            where = copies[beside]
        path = where / ("fuzz.toml" if suffix == ".toml" else "fuzz-compose.yaml")
        path.write_bytes(content)
        out["documents"] += 1
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        try:
            load_stack(path)
            out["loaded"] += 1
        except ConfigError:
            out["refused"] += 1
        except TimeoutError:
            out["hangs"].append(name)
        except BaseException as exc:
            last = traceback.extract_tb(exc.__traceback__)[-1]
            out["tracebacks"].append(f"{name}: {type(exc).__name__} at "
                                     f"{Path(last.filename).name}:{last.lineno}")  # fmt: skip
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        took = time.perf_counter() - started
        out["slowest"] = max(out["slowest"], took)
        out["total"] += took
        if took > 1.0 and name not in out["hangs"]:
            out["hangs"].append(f"{name} ({took:.1f}s)")
        started = time.perf_counter()
        try:  # the peer: the bare parse of the same bytes
            import yaml

            text = content.decode("utf-8")
            if suffix == ".toml":
                tomllib.loads(text)
            elif "alias bomb" not in name:
                yaml.safe_load(text)
        except Exception:
            pass
        out["peer_total"] += time.perf_counter() - started
        if i % 10 == 0:
            result = runner.invoke(app, ["config", "--json", "--file", str(path)])
            out["cli_runs"] += 1
            if result.exception and not isinstance(result.exception, SystemExit):
                out["cli_tracebacks"].append(f"{name}: {type(result.exception).__name__}")
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


def hostile_documents(count: int, seed: int) -> dict[str, Any]:
    done = subprocess.run([PY, __file__, "--documents-worker", str(count), str(seed)],
                          capture_output=True, text=True, check=True, timeout=3600)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- 2. kill -9 at the spawn instant, and at random moments --------------------------------
def kill_trials(trials: int, work: Path) -> dict[str, list[int]]:
    """Processes left 2 s after each kill, per kind of moment."""
    results: dict[str, list[int]] = {}
    rng = random.Random(1)
    for kind, text in KINDS.items():
        project = work / f"kill-{kind}"
        project.mkdir()
        (project / "stack.toml").write_text(text + '[services.other]\ncommand = ["sleep", "300"]\n')
        left = []
        for trial in range(trials):
            kill_owner_at_spawn(project, nth=1 + trial % 2)
            time.sleep(2.0)
            left.append(len(leftovers(project / ".stacktest")))
            _clean(project)
        results[f"spawn instant: {kind}"] = left
    project = work / "kill-random"
    project.mkdir()
    (project / "stack.toml").write_text(STACK)
    left = []
    for _ in range(trials):
        proc = subprocess.Popen([PY, "-m", "stacktest", "up"], cwd=project,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.0, 2.0))
        proc.kill()
        proc.wait()
        time.sleep(2.0)
        left.append(len(leftovers(project / ".stacktest")))
        _clean(project)
    results["random moment of a start (0-2 s)"] = left
    return results


def _clean(project: Path) -> None:
    """Between trials: whatever a failed trial left is killed, so the next one counts
    only its own (the count was taken already)."""
    for line in leftovers(project / ".stacktest"):
        pid = int(line.split()[0])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- 3. Ctrl-C -------------------------------------------------------------------------
def ctrl_c_trials(trials: int, work: Path) -> dict[str, list[tuple[int, float, int]]]:
    """(exit code, seconds until every process of the run is gone, processes left)."""
    project = work / "ctrl-c"
    project.mkdir()
    (project / "stack.toml").write_text(STACK)
    results: dict[str, list[tuple[int, float, int]]] = {"once ready": [], "while starting": []}
    for trial in range(trials):
        ready = trial % 2 == 0
        proc = subprocess.Popen([PY, "-m", "stacktest", "up"], cwd=project, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        assert proc.stdout is not None
        if ready:
            for line in proc.stdout:
                if "ready in" in line:
                    break
        else:
            time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        proc.communicate(timeout=60)
        run_dir = project / ".stacktest"
        while leftovers(run_dir) and time.monotonic() - started < 10:
            time.sleep(0.01)
        took = time.monotonic() - started
        results["once ready" if ready else "while starting"].append(
            (proc.returncode, took, len(leftovers(run_dir)))
        )
        _clean(project)
    return results


# -- 4. stacks at once -----------------------------------------------------------------
def concurrent_stacks(rounds: int, work: Path) -> dict[str, int]:
    from stacktest import Stack, load_stack

    failures = collisions = started = 0
    for round_ in range(rounds):
        stacks: list[Stack] = []
        errors: list[str] = []

        def start(i: int, round_: int, stacks: list[Stack], errors: list[str]) -> None:
            project = work / f"concurrent-{round_}-{i}"
            project.mkdir()
            (project / "stack.toml").write_text(STACK.replace('jetstream = true\n', ""))
            try:
                stacks.append(Stack(load_stack(project / "stack.toml")).start())
            except Exception as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=start, args=(i, round_, stacks, errors))
                   for i in range(4)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ports = [int(s[n].port) for s in stacks for n in KINDS]
        collisions += len(ports) - len(set(ports))
        failures += len(errors)
        started += len(stacks)
        for s in stacks:
            s.stop()
    return {"stacks started": started, "failed starts": failures, "port collisions": collisions}


# -- 5. the canary ---------------------------------------------------------------------
SAY_DB = "import os, time; print('db at', os.environ['DB'], flush=True); time.sleep(300)"


def canary(work: Path) -> dict[str, Any]:
    secret = f"Canary-{random.randrange(16**8):08x}"
    project = work / "canary"
    project.mkdir()
    (project / "stack.toml").write_text(f"""
[services.db]
use = "postgres"
password = "{secret}"

[services.cache]
use = "valkey"
password = "{secret}-cache"

[services.app]
command = ["{PY}", "-c", "{SAY_DB}"]
env = {{ DB = "{{db.url}}", DSN = "host=x password={secret}" }}
ready = {{ log = "db at" }}
""")
    outputs: dict[str, str] = {}

    def run(*args: str) -> None:
        done = subprocess.run([PY, "-m", "stacktest", *args], cwd=project, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip
        outputs[" ".join(args)] = done.stdout + done.stderr

    run("up", "-d")
    state = json.loads((project / ".stacktest" / "state.json").read_text())
    pids = [i["pid"] for i in state["instances"].values() if i.get("pid")]
    listening = listening_addresses([*pids, state["owner_pid"]])
    exposed = [a for a in listening if not a.startswith(("127.0.0.1:", "[::1]:"))]
    cmdlines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdlines.append((entry / "cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                pass
    outputs["/proc/*/cmdline"] = "\n".join(cmdlines)
    for args in (("status",), ("status", "--json"), ("logs",), ("config",), ("config", "--json"),
                 ("report",), ("exec", "app", "--", "true"), ("doctor",)):  # fmt: skip
        run(*args)
    run_dir = project / ".stacktest"
    loose = [str(p) for p in run_dir.rglob("*")
             if not p.is_symlink() and p.stat().st_mode & 0o077]  # fmt: skip
    entries = sum(1 for _ in run_dir.rglob("*"))
    run("down")
    # a failed start (its hint names the command, with the URL)
    (project / "stack.toml").write_text(f"""
[services.db]
use = "postgres"
password = "{secret}"

[services.app]
command = ["{PY}", "-c", "raise SystemExit(3)", "{{db.url}}"]
ready = {{ log = "never" }}
depends_on = ["db"]
""")
    run("up")
    run("up", "-d")
    outputs["runner.log"] = (run_dir / "runner.log").read_text(errors="replace")
    for report in list(run_dir.rglob("*.md")) + list(run_dir.rglob("*.html")):
        outputs[str(report.relative_to(project))] = report.read_text(errors="replace")
    leaked = sorted(name for name, text in outputs.items() if secret in text)
    return {"outputs checked": len(outputs), "outputs with the canary": leaked,
            "run-dir entries": entries, "entries not 0600/0700": loose,
            "listening": listening, "not loopback": exposed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="kill -9 trials per kind")
    parser.add_argument("--documents", type=int, default=2000, help="hostile documents")
    parser.add_argument("--ctrl-c", type=int, default=20, help="Ctrl-C trials")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of 4 stacks at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hypothesis", action="store_true",
                        help="also the property test's long profile (5000 examples)")
    parser.add_argument("--documents-worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.documents_worker:
        documents_worker(*args.documents_worker)
        return
    work = Path(tempfile.mkdtemp(prefix="st-reliability-"))
    try:
        docs = hostile_documents(args.documents, args.seed)
        print(f"1. hostile documents: {docs['documents']} ({docs['refused']} refused, "
              f"{docs['loaded']} loaded)")  # fmt: skip
        print(f"   tracebacks: {len(docs['tracebacks'])}  over 1 s: {len(docs['hangs'])}  "
              f"slowest: {docs['slowest'] * 1000:.0f} ms  peak memory: {docs['peak_mb']:.0f} MB")
        print(f"   `stacktest config` on {docs['cli_runs']}: "
              f"{len(docs['cli_tracebacks'])} tracebacks")
        ratio = docs["total"] / max(docs["peer_total"], 1e-9)
        print(f"   loading, all: {docs['total']:.2f} s; peer (bare parse of the same bytes): "
              f"{docs['peer_total']:.2f} s; ratio {ratio:.1f}x")
        for line in [*docs["tracebacks"], *docs["hangs"], *docs["cli_tracebacks"]][:20]:
            print(f"     {line}")
        if args.hypothesis:
            started = time.monotonic()
            done = subprocess.run(
                [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=long",
                 "tests/unit/test_hostile_documents.py::"
                 "test_a_mutated_real_file_loads_or_is_one_config_error"],
                cwd=ROOT, capture_output=True, text=True, check=False,
            )  # fmt: skip
            verdict = "passed" if done.returncode == 0 else "FAILED:\n" + done.stdout[-2000:]
            print(f"   property test, 5000 examples: {verdict} "
                  f"({time.monotonic() - started:.0f} s)")  # fmt: skip
        print(f"2. kill -9 of the owner, {args.trials} trials each: processes left 2 s later")
        for moment, left in kill_trials(args.trials, work).items():
            print(f"   {moment:40} {sum(left)} in {len(left)} trials")
        print(f"3. Ctrl-C of a foreground `up`, {args.ctrl_c} trials")
        for moment, runs in ctrl_c_trials(args.ctrl_c, work).items():
            # -2: Ctrl-C before the interpreter had started stacktest; it died of SIGINT,
            # which a shell reports as 130 too
            codes = sorted({"130 (died of SIGINT)" if code == -2 else str(code)
                            for code, _, _ in runs})  # fmt: skip
            slowest = max((took for _, took, _ in runs), default=0)
            left = sum(n for _, _, n in runs)
            print(f"   {moment:16} exit codes {codes}; all gone within {slowest * 1000:.0f} ms; "
                  f"left: {left}")  # fmt: skip
        print(f"4. 4 stacks at once x {args.rounds} rounds: {concurrent_stacks(args.rounds, work)}")
        result = canary(work)
        print(f"5. canary password: in {len(result['outputs with the canary'])} of "
              f"{result['outputs checked']} outputs {result['outputs with the canary']}; "
              f"{len(result['entries not 0600/0700'])} of {result['run-dir entries']} "
              "run-dir entries not private")
        print(f"6. socket scan of a running stack (its servers, their groups, the owner): "
              f"{len(result['listening'])} listening sockets, "
              f"{len(result['not loopback'])} not on loopback {result['not loopback']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
