#!/usr/bin/env bash
# The flags `podman build` and `podman run` need for the container tier, printed on one line:
# runc where it is installed (podman's default crun fails on some hosts' cgroups/rlimits), explicit
# ulimits, and the host's network (the containers reach the test PostgreSQL and GitHub emulator on
# loopback, and listen on their own loopback ports).
set -euo pipefail
runtime=""
for candidate in /usr/sbin/runc /usr/bin/runc; do
    if [[ -x $candidate ]]; then
        runtime="--runtime $candidate "
        break
    fi
done
echo "${runtime}--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network host"
