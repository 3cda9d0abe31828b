# Sourced by the other scripts: a project virtualenv with the extension built from source.
# Idempotent: re-running rebuilds only what changed (cargo is incremental).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
export PATH="$ROOT/.venv/bin:$PATH"
EXTRAS="${EXTRAS:-test}"
python -m pip install -q -e ".[${EXTRAS}]"
