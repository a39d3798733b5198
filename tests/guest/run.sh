#!/usr/bin/env bash
# tests/guest/run.sh OUTDIR TEST SOCK [EXPORT] — boot the test guest (TCG) on an NBD export.
#
# OUTDIR is what tests/guest/build.sh built (it is built here if missing). TEST is write, read,
# writeread or loop (see build.sh). SOCK is the NBD unix socket, EXPORT the export name ("" for
# qemu-nbd's default export). Extra options for QEMU's nbd blockdev go in ES_GUEST_NBD_OPTS (e.g.
# ",reconnect-delay=10"), extra kernel arguments in ES_GUEST_APPEND (e.g. "es.loops=50"), the time
# limit in ES_GUEST_TIMEOUT (seconds, default 180).
#
# The serial console goes to stdout. Exit status: 0 if every expected ES-GUEST-*-OK line was printed,
# 1 otherwise (including ES-GUEST-ERROR, a BAD result or a timeout).
set -euo pipefail

OUT=${1:?usage: run.sh OUTDIR TEST SOCK [EXPORT]}
TEST=${2:?usage: run.sh OUTDIR TEST SOCK [EXPORT]}
SOCK=${3:?usage: run.sh OUTDIR TEST SOCK [EXPORT]}
EXPORT=${4-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

"$HERE/build.sh" "$OUT" >/dev/null

case "$TEST" in
  write) want=(ES-GUEST-WRITE-OK) ;;
  read) want=(ES-GUEST-READ-OK) ;;
  writeread) want=(ES-GUEST-WRITE-OK ES-GUEST-READ-OK) ;;
  loop) want=(ES-GUEST-LOOP-OK) ;;
  *) echo "run.sh: unknown test $TEST" >&2; exit 2 ;;
esac

# Commas in QEMU option values are escaped by doubling them.
blk="driver=nbd,node-name=disk0,server.type=unix,server.path=${SOCK//,/,,}"
[[ -n "$EXPORT" ]] && blk+=",export=${EXPORT//,/,,}"
blk+=${ES_GUEST_NBD_OPTS-}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
timeout --foreground -k 5 "${ES_GUEST_TIMEOUT:-180}" \
  qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 512 -nodefaults -display none \
  -no-reboot -serial stdio -monitor none \
  -kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 es.test=$TEST ${ES_GUEST_APPEND-}" \
  -blockdev "$blk" -device virtio-blk-pci,drive=disk0 </dev/null | tee "$log" || rc=$?
if ((rc == 124)); then
  echo "run.sh: guest timed out after ${ES_GUEST_TIMEOUT:-180} s" >&2
  exit 1
fi
for w in "${want[@]}"; do
  grep -q "^$w" "$log" || { echo "run.sh: guest did not print $w (qemu exit $rc)" >&2; exit 1; }
done
if grep -q -e '^ES-GUEST-ERROR' -e '-BAD' "$log"; then
  exit 1
fi
