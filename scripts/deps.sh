#!/usr/bin/env bash
# scripts/deps.sh — install the Debian 12 packages the tests and benchmarks need.
#
# Idempotent and fast when everything is present: one `dpkg-query` checks the list, and
# `apt-get update` + `apt-get install` run only when a package is missing. Installing needs
# root (or passwordless sudo); on a warm machine no privileges are needed.
# Fails loudly (non-zero exit, message on stderr) if anything cannot be installed.
# The Go toolchain (go.mod's version) is not a Debian 12 package: it must already be on PATH.
# Go tools the tests run (versitygw, the S3 server for the backup repository tests) are built with
# `go install` into bin/tools/ (override: ES_TOOLS), once; tests look there.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${ES_TOOLS:-$ROOT/bin/tools}
GO=${GO:-go}
GO_TOOLS=(
  "versitygw github.com/versity/versitygw/cmd/versitygw@v1.8.0" # real S3 server: backup repo tests
)

PKGS=(
  qemu-utils qemu-system-x86 qemu-block-extra  # qemu-io, qemu-img, qemu-nbd, the TCG guest
  nbdkit libnbd-bin python3-libnbd             # nbdinfo, nbdcopy, nbdsh; reference server
  fio                                          # nbd engine: interop tests and bench/nbd.sh
  restic                                       # bench/backup.sh: the peer for backups
  busybox-static cpio xz-utils                 # tests/guest initramfs (.ko.xz modules)
  iproute2 procps                              # ip netns; ps/pgrep
  gcc libc6-dev                                # cgo, which `go test -race` needs
  curl                                         # raw HTTP checks of the API (tests/api_auth_test.go)
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

install_pkgs() {
  local missing still
  mapfile -t missing < <(missing_pkgs)
  ((${#missing[@]} == 0)) && return 0
  echo "deps.sh: installing ${missing[*]}" >&2
  local sudo=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "deps.sh: missing packages (${missing[*]}) and not root: run as root" >&2
      return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update || { echo "deps.sh: apt-get update failed" >&2; return 1; }
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
    { echo "deps.sh: apt-get install ${missing[*]} failed" >&2; return 1; }
  mapfile -t still < <(missing_pkgs)
  if ((${#still[@]} != 0)); then
    echo "deps.sh: still not installed after apt-get install: ${still[*]}" >&2
    return 1
  fi
  echo "deps.sh: installed ${missing[*]}" >&2
}

# Builds each GO_TOOLS entry into $TOOLS unless the pinned version is there already
# ($TOOLS/.NAME.version records what was built).
install_go_tools() {
  local entry name pkg
  for entry in "${GO_TOOLS[@]}"; do
    read -r name pkg <<<"$entry"
    [[ -x "$TOOLS/$name" && "$(cat "$TOOLS/.$name.version" 2>/dev/null)" == "$pkg" ]] && continue
    command -v "$GO" >/dev/null || { echo "deps.sh: $GO not found: cannot build $pkg" >&2; return 1; }
    echo "deps.sh: go install $pkg (once; about a minute)" >&2
    mkdir -p "$TOOLS"
    GOBIN="$TOOLS" CGO_ENABLED=0 "$GO" install "$pkg" || { echo "deps.sh: go install $pkg failed" >&2; return 1; }
    [[ -x "$TOOLS/$name" ]] || { echo "deps.sh: go install $pkg made no $TOOLS/$name" >&2; return 1; }
    echo "$pkg" >"$TOOLS/.$name.version"
  done
}

install_pkgs
install_go_tools
