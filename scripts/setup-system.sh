#!/usr/bin/env bash
# Installs the system packages pmq builds and runs with, when they are missing.
# As root it uses apt-get; otherwise sudo; otherwise it says what to install and stops.
#   PMQ_SETUP_RDMA_VM=1  also installs the host tools of the soft-RoCE VM (npm run test:rdma)
set -euo pipefail

packages=(libucx-dev ucx-utils libpmem2-dev pkg-config g++ make python3)
if [ "${PMQ_SETUP_RDMA_VM:-0}" = 1 ]; then
  packages+=(qemu-system-x86 mmdebstrap e2fsprogs)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "pmq setup: missing system packages: ${missing[*]}" >&2
  echo "pmq setup: this is not a Debian/Ubuntu system; install UCX (>= 1.13, with headers)," \
       "PMDK libpmem2 (with headers) and pkg-config with your package manager" >&2
  exit 1
fi

if [ "$(id -u)" = 0 ]; then
  run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  run=(sudo)
else
  echo "pmq setup: missing system packages: ${missing[*]}" >&2
  echo "pmq setup: run as root, or install them yourself:" \
       "sudo apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "pmq setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have stale or empty package lists; update when an install fails.
if ! "${run[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  "${run[@]}" apt-get update -qq
  "${run[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
