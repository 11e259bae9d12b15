#!/usr/bin/env bash
# The accessibility checks of the browser tests run axe-core (npm) in the page: install the
# version pinned in tests/e2e/package-lock.json when it is missing or the lockfile changed.
# Without npm the tests skip with a reason (or fail in CI, CI=true).
set -euo pipefail
cd "$(dirname "$0")/../tests/e2e"
installed=node_modules/.package-lock.json
if [[ -f node_modules/axe-core/axe.min.js && -f $installed && ! package-lock.json -nt $installed ]]; then
    exit 0
fi
if command -v npm >/dev/null; then
    echo "Installing axe-core for the browser tests (npm ci in tests/e2e)..." >&2
    npm ci --no-audit --no-fund --silent
elif [[ ${CI:-} == true ]]; then
    echo "npm is missing: axe-core cannot be installed and the accessibility tests will fail." >&2
else
    echo "npm is missing: the accessibility tests will be skipped." >&2
fi
