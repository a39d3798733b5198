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
#   thin:        a thin THIN_MIB (10 GiB) volume holding DATA_MIB (2 GiB) of random data in 8 pieces vs a
#                DATA_MIB volume holding the same bytes, each backed up in full into a new repository, twice,
#                alternating: a full backup reads only allocated ranges (goal: thin <= 1.2x the dense time)
#   memory:      the daemon's VmRSS when it answers (before any job), its peak during the full backup and
#                the restore (sampled every 0.2 s), and idle 2 s after each (goal: idle <= 2x the start)
# Results go to bench/out/backup/ and the markdown table is printed; compare figures only within one
# run (the machine is shared and noisy).
#
# Usage: bench/backup.sh   (after make build; restic from Debian, installed by scripts/deps.sh)
# Environment: EXTRASPHERE_BIN=bin/extrasphere  SIZE_MIB=4096  CHANGE_PCT=1  THIN_MIB=10240  DATA_MIB=2048
#              KEEP=1 (keep the work dir)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench/out/backup"
WORK="$OUT/work"
SIZE_MIB=${SIZE_MIB:-4096}
CHANGE_PCT=${CHANGE_PCT:-1}
BIN=${EXTRASPHERE_BIN:-$ROOT/bin/extrasphere}
PY=/usr/bin/python3
CMDLINE="$0"
THIN_MIB=${THIN_MIB:-10240}
DATA_MIB=${DATA_MIB:-2048}
for v in EXTRASPHERE_BIN SIZE_MIB CHANGE_PCT THIN_MIB DATA_MIB; do
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
ES_PID=$!
PIDS+=("$ES_PID")
for _ in $(seq 100); do es volume list >/dev/null 2>&1 && break; sleep 0.1; done
es volume list >/dev/null 2>&1 || die "extrasphere API did not answer: see $OUT/extrasphere.log"
rss() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$ES_PID/status"; } # KiB
RSS_START=$(rss)
# The sampler appends "seconds-since-epoch KiB" every 0.2 s; peak T0 T1 is the largest between two times.
(while kill -0 "$ES_PID" 2>/dev/null; do echo "$(date +%s.%N) $(rss)"; sleep 0.2; done) >"$WORK/rss.trace" 2>/dev/null &
PIDS+=("$!")
peak() { awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b && $2 > m { m = $2 } END { print m + 0 }' "$WORK/rss.trace"; }
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
T0=$(now)
read -r ES_FULL ES_FULL_STORED < <(es_backup)
T1=$(now)
sleep 2
RSS_AFTER_BACKUP=$(rss)
RSS_PEAK_BACKUP=$(peak "$T0" "$T1")
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
sleep 2
RSS_AFTER_RESTORE=$(rss)
RSS_PEAK_RESTORE=$(peak "$t0" "$t1")
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

log "thin: ${THIN_MIB} MiB volume holding ${DATA_MIB} MiB in 8 pieces vs a ${DATA_MIB} MiB volume"
head -c "${DATA_MIB}M" /dev/urandom >"$WORK/data.raw"
truncate -s "${THIN_MIB}M" "$WORK/thin.raw"
PIECE=$((DATA_MIB / 8))
for ((i = 0; i < 8; i++)); do
  dd if="$WORK/data.raw" of="$WORK/thin.raw" bs=1M skip=$((i * PIECE)) seek=$((i * THIN_MIB / 8)) count="$PIECE" \
    conv=notrunc,sparse status=none
done
es volume import dense "$WORK/data.raw" >/dev/null 2>&1
es volume import thin "$WORK/thin.raw" >/dev/null 2>&1
rm -f "$WORK/data.raw" "$WORK/thin.raw"
for r in 1 2; do
  for v in dense thin; do
    es repo init "$WORK/es-repo-$v$r" --name "$v$r" --password-file "$WORK/pw" >/dev/null
  done
done
sleep 2
RSS_PRE_THIN=$(rss)
# es_full VOLUME REPO: a full backup into a new repository; prints "seconds bytes_read rss_kib", the
# daemon's RSS 2 s after the job (before `backup list`, whose decoded manifests are not a job's memory).
es_full() {
  local t0 t1 r
  sync
  t0=$(now)
  es backup run "$1" --repo "$2" >/dev/null 2>>"$OUT/cli.log"
  t1=$(now)
  sleep 2
  r=$(rss)
  echo "$(secs "$t0" "$t1") $(es backup list --repo "$2" --json |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)[-1]["stats"]["bytes_read"])') $r"
}
# Two alternating runs each (dense, thin, dense, thin); the faster run of each counts, which filters
# out most of what other jobs on a shared machine add.
read -r DENSE_T1 DENSE_READ _ < <(es_full dense dense1)
read -r THIN_T1 THIN_READ _ < <(es_full thin thin1)
read -r DENSE_T2 _ _ < <(es_full dense dense2)
read -r THIN_T2 _ RSS_END < <(es_full thin thin2)
DENSE_T=$("$PY" -c "print(min($DENSE_T1, $DENSE_T2))")
THIN_T=$("$PY" -c "print(min($THIN_T1, $THIN_T2))")

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
"$PY" - "$THIN_MIB" "$DATA_MIB" "$THIN_T" "$THIN_READ" "$DENSE_T" "$DENSE_READ" "$THIN_T1 $THIN_T2" \
  "$DENSE_T1 $DENSE_T2" <<'PYEOF' | tee -a "$OUT/results.md"
import sys
thin_mib, data_mib = int(sys.argv[1]), int(sys.argv[2])
tt, tr, dt, dr = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
truns, druns = sys.argv[7].replace(" ", ", "), sys.argv[8].replace(" ", ", ")
print()
print(f"| Figure | thin {thin_mib} MiB volume, {data_mib} MiB written | {data_mib} MiB volume, same data | Ratio | Goal | Met |")
print("|---|---|---|---|---|---|")
print(f"| full backup into a new repository, faster of 2 alternating runs (s; runs) | {tt:.2f} ({truns}) | {dt:.2f} ({druns}) | {tt/dt:.2f}x the time | <= 1.2x | {'yes' if tt/dt <= 1.2 else '**no**'} |")
print(f"| bytes read by the backup (MiB) | {tr/2**20:.0f} | {dr/2**20:.0f} |  |  |  |")
PYEOF
"$PY" - "$RSS_START" "$RSS_PEAK_BACKUP" "$RSS_AFTER_BACKUP" "$RSS_PEAK_RESTORE" "$RSS_AFTER_RESTORE" "$RSS_PRE_THIN" "$RSS_END" <<'PYEOF' | tee -a "$OUT/results.md"
import sys
start, pb, ab, pr, ar, pre, end = (int(x) / 1024 for x in sys.argv[1:])
yes = lambda ok: "yes" if ok else "**no**"
print()
print("| Daemon memory (VmRSS, MiB) | MiB | / start | Goal | Met |")
print("|---|--:|--:|---|---|")
print(f"| started, API answering, no job yet | {start:.1f} | 1.00x |  |  |")
print(f"| peak during the full backup | {pb:.1f} | {pb/start:.2f}x |  |  |")
print(f"| idle, 2 s after the full backup | {ab:.1f} | {ab/start:.2f}x | <= 2x | {yes(ab <= 2*start)} |")
print(f"| peak during the restore | {pr:.1f} | {pr/start:.2f}x |  |  |")
print(f"| idle, 2 s after the restore | {ar:.1f} | {ar/start:.2f}x | <= 2x | {yes(ar <= 2*start)} |")
print(f"| idle before the thin and dense backups (their four new repositories open) | {pre:.1f} | {pre/start:.2f}x |  |  |")
print(f"| idle, 2 s after the last of them | {end:.1f} | {end/start:.2f}x | <= 2x the line above | {yes(end <= 2*pre)} |")
PYEOF
{
  echo
  echo "Command: \`$CMDLINE\` (commit $COMMIT, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at start $LOAD_START, total $(($(date +%s) - T_START)) s). restic $(restic version | cut -d' ' -f2); both repositories encrypted, on the same disk as the image; restores checked with cmp."
} | tee -a "$OUT/results.md"
