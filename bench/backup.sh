#!/usr/bin/env bash
# bench/backup.sh — backups (issue 4, "Must show" 5 and 6): Extrasphere vs restic, one run.
#
# A SIZE (4 GiB) image with realistic content: 38% random, 20% repeated (a 64 MiB random block written
# again and again), 42% zeros (left sparse). The same image is a raw file (for restic, which backs up
# files) and an Extrasphere volume (imported from it). Both repositories are local directories on the
# same disk and both are encrypted (restic always is; Extrasphere gets --password-file).
#   full:        `extrasphere backup run` vs `restic backup IMAGE`, wall time and MiB/s
#   change:      1% of the image in random 64 KiB blocks, written into the file and, through NBD
#                (python3-libnbd), into the volume: the same bytes at the same offsets
#   incremental: the second backup of each; Extrasphere reads only what CBT recorded, restic re-reads
#                the file (goal: incremental <= 5% of the full; stored bytes <= 2x the changed bytes)
#   restore:     `extrasphere restore --to FILE` vs `restic restore latest --target DIR`, MiB/s
#                (goal >= 1.0x), and both restores compared with the image (cmp)
#   size:        the repositories' sizes on disk (du)
# Results go to bench/out/backup/ and the markdown table is printed; compare figures only within one
# run (the machine is shared and noisy).
#
# Usage: bench/backup.sh   (after make build; restic from Debian, installed by scripts/deps.sh)
# Environment: EXTRASPHERE_BIN=bin/extrasphere  SIZE_MIB=4096  CHANGE_PCT=1  KEEP=1 (keep the work dir)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench/out/backup"
WORK="$OUT/work"
SIZE_MIB=${SIZE_MIB:-4096}
CHANGE_PCT=${CHANGE_PCT:-1}
BIN=${EXTRASPHERE_BIN:-$ROOT/bin/extrasphere}
PY=/usr/bin/python3
CMDLINE="$0"
for v in EXTRASPHERE_BIN SIZE_MIB CHANGE_PCT; do
  [[ -n "${!v:-}" ]] && CMDLINE="$v=${!v} $CMDLINE"
done

die() { echo "bench/backup.sh: $*" >&2; exit 1; }
log() { echo "bench/backup.sh: $(date +%T) $*" >&2; }
for tool in restic nbdcopy cmp du "$PY"; do
  command -v "$tool" >/dev/null || die "$tool is missing: run make deps"
done
[[ -x "$BIN" ]] || die "$BIN is missing: run make build (or set EXTRASPHERE_BIN)"
"$PY" -c 'import nbd' 2>/dev/null || die "python3-libnbd is missing: run make deps"

