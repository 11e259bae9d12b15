#!/usr/bin/env bash
# The sign-in tests (tests/oidc) run a real OpenID Provider: npm's oidc-provider, installed
# here from package-lock.json once (again only when the lock file changes).
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.installed-$(sha1sum package-lock.json | cut -c1-12)
if [[ -f $stamp ]]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "npm is missing (install Node.js 20+): the sign-in tests cannot start their OpenID Provider." >&2
    exit 1
fi
echo "Installing the test OpenID Provider (npm ci in tests/oidc)..." >&2
rm -rf node_modules
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
