#!/usr/bin/env bash
# The main job: examples/taskflow (orchestrator, workers, reducer, Postgres, NATS) and
# its integration suite, run for real through `stacktest test`; prints a summary per
# category and writes reports/taskflow.md. Sets itself up on first use.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec python scripts/demo.py "$@"
