#!/usr/bin/env bash
# install-deps.sh - install the Debian 12 packages Ember builds, tests and
# benchmarks with, if any is missing. Needs root (or sudo) only when
# something must be installed.
set -euo pipefail

PKGS=(
  build-essential pkg-config python3 curl
  libseccomp-dev linux-libc-dev libjson-c-dev liburing-dev libcmocka-dev
  clang libclang-rt-14-dev           # libFuzzer harnesses and sanitizers
  busybox-static linux-source-6.1    # guest images
  bc bison flex libelf-dev libssl-dev cpio e2fsprogs xz-utils dwarves lz4  # kernel build
  qemu-system-x86                    # the benchmark peer only
  python3-matplotlib                 # make bench-density draws its plot
  fio                                # host-side disk figures next to the guests'
  iproute2 iputils-ping              # taps in network namespaces (tests)
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "[deps] all ${#PKGS[@]} packages present"
  exit 0
fi
echo "[deps] installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
