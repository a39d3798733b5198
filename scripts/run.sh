#!/usr/bin/env bash
# scripts/run.sh [DATA_DIR] — what `make run` does: start the daemon in the foreground with a demo volume.
#
# Runs `bin/extrasphere serve --data DATA_DIR` (default ./extrasphere-data) as this process (exec), so
# Ctrl-C stops it cleanly and its exit status is the script's. A detached helper waits for the API,
# creates the volume "demo" (1G, sparse) if it does not exist, and prints its nbdinfo and how to attach
# it. The NBD TCP address is EXTRASPHERE_NBD (default 127.0.0.1:10809; "" serves the unix socket only);
# NBD over TCP requires TLS and a client certificate, so the helper also makes one for the demo volume
# (client "demo", in DATA_DIR/demo-certs) and prints the nbds:// URI that uses it. Further `serve` flags
# can be given in EXTRASPHERE_SERVE_FLAGS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${EXTRASPHERE_BIN:-$ROOT/bin/extrasphere}
DATA=${1:-${EXTRASPHERE_DATA_DIR:-./extrasphere-data}}
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
[[ -x "$BIN" ]] || { echo "run.sh: $BIN is missing: run make build" >&2; exit 1; }

export EXTRASPHERE_DATA="$DATA"
export EXTRASPHERE_API="unix:$DATA/api.sock"
SOCK="$DATA/nbd.sock"
NBD_TCP=${EXTRASPHERE_NBD-127.0.0.1:10809}

announce() {
  local i
  for i in $(seq 150); do
    "$BIN" volume list >/dev/null 2>&1 && break
    kill -0 "$DAEMON" 2>/dev/null || return 0 # the daemon exited: it says why itself
    sleep 0.1
  done
  if ! "$BIN" volume show demo >/dev/null 2>&1; then
    "$BIN" volume create demo --size 1G >/dev/null || { echo "run.sh: could not create volume demo" >&2; return 0; }
  fi
  local uri="nbd+unix:///demo?socket=$SOCK" tcp=""
  if [[ -n "$NBD_TCP" ]]; then
    local certs="$DATA/demo-certs"
    if [[ ! -e "$certs/client-cert.pem" ]]; then
      "$BIN" client add demo --volumes demo --out "$certs" >/dev/null ||
        echo "run.sh: could not make the demo client certificate" >&2
    fi
    tcp="
==> Over TCP (TLS, client certificate in $certs):
    nbdinfo 'nbds://$NBD_TCP/demo?tls-certificates=$certs'
    $BIN attach demo --tcp --qemu --tls-dir $certs"
  fi
  cat <<EOF

==> Extrasphere is serving $DATA  (Ctrl-C stops it)
==> Volume demo: $uri
$(nbdinfo "$uri" 2>&1 | sed 's/^/    /')$tcp
==> Attach it to QEMU (add these arguments; --libvirt prints the <disk> XML):
$("$BIN" attach demo --qemu 2>&1 | sed 's/^/    /')
==> Use the CLI from another shell:
    export EXTRASPHERE_DATA=$DATA
    $BIN volume list
    $BIN volume create vm1-disk0 --size 20G

EOF
}

DAEMON=$$ # after exec, this PID is the daemon
# Detach the helper (double fork) so the daemon never has to reap it.
( (announce) </dev/null & )
# shellcheck disable=SC2086
exec "$BIN" serve --data "$DATA" --nbd "$NBD_TCP" ${EXTRASPHERE_SERVE_FLAGS-}
