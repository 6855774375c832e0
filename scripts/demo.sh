#!/usr/bin/env bash
# The main job: bring up examples/quickstart for real (Postgres, Valkey, NATS and an
# HTTP service using all three), prove each works with a round trip, tear it down,
# print a summary and write a report. Sets itself up on first use.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec python scripts/demo.py "$@"
