#!/usr/bin/env bash
# The container tier (tests/container) builds and runs the Dockerfile with podman. Install Debian's
# podman, runc, debootstrap and catatonit (for the stand-in base image, scripts/podman_base_image.sh) when
# missing and we are root; otherwise the tier skips with a reason (or fails in CI, CI=true).
set -euo pipefail
missing=()
command -v podman >/dev/null || missing+=(podman)
[[ -x /usr/sbin/runc || -x /usr/bin/runc ]] || missing+=(runc)
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
# podman kube play's pod needs an infra ("pause") container, built from catatonit.
command -v catatonit >/dev/null || [[ -x /usr/libexec/podman/catatonit ]] || missing+=(catatonit)
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]] && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)  # e.g. a CI runner: not root, but allowed to install packages
fi
if { [[ $(id -u) -eq 0 ]] || [[ ${#sudo[@]} -gt 0 ]]; } && command -v apt-get >/dev/null; then
    echo "Installing Debian's ${missing[*]} for the container tier..." >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" uidmap >/dev/null
elif [[ ${CI:-} == true ]]; then
    echo "${missing[*]} missing and cannot be installed (not root): the container tier will fail." >&2
else
    echo "${missing[*]} missing (install Debian's packages): the container tier will be skipped." >&2
fi
