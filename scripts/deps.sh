#!/usr/bin/env bash
# scripts/deps.sh — install the Debian 12 packages the tests and benchmarks need.
#
# Idempotent and fast when everything is present: one `dpkg-query` checks the list, and
# `apt-get update` + `apt-get install` run only when a package is missing. Installing needs
# root (or passwordless sudo); on a warm machine no privileges are needed.
# Fails loudly (non-zero exit, message on stderr) if anything cannot be installed.
# The Go toolchain (go.mod's version) is not a Debian 12 package: it must already be on PATH.
set -euo pipefail

PKGS=(
  qemu-utils qemu-system-x86 qemu-block-extra  # qemu-io, qemu-img, qemu-nbd, the TCG guest
  nbdkit libnbd-bin python3-libnbd             # nbdinfo, nbdcopy, nbdsh; reference server
  fio                                          # nbd engine: interop tests and bench/nbd.sh
  busybox-static cpio xz-utils                 # tests/guest initramfs (.ko.xz modules)
  iproute2 procps                              # ip netns; ps/pgrep
  gcc libc6-dev                                # cgo, which `go test -race` needs
)

# Prints the packages of PKGS that are not fully installed.
missing_pkgs() {
  local installed
  installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PKGS[@]}" 2>/dev/null |
    awk '$2 == "install" && $3 == "ok" && $4 == "installed" { print $1 }' || true)
  local p
  for p in "${PKGS[@]}"; do
    grep -qx -- "$p" <<<"$installed" || echo "$p"
  done
}

mapfile -t missing < <(missing_pkgs)
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "deps.sh: installing ${missing[*]}" >&2
SUDO=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "deps.sh: missing packages (${missing[*]}) and not root: run as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update || { echo "deps.sh: apt-get update failed" >&2; exit 1; }
"${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
  { echo "deps.sh: apt-get install ${missing[*]} failed" >&2; exit 1; }

mapfile -t still < <(missing_pkgs)
if ((${#still[@]} != 0)); then
  echo "deps.sh: still not installed after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "deps.sh: installed ${missing[*]}" >&2
