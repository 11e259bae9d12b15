#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL server: `scripts/test_postgres.sh pytest ...`.
#
# Starts a PostgreSQL server in a temporary directory on 127.0.0.1 (a free port), exports
# DATABASE_URL for the command, and stops and deletes the server when the command ends, however
# it ends. initdb refuses to run as root, so as root the server runs as the unprivileged
# `nobody` user. Uses initdb/pg_ctl from PATH, else Debian's /usr/lib/postgresql/*/bin, else
# installs Debian's `postgresql` package (root only).
set -euo pipefail

find_bindir() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
            echo "$dir"
            return
        fi
    done
    return 1
}

BINDIR=$(find_bindir || true)
if [[ -z $BINDIR ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "PostgreSQL (initdb, pg_ctl) is not installed; install Debian's 'postgresql' package." >&2
        exit 1
    fi
    echo "Installing Debian's postgresql package for the PostgreSQL test run..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    BINDIR=$(find_bindir)
fi

PGTMP=$(mktemp -d /tmp/portal-pg.XXXXXX)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

as_server_user() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u nobody -- "$@"
    else
        "$@"
    fi
}

stop_server() {
    as_server_user "$BINDIR/pg_ctl" -D "$PGTMP/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PGTMP"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

if [[ $(id -u) -eq 0 ]]; then
    chown nobody "$PGTMP"
fi
as_server_user "$BINDIR/initdb" -D "$PGTMP/data" -U postgres --auth=trust -E UTF8 --no-locale >"$PGTMP/initdb.log" \
    || { cat "$PGTMP/initdb.log" >&2; exit 1; }
# A test server: durability off for speed, loopback only, socket in the temp dir.
as_server_user "$BINDIR/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -t 30 start \
    -o "-h 127.0.0.1 -p $PORT -k $PGTMP -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    >/dev/null || { cat "$PGTMP/server.log" >&2; exit 1; }

export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/portal"
echo "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT: $*" >&2
"$@"
