#!/usr/bin/env bash
# The slow-client tests (tests/production/test_slow_clients.py) run deploy/nginx/portal.conf in
# Debian's nginx. Install it when missing and we are root; otherwise those tests skip with a reason
# (or fail in CI, CI=true). The package's service is not started: the tests run their own nginx.
set -euo pipefail
if command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; then
    exit 0
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "Installing Debian's nginx package for the reverse-proxy tests..." >&2
    # Keep the package's postinst from starting a system nginx on port 80 (no systemd needed).
    policy=/usr/sbin/policy-rc.d
    created_policy=false
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=true
    fi
    trap '[[ $created_policy == true ]] && rm -f "$policy"' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
elif [[ ${CI:-} == true ]]; then
    echo "nginx is missing and cannot be installed (not root): the reverse-proxy tests will fail." >&2
else
    echo "nginx is missing (install Debian's nginx package): the reverse-proxy tests will be skipped." >&2
fi