rm -rf "$WORK" "$OUT"/*.log "$OUT"/*.md
mkdir -p "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
now() { date +%s.%N; }
secs() { "$PY" -c "print(f'{$2 - $1:.2f}')"; }

# --- the image ------------------------------------------------------------------------------------
IMG="$WORK/image.raw"
RAND_MIB=$((SIZE_MIB * 38 / 100))
REP_MIB=$((SIZE_MIB * 20 / 100 / 64 * 64))
log "image: ${SIZE_MIB} MiB (${RAND_MIB} MiB random, ${REP_MIB} MiB repeated, the rest zeros)"
truncate -s "${SIZE_MIB}M" "$IMG"
head -c "${RAND_MIB}M" /dev/urandom | dd of="$IMG" conv=notrunc bs=1M status=none
head -c 64M /dev/urandom >"$WORK/block"
for ((i = 0; i < REP_MIB / 64; i++)); do
  dd if="$WORK/block" of="$IMG" bs=1M seek=$((RAND_MIB + i * 64)) conv=notrunc status=none
done
rm "$WORK/block"
sync

# --- Extrasphere ----------------------------------------------------------------------------------
ES_DATA="$WORK/es"
es() { "$BIN" --data="$ES_DATA" --api="unix:$ES_DATA/api.sock" "$@"; }
mkdir -p "$ES_DATA"
"$BIN" serve --data "$ES_DATA" --nbd "" --nbd-socket "$ES_DATA/nbd.sock" --api "unix:$ES_DATA/api.sock" \
  >"$OUT/extrasphere.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do es volume list >/dev/null 2>&1 && break; sleep 0.1; done
es volume list >/dev/null 2>&1 || die "extrasphere API did not answer: see $OUT/extrasphere.log"
URI="nbd+unix:///bk?socket=$ES_DATA/nbd.sock"
echo "bench-password" >"$WORK/pw"
export RESTIC_PASSWORD=bench-password
es volume import bk "$IMG" >/dev/null 2>&1
es repo init "$WORK/es-repo" --password-file "$WORK/pw" >/dev/null
restic init --repo "$WORK/restic-repo" >/dev/null 2>&1

es_backup() { # prints "seconds bytes_stored"
  local t0 t1 out
  sync
  t0=$(now)
  es backup run bk >/dev/null 2>>"$OUT/cli.log"
  t1=$(now)
  out=$(es backup list --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[-1]["stats"]["bytes_stored"])')
  echo "$(secs "$t0" "$t1") $out"
}
restic_backup() { # prints "seconds bytes_added"
  local t0 t1 added
  sync
  t0=$(now)
  restic --repo "$WORK/restic-repo" backup --json "$IMG" >"$WORK/restic-backup.json" 2>/dev/null
  t1=$(now)
  added=$("$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("message_type") == "summary": print(d["data_added"])' "$WORK/restic-backup.json")
  echo "$(secs "$t0" "$t1") $added"
}

log "full backups"
read -r ES_FULL ES_FULL_STORED < <(es_backup)
read -r R_FULL R_FULL_ADDED < <(restic_backup)

log "changing ${CHANGE_PCT}% in random 64 KiB blocks (file and volume)"
CHANGED=$("$PY" - "$IMG" "$URI" "$SIZE_MIB" "$CHANGE_PCT" <<'PYEOF'
import os, random, sys, nbd
img, uri, size_mib, pct = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
blocks = size_mib * 16
n = int(blocks * pct / 100)
rnd = random.Random(7)
chosen = rnd.sample(range(blocks), n)
h = nbd.NBD()
h.connect_uri(uri)
with open(img, "r+b") as f:
    for b in chosen:
        data = os.urandom(65536)
        f.seek(b * 65536)
        f.write(data)
        h.pwrite(data, b * 65536)
h.flush()
h.shutdown()
print(n * 65536)
PYEOF
)
sync

log "incremental backups"
read -r ES_INC ES_INC_STORED < <(es_backup)
read -r R_INC R_INC_ADDED < <(restic_backup)

log "restores"
sync
t0=$(now)
ID=$(es backup list --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
es restore "$ID" --to "$WORK/es-restored.raw" >/dev/null 2>&1
t1=$(now)
ES_REST=$(secs "$t0" "$t1")
cmp "$IMG" "$WORK/es-restored.raw" || die "the Extrasphere restore differs from the image"
rm -f "$WORK/es-restored.raw"
sync
t0=$(now)
restic --repo "$WORK/restic-repo" restore latest --target "$WORK/restic-restored" >/dev/null 2>&1
t1=$(now)
sync -d "$WORK/restic-restored$IMG" # Extrasphere's restore ends with fdatasync: compare like with like
t2=$(now)
R_REST=$(secs "$t0" "$t1")
R_REST_SYNC=$(secs "$t0" "$t2")
cmp "$IMG" "$WORK/restic-restored$IMG" || die "the restic restore differs from the image"
rm -rf "$WORK/restic-restored"

ES_SIZE=$(du -sb "$WORK/es-repo" | cut -f1)
R_SIZE=$(du -sb "$WORK/restic-repo" | cut -f1)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

"$PY" - "$SIZE_MIB" "$CHANGED" "$ES_FULL" "$R_FULL" "$ES_INC" "$R_INC" "$ES_INC_STORED" "$R_INC_ADDED" \
  "$ES_REST" "$R_REST" "$ES_SIZE" "$R_SIZE" "$ES_FULL_STORED" "$R_FULL_ADDED" "$R_REST_SYNC" <<'PYEOF' | tee "$OUT/results.md"
import sys
a = sys.argv[1:]
size_mib, changed = int(a[0]), int(a[1])
esf, rf, esi, ri = map(float, a[2:6])
esi_st, ri_add = int(a[6]), int(a[7])
esr, rr = float(a[8]), float(a[9])
ess, rs, esf_st, rf_add = map(int, a[10:14])
rrs = float(a[14])
mib = lambda b: b / 2**20
yes = lambda ok: "yes" if ok else "**no**"
print("| Figure | Extrasphere | restic 0.14 | Ratio | Goal | Met |")
print("|---|---|---|---|---|---|")
print(f"| full backup of a {size_mib} MiB image (s; MiB/s) | {esf:.2f} ({size_mib/esf:.0f}) | {rf:.2f} ({size_mib/rf:.0f}) | {esf/rf:.2f}x the time |  |  |")
print(f"| incremental after {mib(changed):.0f} MiB changed (s) | {esi:.2f} | {ri:.2f} | {esi/ri:.2f}x the time |  |  |")
print(f"| incremental / full time | {100*esi/esf:.1f}% | {100*ri/rf:.1f}% |  | <= 5% | {yes(esi/esf <= 0.05)} |")
print(f"| stored by the incremental (MiB; per changed byte) | {mib(esi_st):.1f} ({esi_st/changed:.2f}x) | {mib(ri_add):.1f} ({ri_add/changed:.2f}x) |  | <= 2x | {yes(esi_st/changed <= 2)} |")
print(f"| restore, data on disk: ours ends with fdatasync, restic's + `sync -d` (s; MiB/s) | {esr:.2f} ({size_mib/esr:.0f}) | {rrs:.2f} ({size_mib/rrs:.0f}) | {rrs/esr:.2f}x restic's speed | >= 1.0x | {yes(rrs/esr >= 1.0)} |")
print(f"| restore, restic without the sync (s; MiB/s) | {esr:.2f} ({size_mib/esr:.0f}) | {rr:.2f} ({size_mib/rr:.0f}) | {rr/esr:.2f}x restic's speed |  |  |")
print(f"| repository size after both backups (MiB) | {mib(ess):.0f} | {mib(rs):.0f} | {ess/rs:.2f}x |  |  |")
print(f"| stored by the full backup (MiB) | {mib(esf_st):.0f} | {mib(rf_add):.0f} |  |  |  |")
PYEOF
{
  echo
  echo "Command: \`$CMDLINE\` (commit $COMMIT, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at start $LOAD_START, total $(($(date +%s) - T_START)) s). restic $(restic version | cut -d' ' -f2); both repositories encrypted, on the same disk as the image; restores checked with cmp."
} | tee -a "$OUT/results.md"
