#!/usr/bin/env bash
# The headless browser of the UI test (tests/e2e/test_playground.py): Debian's chromium and its
# chromedriver, installed with apt only when missing. Idempotent and quiet; exits non-zero when the
# browser is still missing afterwards (no apt, not root, no registry), so callers can tell.
set -euo pipefail
have() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }
if ! have && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
    echo "browser.sh: installing chromium and chromium-driver with apt..." >&2
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; } \
        >"$log" 2>&1 || cat "$log" >&2
    rm -f "$log"
fi
have || { echo "browser.sh: /usr/bin/chromium or /usr/bin/chromedriver is missing" >&2; exit 1; }
