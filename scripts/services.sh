# Sourced by scripts/test: make sure the Redis and PostgreSQL server binaries and the headless
# browser of the demo's browser test (Debian's chromium and chromium-driver) exist.
# The test fixtures use the servers on 127.0.0.1:6379 / :5432 (or AUTHMW_REDIS_URL /
# AUTHMW_POSTGRES_URL) when they answer, and otherwise start throwaway servers on free
# loopback ports themselves; for that they need the binaries, which this installs if missing.
set -euo pipefail

have_pg_bin() {
    command -v initdb >/dev/null 2>&1 && return 0
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
have_pg_bin || missing+=(postgresql)
# The demo's browser test (tests/cli/test_demo_browser.py) drives headless Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} (needed by the backend and browser tests)" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >&2
fi
