#!/usr/bin/env bash
# Run the whole test suite: lint, types, stacktest's unit and real-server integration
# tests, then examples/taskflow's integration suite against its real stack (through
# `stacktest test`). Sets itself up on first use. Extra arguments go to the first pytest;
# STACKTEST_SKIP_TASKFLOW=1 leaves the taskflow suite out (for a quick local loop).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
echo "==> ruff"
ruff check src tests benchmarks examples scripts
echo "==> mypy (strict, src/)"
mypy
echo "==> pytest: stacktest"
python -m pytest -n "${STACKTEST_TEST_WORKERS:-2}" --dist loadgroup "$@"
echo "==> pytest: examples/quickstart (stacktest test)"
python -m stacktest test --file examples/quickstart/stack.toml -- -p no:cacheprovider -q examples/quickstart/tests
echo "==> pytest: examples/quickstart from its docker-compose.yml (stacktest test)"
python -m stacktest test --file examples/quickstart/docker-compose.yml -- -p no:cacheprovider -q examples/quickstart/tests
if [ "${STACKTEST_SKIP_TASKFLOW:-0}" != "1" ]; then
    echo "==> pytest: examples/taskflow (stacktest test)"
    cd "$ROOT/examples/taskflow"
    python -m stacktest test -- -p no:cacheprovider -q
fi
