#!/usr/bin/env bash
# bench/mirror.sh — synchronous mirroring (issue 5, "Must show" 5): what a sync mirror costs the writer,
# Extrasphere against QEMU's own active mirror, one run, same client, same file size, same kind of target.
#
#   (a)  Extrasphere, no mirror: a SIZE volume.
#   (b)  Extrasphere with a sync mirror: a second SIZE volume, `extrasphere mirror create VOL --to TARGET
#        --mode sync`, measured once `mirror status VOL --json` says "state": "in-sync".
#   (c)  QEMU's active mirror: qemu-storage-daemon exports a SIZE raw file over NBD (unix socket) with a
#        blockdev-mirror job on it (sync=full, copy-mode=write-blocking) to an NBD client node, measured
#        once the job is ready (BLOCK_JOB_READY); bench/qemu-mirror.py drives QMP.
#   (c0) the same qemu-storage-daemon exporting a second SIZE raw file, no mirror: (c)/(c0) is what the
#        mirror costs QEMU itself.
# Every target is a qemu-nbd (--cache=writeback) serving its own fresh sparse SIZE raw file. All sources
# hold the same SIZE of random data (nbdcopy / cp) before measuring; every file lives in the page cache
# (Extrasphere's page-cache mode, qemu's cache.direct=off, qemu-nbd --cache=writeback).
#
# Two target links, each with all configurations:
#   local   the target's unix socket (nbd+unix:///EXPORT?socket=PATH)
#   DELAY   TCP loopback through bench/delayproxy (DELAY=5ms added in each direction) to the target
# For each link and workload, fio (nbd engine, one connection, on the source's unix socket) runs against
# (a), (b), (c0), (c) in turn, so drift hits all alike; dirty pages are synced before each link's runs.
#   randwrite-4k-qd32   4 KiB random writes, iodepth 32
#   write-1m-qd8        1 MiB sequential writes, iodepth 8
# After each link's runs, each replica is checked against its source with `qemu-img compare`.
# Results go to bench/out/mirror/ (fio JSON, logs, results.md); the markdown section for
# bench/RESULTS.md is printed at the end and, with RESULTS=PATH, written there. Compare figures only
# within one run: the machine is shared and noisy.
#
# Usage: make bench-mirror   (or bench/mirror.sh after make build; about 7 minutes with the defaults)
# Environment:
#   SIZE=1G  RUNTIME=20 (seconds measured per fio run, after RAMP=2)  DELAY=5ms  SYNC_TIMEOUT=600 (s)
#   EXTRASPHERE_BIN=bin/extrasphere  SKIP_ES_MIRROR=1 (no (b): measure (a), (c0) and (c) only)
#   RESULTS=/path/to/section.md  KEEP=1 (keep bench/out/mirror/work)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench/out/mirror"
WORK="$OUT/work"
SIZE=${SIZE:-1G}
RUNTIME=${RUNTIME:-20}
RAMP=${RAMP:-2}
DELAY=${DELAY:-5ms}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-600}
BIN=${EXTRASPHERE_BIN:-$ROOT/bin/extrasphere}
SKIP_B=${SKIP_ES_MIRROR:-0}
PY=/usr/bin/python3
CMDLINE="$0"
for v in EXTRASPHERE_BIN SIZE RUNTIME RAMP DELAY SYNC_TIMEOUT SKIP_ES_MIRROR; do
  [[ -n "${!v:-}" ]] && CMDLINE="$v=${!v} $CMDLINE"
done

die() { echo "bench/mirror.sh: $*" >&2; exit 1; }
log() { echo "bench/mirror.sh: $(date +%T) $*" >&2; }

for tool in fio qemu-nbd qemu-storage-daemon qemu-img nbdcopy nbdinfo go numfmt "$PY"; do
  command -v "$tool" >/dev/null || die "$tool is missing: run make deps"
done
[[ -x "$BIN" ]] || die "$BIN is missing: run make build (or set EXTRASPHERE_BIN)"
if [[ "$SKIP_B" == 1 ]]; then
  log "SKIP_ES_MIRROR=1: measuring (a) and (c) only"
elif ! "$BIN" mirror create --help 2>/dev/null | grep -q -- '--mode'; then
  # cobra prints the root help for an unknown command, so look for the flag itself.
  die "$BIN has no 'mirror create VOL --to TARGET --mode sync' command (issue 5's CLI): rebuild it with" \
    "make build once the mirror CLI is in, or set SKIP_ES_MIRROR=1 to measure (a) and (c) only"
