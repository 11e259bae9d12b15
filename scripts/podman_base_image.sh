#!/usr/bin/env bash
# The container tier (tests/container) builds the project's Dockerfile, whose base image is
# python:3.11-slim. Where no container registry is reachable, this builds a local stand-in with the
# same name from Debian's own packages (debootstrap + python3.11), once: podman keeps it in its
# storage and later runs reuse it. Usage: scripts/podman_base_image.sh [IMAGE]
#
# podman needs, on this kind of machine: --runtime /usr/sbin/runc (crun fails on cgroups/rlimits),
# --ulimit nofile/nproc, --network host (scripts/podman_flags.sh prints them).
set -euo pipefail
IMAGE=${1:-docker.io/library/python:3.11-slim}
HERE=$(cd "$(dirname "$0")" && pwd)
read -r -a FLAGS <<<"$("$HERE/podman_flags.sh")"

if podman image exists "$IMAGE"; then
    exit 0
fi
# Try the registry first (a machine that can pull needs no stand-in).
if timeout 60 podman pull -q "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d /tmp/portal-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "Building a stand-in $IMAGE from Debian bookworm ($MIRROR)..." >&2
debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb
tar -C "$WORK/rootfs" -c . | podman import -q - localhost/portal-debian-bookworm:minbase >/dev/null

mkdir "$WORK/ctx"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/ctx/ca-certificates.crt"
cat >"$WORK/ctx/Containerfile" <<'CONTAINERFILE'
FROM localhost/portal-debian-bookworm:minbase
# Debian's python3.11 where python:3.11-slim has its own build: the same interpreter version,
# python/pip on PATH in /usr/local/bin, pip allowed to install into the system interpreter.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3.11 python3-pip python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3.11 /usr/local/bin/python \
    && ln -s /usr/bin/python3.11 /usr/local/bin/python3 \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED
# This machine's CA bundle, so pip inside a build trusts the package index the way the host does.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
CONTAINERFILE
podman build -q "${FLAGS[@]}" --pull=never --format docker -t "$IMAGE" "$WORK/ctx" >/dev/null
podman rmi -f localhost/portal-debian-bookworm:minbase >/dev/null 2>&1 || true
