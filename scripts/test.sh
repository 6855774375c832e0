#!/usr/bin/env bash
# Run the whole test suite (lint, types, unit and real-server integration tests).
# Sets itself up on first use. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
echo "==> ruff"
ruff check src tests benchmarks examples
echo "==> mypy (strict, src/)"
mypy
echo "==> pytest"
exec python -m pytest -n "${STACKTEST_TEST_WORKERS:-2}" "$@"
