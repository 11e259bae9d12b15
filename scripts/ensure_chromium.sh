#!/usr/bin/env bash
# The browser tests (tests/e2e) drive Debian's Chromium at /usr/bin/chromium. Install it when
# missing and we are root; otherwise the tests skip with a reason (or fail in CI, CI=true).
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
    exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium package for the browser tests..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
elif [[ ${CI:-} == true ]]; then
    echo "/usr/bin/chromium is missing and cannot be installed (not root): the browser tests will fail." >&2
else
    echo "/usr/bin/chromium is missing (install Debian's chromium package): the browser tests will be skipped." >&2
fi