fi
bytes=$(numfmt --from=iec "$SIZE") || die "SIZE=$SIZE is not a size"
[[ "$DELAY" =~ ^[0-9.]+(ns|us|ms|s)$ ]] || die "DELAY=$DELAY is not a duration such as 5ms"

rm -rf "$WORK" "$OUT/fio" "$OUT"/*.log "$OUT"/*.md "$OUT"/*.txt "$OUT"/*.out
mkdir -p "$WORK" "$OUT/fio"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)

# --- process bookkeeping: we stop only what we started, by PID (bench/lib.sh) -------------------
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

log "build bench/delayproxy"
(cd "$ROOT" && go build -o "$OUT/delayproxy" ./bench/delayproxy) || die "go build ./bench/delayproxy failed"

now() { date +%s.%N; }
secs() { "$PY" -c "print(f'{$2 - $1:.2f}')"; }
wait_for() { # TEST-ARGS... : up to 10 s for `test ARGS` to hold
  for _ in $(seq 100); do test "$@" && return 0; sleep 0.1; done
  return 1
}

# start_target NAME: a qemu-nbd serving a fresh sparse SIZE raw file $WORK/NAME.raw as export NAME on
# $WORK/NAME.sock; sets TGT_PID.
start_target() {
  truncate -s "$bytes" "$WORK/$1.raw"
  qemu-nbd -f raw --persistent --fork --pid-file="$WORK/$1.pid" -k "$WORK/$1.sock" -x "$1" \
    --cache=writeback -e 8 --discard=unmap "$WORK/$1.raw" 2>"$OUT/$1.log" ||
    die "qemu-nbd for target $1 failed: see $OUT/$1.log"
  TGT_PID=$(cat "$WORK/$1.pid")
  PIDS+=("$TGT_PID")
}

# start_proxy NAME: bench/delayproxy from a loopback port to target NAME's unix socket; sets PROXY_ADDR.
start_proxy() {
  "$OUT/delayproxy" --listen 127.0.0.1:0 --to "unix:$WORK/$1.sock" --delay "$DELAY" \
    --addr-file "$WORK/$1.proxy" 2>"$OUT/$1-proxy.log" &
  PIDS+=("$!")
  wait_for -s "$WORK/$1.proxy" || die "delayproxy for $1 did not start: see $OUT/$1-proxy.log"
  PROXY_ADDR=$(cat "$WORK/$1.proxy")
}

# --- (a), (b) sources: one Extrasphere daemon, two volumes --------------------------------------
ES_DATA="$WORK/es"
es() { "$BIN" --data="$ES_DATA" --api="unix:$ES_DATA/api.sock" "$@"; }
mkdir -p "$ES_DATA"
"$BIN" serve --data "$ES_DATA" --nbd "" --nbd-socket "$ES_DATA/nbd.sock" --api "unix:$ES_DATA/api.sock" \
  >"$OUT/extrasphere.log" 2>&1 &
ES_PID=$!
PIDS+=("$ES_PID")
for _ in $(seq 100); do
  es volume list >/dev/null 2>&1 && break
  kill -0 "$ES_PID" 2>/dev/null || die "extrasphere exited: see $OUT/extrasphere.log"
  sleep 0.1
done
es volume list >/dev/null 2>&1 || die "extrasphere API did not answer within 10 s: see $OUT/extrasphere.log"
es_uri() { echo "nbd+unix:///$1?socket=$ES_DATA/nbd.sock"; }

log "seed: $SIZE of random data"
head -c "$bytes" /dev/urandom >"$WORK/seed.raw"
for v in plain mirrored; do
  es volume create "$v" --size "$SIZE" >/dev/null || die "extrasphere volume create $v failed"
  log "fill volume $v"
  nbdcopy --flush "$WORK/seed.raw" "$(es_uri "$v")" || die "nbdcopy into volume $v failed"
done

# --- (c) and (c0) sources: one qemu-storage-daemon, two raw files, two exports ------------------------
log "fill (c)'s and (c0)'s source files"
cp "$WORK/seed.raw" "$WORK/qsd-src.raw"
mv "$WORK/seed.raw" "$WORK/qsd-base.raw"
QMP="$WORK/qsd-qmp.sock"
# start_qsd: a fresh qemu-storage-daemon for each link; sets QSD_PID. Fresh, because QEMU 7.2's state
# changes after a mirror job ends: measured here, 1 MiB writes to an export went from ~230 MiB/s to
# ~3 GiB/s once a (completed) mirror job's target node was deleted, on a different node even.
start_qsd() {
  rm -f "$WORK/qsd.sock" "$QMP"
  qemu-storage-daemon \
    --blockdev "driver=file,node-name=f0,filename=$WORK/qsd-src.raw,cache.direct=off" \
    --blockdev driver=raw,node-name=r0,file=f0 \
    --blockdev "driver=file,node-name=f1,filename=$WORK/qsd-base.raw,cache.direct=off" \
    --blockdev driver=raw,node-name=r1,file=f1 \
    --nbd-server "addr.type=unix,addr.path=$WORK/qsd.sock" \
    --export type=nbd,id=e0,node-name=r0,name=disk,writable=on \
    --export type=nbd,id=e1,node-name=r1,name=base,writable=on \
    --chardev "socket,id=qmp,path=$QMP,server=on,wait=off" --monitor chardev=qmp \
    >>"$OUT/qemu-storage-daemon.log" 2>&1 &
  QSD_PID=$!
  PIDS+=("$QSD_PID")
  wait_for -S "$WORK/qsd.sock" && wait_for -S "$QMP" ||
    die "qemu-storage-daemon did not start: see $OUT/qemu-storage-daemon.log"
}
qmirror() { "$PY" "$ROOT/bench/qemu-mirror.py" --qmp "$QMP" "$@"; }

declare -A URI=(
  [a]="$(es_uri plain)"
  [b]="$(es_uri mirrored)"
  [c]="nbd+unix:///disk?socket=$WORK/qsd.sock"
  [c0]="nbd+unix:///base?socket=$WORK/qsd.sock"
)
start_qsd
for c in a b c0 c; do
  got=$(nbdinfo --size "${URI[$c]}") || die "nbdinfo ${URI[$c]} failed"
  [[ "$got" == "$bytes" ]] || die "($c)'s export is $got bytes, want $bytes"
done

# mirror_status_field VOL FIELD: FIELD of VOL's entry in `mirror status VOL --json` (a list of objects;
# a single object is accepted too), or "missing".
mirror_field() {
  es mirror status "$1" --json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
d = d if isinstance(d, list) else [d]
m = [x for x in d if x.get("volume") == sys.argv[1]]
print(m[0].get(sys.argv[2], "missing") if m else "missing")' "$1" "$2"
}

# es_mirror_start VOL TARGET: create the sync mirror and wait for in-sync; sets SYNC_S.
es_mirror_start() {
  local vol=$1 target=$2 t0 state last=0 st
  log "(b) mirror create $vol --to $target --mode sync"
  t0=$(now)
  es mirror create "$vol" --to "$target" --mode sync >"$OUT/mirror-create.out" 2>&1 ||
    die "extrasphere mirror create $vol --to $target failed: $(tail -3 "$OUT/mirror-create.out")"
  while :; do
    state=$(mirror_field "$vol" state) || die "extrasphere mirror status $vol --json failed"
    [[ "$state" == in-sync ]] && break
    local el
    el=$(secs "$t0" "$(now)")
    if ((${el%.*} >= SYNC_TIMEOUT)); then
      st=$(es mirror status "$vol" --json 2>&1 | tr -s ' \n' ' ')
      die "(b) mirror of $vol not in-sync after $SYNC_TIMEOUT s (SYNC_TIMEOUT): $st"
    fi
    if ((${el%.*} >= last + 5)); then
      last=${el%.*}
      log "(b) $vol: $state, $(mirror_field "$vol" bytes_sent) bytes sent, $(mirror_field "$vol" bytes_to_sync) to sync"
    fi
    sleep 0.2
  done
  SYNC_S=$(secs "$t0" "$(now)")
}

# run_fio LINK WORKLOAD CONFIG
run_fio() {
  local args
  case "$2" in
    randwrite-4k-qd32) args=(--rw=randwrite --bs=4k --iodepth=32 --norandommap) ;;
    write-1m-qd8) args=(--rw=write --bs=1M --iodepth=8) ;;
  esac
  log "$1: $2 on ($3)"
  fio --name="$2" --ioengine=nbd --uri="${URI[$3]}" "${args[@]}" \
    --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --randrepeat=1 \
    --output-format=json --output="$OUT/fio/$1.$2.$3.json" >/dev/null 2>"$OUT/fio/$1.$2.$3.err" ||
    die "fio $2 on ($3), $1 link, failed: see $OUT/fio/$1.$2.$3.err"
}

# compare_replica NAME SOURCE TARGET-FILE: qemu-img compare (-U: the servers hold the files open).
compare_replica() {
  if qemu-img compare -U -f raw -F raw "$2" "$3" >"$OUT/compare-$1.txt" 2>&1; then
    echo identical
  else
    log "replica $1 differs from its source: $(head -2 "$OUT/compare-$1.txt" | tr '\n' ' ')"
    echo "**differs**"
  fi
}

# --- the runs -----------------------------------------------------------------------------------------
WORKLOADS=(randwrite-4k-qd32 write-1m-qd8)
CONFIGS=(a c0 c)
if [[ "$SKIP_B" != 1 ]]; then CONFIGS=(a b c0 c); fi
LINKS=(local "$DELAY")
: >"$OUT/sync.txt"
i=0
for link in "${LINKS[@]}"; do
  i=$((i + 1))
  tb="tgt-b$i" tc="tgt-c$i"
  if ((i > 1)); then start_qsd; fi
  start_target "$tb"
  TB_PID=$TGT_PID
  start_target "$tc"
  TC_PID=$TGT_PID
  if [[ "$link" == local ]]; then
    b_target="nbd+unix:///$tb?socket=$WORK/$tb.sock"
    c_target=(--unix "$WORK/$tc.sock")
  else
    start_proxy "$tb"
    b_target="nbd://$PROXY_ADDR/$tb"
    start_proxy "$tc"
    c_target=(--tcp "$PROXY_ADDR")
  fi

  b_sync=n/a
  if [[ "$SKIP_B" != 1 ]]; then
    es_mirror_start mirrored "$b_target"
    b_sync=$SYNC_S
  fi
  log "(c) blockdev-mirror r0 -> $tc ($link), copy-mode write-blocking"
  c_sync=$(qmirror start --job "m$i" --source r0 --node "t$i" "${c_target[@]}" --export "$tc" \
    --timeout "$SYNC_TIMEOUT" 2>>"$OUT/qemu-mirror.log") ||
    die "QEMU's mirror to $tc did not become ready: $(tail -2 "$OUT/qemu-mirror.log")"
  log "initial sync: (b) $b_sync s, (c) $c_sync s"
  sync -f "$WORK/qsd-src.raw" # no dirty pages left from the fills and initial copies when fio starts

  for w in "${WORKLOADS[@]}"; do
    for c in "${CONFIGS[@]}"; do run_fio "$link" "$w" "$c"; done
  done

  b_cmp=n/a
  if [[ "$SKIP_B" != 1 ]]; then
    b_cmp=$(compare_replica "$tb" "${URI[b]}" "$WORK/$tb.raw")
    es mirror rm mirrored >>"$OUT/mirror-create.out" 2>&1 ||
      die "extrasphere mirror rm mirrored failed: $(tail -3 "$OUT/mirror-create.out")"
  fi
  qmirror stop --job "m$i" --node "t$i" 2>>"$OUT/qemu-mirror.log" ||
    die "stopping QEMU's mirror job m$i failed: $(tail -2 "$OUT/qemu-mirror.log")"
  c_cmp=$(compare_replica "$tc" "$WORK/qsd-src.raw" "$WORK/$tc.raw")
  echo "$link $b_sync $c_sync $b_cmp $c_cmp" >>"$OUT/sync.txt"
  stop_pids "$TB_PID" "$TC_PID" "$QSD_PID"
  rm -f "$WORK/$tb.raw" "$WORK/$tc.raw"
done
stop_pids "$ES_PID"
T_END=$(date +%s)

# --- report --------------------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -1)" ]]; then COMMIT="$COMMIT+dirty"; fi
PYTHONDONTWRITEBYTECODE=1 "$PY" - "$ROOT/bench" "$OUT" "$SIZE" "$RUNTIME" "$RAMP" "${CONFIGS[*]}" "${WORKLOADS[*]}" "${LINKS[*]}" \
  >"$OUT/table.md" <<'EOF'
import os, sys
bench, out, size, runtime, ramp, configs, workloads, links = sys.argv[1:]
sys.path.insert(0, bench)
from report import load, fmt_iops  # bench/report.py: fio JSON parsing shared with bench/nbd.sh

configs, workloads, links = configs.split(), workloads.split(), links.split()

def stats(link, w, c):
    job = load(os.path.join(out, "fio", f"{link}.{w}.{c}.json"))["jobs"][0]
    if job.get("error"):
        raise ValueError(f"fio {link} {w} ({c}) reported error {job['error']}")
    wr = job["write"]
    return {"iops": wr["iops"], "mib": wr["bw"] / 1024, "mean_ms": wr["clat_ns"]["mean"] / 1e6,
            "p99_ms": wr["clat_ns"]["percentile"]["99.000000"] / 1e6}

res = {(l, w, c): stats(l, w, c) for l in links for w in workloads for c in configs}
checks = {}  # link -> (b sync s, c sync s, b replica check, c replica check)
with open(os.path.join(out, "sync.txt")) as f:
    for line in f:
        l, bs, cs, bcmp, ccmp = line.split()
        checks[l] = (bs, cs, bcmp, ccmp)

def ratio(l, w, x, y):
    if x not in configs or y not in configs:
        return None
    return res[(l, w, x)]["iops"] / res[(l, w, y)]["iops"]

def fr(r):
    return "n/a" if r is None else f"{r:.2f}x"

def cell(l, w, c):
    if c not in configs:
        return "not run"
    r = res[(l, w, c)]
    return f"{fmt_iops(r['iops'])} / {r['mib']:.0f}"

def linkname(l):
    return "local (unix socket)" if l == "local" else f"+{l} each way (delayproxy, TCP)"

print("| workload | target link | (a) Extrasphere, no mirror: IOPS / MiB/s | (b) Extrasphere, sync mirror "
      "| (c0) qemu-storage-daemon, no mirror | (c) QEMU active mirror | (b)/(a) | (b)/(c) | (c)/(c0) | goal | met |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|")
for l in links:
    for w in workloads:
        ba, bc, cc = ratio(l, w, "b", "a"), ratio(l, w, "b", "c"), ratio(l, w, "c", "c0")
        if w.startswith("randwrite-4k"):
            goal = "(b)/(c) >= 1.2x, (b)/(a) >= 0.6x"
            met = None if ba is None else (bc >= 1.2 and ba >= 0.6)
        else:
            goal = "(b)/(c) >= 1.2x"
            met = None if bc is None else bc >= 1.2
        met_s = "n/a" if met is None else ("yes" if met else "**no**")
        if met is not None and checks[l][2] != "identical":
            met_s = "**no** (replica differs)"
        print(f"| {w} | {linkname(l)} | {cell(l, w, 'a')} | {cell(l, w, 'b')} | {cell(l, w, 'c0')} | {cell(l, w, 'c')} "
              f"| {fr(ba)} | {fr(bc)} | {fr(cc)} | {goal} | {met_s} |")
print()
print("Write completion latency, mean / p99 (ms):")
print()
print("| workload | target link | (a) | (b) | (c0) | (c) |")
print("|---|---|--:|--:|--:|--:|")
for l in links:
    for w in workloads:
        cells = []
        for c in ("a", "b", "c0", "c"):
            r = res.get((l, w, c))
            cells.append("not run" if r is None else f"{r['mean_ms']:.2f} / {r['p99_ms']:.2f}")
        print(f"| {w} | {linkname(l)} | " + " | ".join(cells) + " |")
print()
print(f"| initial sync of {size} (s) and replica check (`qemu-img compare` after the runs) | (b) | (c) |")
print("|---|---|---|")
for l in links:
    bs, cs, bcmp, ccmp = checks[l]
    b = "not run" if bs == "n/a" else f"{bs} s, {bcmp}"
    print(f"| {linkname(l)} | {b} | {cs} s, {ccmp} |")
EOF

{
  echo "### Synchronous mirroring (bench/mirror.sh)"
  echo
  cat "$OUT/table.md"
  echo
  echo "Command: \`$CMDLINE\` (commit $COMMIT, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average" \
    "at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg), total $((T_END - T_START)) s)." \
    "$(fio --version) nbd engine, one connection on each source's unix socket, ${RAMP} s ramp + ${RUNTIME} s" \
    "per run, runs of one row back to back; $(qemu-storage-daemon --version | head -1); targets: qemu-nbd" \
    "--cache=writeback on fresh $SIZE raw files; one run, single figures: compare only within the run."
  if [[ "$SKIP_B" == 1 ]]; then printf '\n(b) was not run (SKIP_ES_MIRROR=1).\n'; fi
} >"$OUT/results.md"
if [[ -n "${RESULTS:-}" ]]; then cp "$OUT/results.md" "$RESULTS"; fi
cat "$OUT/results.md"
if grep -q differs "$OUT/sync.txt"; then
  die "a replica differs from its source (see $OUT/compare-*.txt): the figures above are not valid"
fi
