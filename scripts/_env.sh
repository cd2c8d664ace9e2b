# Sourced by scripts/demo and scripts/test: make .venv with authmw and the extras named by
# AUTHMW_EXTRAS installed (scripts/test: dev, the whole toolchain; scripts/demo: demo, only the
# runtime dependencies and uvicorn). Reinstalls only when pyproject.toml changed since.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
EXTRAS="${AUTHMW_EXTRAS:-dev}"
stamp=".venv/.authmw-installed-$EXTRAS"
# dev holds everything demo needs: a test venv serves the demo as it is.
if [ "$EXTRAS" = demo ] && [ -f .venv/.authmw-installed-dev ] && [ ! pyproject.toml -nt .venv/.authmw-installed-dev ]; then
    stamp=.venv/.authmw-installed-dev
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing authmw[$EXTRAS] into .venv" >&2
    .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]" >&2
    touch "$stamp"
fi
