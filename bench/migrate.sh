#!/usr/bin/env bash
# bench/migrate.sh — live storage migration, snapshot deltas and chains (issue 3, "Must show" 5), one run.
#
#   (a) A SIZE (4 GiB) volume, its first DATA (2 GiB) filled with random data (nbdcopy), is migrated to a
#       second datastore on the same disk while fio writes to it: 4 KiB randwrite, QD8, a fixed
#       --rate_iops=LOAD_IOPS (2000) so the load is the same in every run. Compared with:
#       - `cp --sparse=always` + `sync FILE` of the same flat file to the same target disk, under the same
#         fio load (goal: migration <= 1.3x cp);
#       - the same fio load for the same time without a migration: the worst write latency (fio clat max)
#         and clat p99.9 (goal: the pivot adds <= 50 ms). The daemon's own io_held for the pivot is
#         printed from its log.
#   (b) 4 KiB randwrite QD32 into a fresh delta over the flat (right after `snapshot create`, then after
#       `snapshot revert` to it) vs into a plain flat, on two CHAIN_SIZE volumes with the same random
#       content, runs alternating, REPS x RUNTIME seconds each (goal: delta >= 0.7x flat).
#   (c) 4 KiB randread QD32 through a 10-deep chain (10 snapshots: the first delta holds (b)'s writes, the
#       other 9 CHAIN_WRITES random 4 KiB writes each) vs the plain flat, alternating likewise
#       (goal: chain >= 0.9x flat).
#
# fio uses its nbd engine against the daemon's unix socket, --output-format=json; /usr/bin/python3 parses.
# Results go to bench/out/migrate/ (fio JSON, daemon log, results.md); the markdown table is printed at
# the end and, with RESULTS=PATH, written there together with the command. Compare figures only within
# one run: the machine is noisy.
#
# Usage: bench/migrate.sh        (after make build; about 3-4 minutes on 2 cores)
# Environment:
#   EXTRASPHERE_BIN=bin/extrasphere   SIZE=4G  DATA=2G  LOAD_IOPS=2000  CHAIN_SIZE=2G  RUNTIME=8  REPS=2
#   CHAIN_WRITES=4000  RESULTS=/path/to/RESULTS-section.md  KEEP=1 (keep bench/out/migrate/work)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench/out/migrate"
WORK="$OUT/work"
SIZE=${SIZE:-4G}
DATA=${DATA:-2G}
LOAD_IOPS=${LOAD_IOPS:-2000}
CHAIN_SIZE=${CHAIN_SIZE:-2G}
RUNTIME=${RUNTIME:-8}
REPS=${REPS:-2}
CHAIN_WRITES=${CHAIN_WRITES:-4000}
BIN=${EXTRASPHERE_BIN:-$ROOT/bin/extrasphere}
PY=/usr/bin/python3
CMDLINE="$0${*:+ $*}"
for v in EXTRASPHERE_BIN SIZE DATA LOAD_IOPS CHAIN_SIZE RUNTIME REPS CHAIN_WRITES; do
  [[ -n "${!v:-}" ]] && CMDLINE="$v=${!v} $CMDLINE"
done

die() { echo "bench/migrate.sh: $*" >&2; exit 1; }
log() { echo "bench/migrate.sh: $(date +%T) $*" >&2; }

for tool in fio nbdcopy nbdinfo cp sync "$PY"; do
  command -v "$tool" >/dev/null || die "$tool is missing: run make deps"
done
[[ -x "$BIN" ]] || die "$BIN is missing: run make build (or set EXTRASPHERE_BIN)"

rm -rf "$WORK" "$OUT/fio" "$OUT"/*.log "$OUT"/*.md "$OUT/migrate.out"
mkdir -p "$WORK" "$OUT/fio"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)

# --- process bookkeeping: we stop only what we started, by PID (bench/lib.sh) -------------------
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

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
es volume list >/dev/null 2>&1 || die "extrasphere API did not answer within 10 s"
uri() { echo "nbd+unix:///$1?socket=$ES_DATA/nbd.sock"; }

# fio_bg NAME VOL: the (a) load in the background, until stopped with SIGINT; sets FIO_PID.
fio_bg() {
  fio --name="$1" --ioengine=nbd --uri="$(uri "$2")" --rw=randwrite --bs=4k --iodepth=8 \
    --rate_iops="$LOAD_IOPS" --norandommap --randrepeat=1 --time_based --runtime=3600 \
    --output-format=json --output="$OUT/fio/$1.json" >/dev/null 2>"$OUT/fio/$1.err" &
  FIO_PID=$!
  PIDS+=("$FIO_PID")
}
fio_stop() { # stop the background fio gracefully (it writes its JSON) and reap it
  kill -INT "$FIO_PID" 2>/dev/null || true
  wait "$FIO_PID" 2>/dev/null || true
}
# fio_run NAME VOL ARGS...: one measured fio job in the foreground.
fio_run() {
  local name=$1 vol=$2
  shift 2
  fio --name="$name" --ioengine=nbd --uri="$(uri "$vol")" --bs=4k --randrepeat=1 --norandommap "$@" \
    --output-format=json --output="$OUT/fio/$name.json" >/dev/null 2>"$OUT/fio/$name.err" ||
    die "fio $name failed: see $OUT/fio/$name.err"
}
now() { date +%s.%N; }

# --- data ------------------------------------------------------------------------------------------
log "seed: $DATA of random data"
head -c "$(numfmt --from=iec "$DATA")" /dev/urandom >"$WORK/seed.raw"
es volume create mig --size "$SIZE" >/dev/null
es datastore add ds2 "$WORK/ds2" >/dev/null
log "fill mig ($SIZE, first $DATA random)"
nbdcopy --flush "$WORK/seed.raw" "$(uri mig)"
FLAT="$ES_DATA/datastores/default/mig/mig-flat.vmdk"
[[ -f "$FLAT" ]] || die "no flat file at $FLAT"
mkdir -p "$WORK/cp-target"

# --- (a) cp of the flat under the load ------------------------------------------------------------
log "(a) cp --sparse=always of the flat under fio load"
fio_bg load-cp mig
sleep 2
t0=$(now)
cp --sparse=always "$FLAT" "$WORK/cp-target/mig-flat.vmdk"
sync "$WORK/cp-target/mig-flat.vmdk"
t1=$(now)
sleep 1
fio_stop
rm -f "$WORK/cp-target/mig-flat.vmdk"
CP_S=$("$PY" -c "print(f'{$t1 - $t0:.2f}')")
sync -f "$WORK" # the cp's dirty pages are not the migration's problem

# --- (a) migration under the same load --------------------------------------------------------------
log "(a) migrate mig --to ds2 under fio load"
fio_bg load-migrate mig
sleep 2
t0=$(now)
es migrate mig --to ds2 >"$OUT/migrate.out" 2>&1 &
MIG_PID=$!
# The job's phases (its "detail"), polled every 0.2 s: when each was first seen.
last=""
while kill -0 "$MIG_PID" 2>/dev/null; do
  d=$(es job list --json 2>/dev/null | sed -n 's/^ *"detail": "\(.*\)",*$/\1/p' | tail -1)
  if [[ -n "$d" && "$d" != "$last" ]]; then
    echo "$("$PY" -c "print(f'{$(now) - $t0:.1f}')") $d" >>"$OUT/migrate-phases.log"
    last=$d
  fi
  sleep 0.2
done
wait "$MIG_PID" || die "migrate failed: $(tail -1 "$OUT/migrate.out")"
t1=$(now)
sleep 2
fio_stop
t2=$(now)
MIG_S=$("$PY" -c "print(f'{$t1 - $t0:.2f}')")
LOAD_S=$("$PY" -c "import math; print(math.ceil($t2 - $t0 + 2))")
where=$(es volume show mig --json)
[[ "$where" == *'"datastore": "ds2"'* ]] || die "mig is not on ds2 after the migration: $where"

log "(a) the same load without a migration, ${LOAD_S}s"
fio_run load-base mig --rw=randwrite --iodepth=8 --rate_iops="$LOAD_IOPS" --time_based --runtime="$LOAD_S"

# --- (b), (c) delta and chain ------------------------------------------------------------------------
# Two volumes with the same random content: df stays a plain flat, dv gets the snapshots. The measured
# runs alternate between them (REPS times each), so load from elsewhere on the machine hits both alike.
log "(b,c) volumes df and dv ($CHAIN_SIZE random each)"
chain_bytes=$(numfmt --from=iec "$CHAIN_SIZE")
if (($(stat -c %s "$WORK/seed.raw") >= chain_bytes)); then
  head -c "$chain_bytes" "$WORK/seed.raw" >"$WORK/dv.raw"
else
  head -c "$chain_bytes" /dev/urandom >"$WORK/dv.raw"
fi
rm -f "$WORK/seed.raw"
for v in df dv; do
  es volume create "$v" --size "$CHAIN_SIZE" >/dev/null
  nbdcopy --flush "$WORK/dv.raw" "$(uri "$v")"
done
rm -f "$WORK/dv.raw"

for r in $(seq "$REPS"); do
  log "(b) rep $r: randwrite QD32 into the flat, then into a fresh delta"
  fio_run "write-flat-$r" df --rw=randwrite --iodepth=32 --time_based --runtime="$RUNTIME"
  if ((r == 1)); then
    es snapshot create dv --name d1 >/dev/null
  else # a fresh delta over the same flat again
    es snapshot revert dv d1 >/dev/null
  fi
  fio_run "write-delta-$r" dv --rw=randwrite --iodepth=32 --time_based --runtime="$RUNTIME"
done
log "(c) snapshots up to 10, $CHAIN_WRITES random writes in each new delta"
for i in $(seq 2 10); do
  es snapshot create dv --name "d$i" >/dev/null
  fio_run "chain-w$i" dv --rw=randwrite --iodepth=32 --number_ios="$CHAIN_WRITES" --randseed="$i"
done
DEPTH=$(es snapshot list dv --json | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))')
[[ "$DEPTH" == 10 ]] || die "dv has $DEPTH snapshots, want 10"
for r in $(seq "$REPS"); do
  log "(c) rep $r: randread QD32 on the flat, then through the 10-deep chain"
  fio_run "read-flat-$r" df --rw=randread --iodepth=32 --time_based --runtime="$RUNTIME"
  fio_run "read-chain-$r" dv --rw=randread --iodepth=32 --time_based --runtime="$RUNTIME"
done

stop_pids "$ES_PID"
T_END=$(date +%s)

# --- report --------------------------------------------------------------------------------------------
held() { # PATTERN: the io_held of the last daemon log line matching PATTERN
  { grep -E "$1" "$OUT/extrasphere.log" || true; } | sed -n 's/.*io_held=\([^ ]*\).*/\1/p' | tail -1
}
HELD_PIVOT=$(held 'msg="volume migrated"')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -1)" ]]; then COMMIT="$COMMIT+dirty"; fi

"$PY" - "$OUT/fio" "$CP_S" "$MIG_S" "$LOAD_S" "${HELD_PIVOT:-?}" "$SIZE" "$DATA" "$LOAD_IOPS" \
  "$CHAIN_SIZE" "$RUNTIME" "$CHAIN_WRITES" "$REPS" >"$OUT/table.md" <<'EOF'
import json, os, sys

fdir, cp_s, mig_s, load_s, held_pivot, size, data, load_iops, chain_size, runtime, chain_writes, reps = sys.argv[1:]

def job(name):
    text = open(os.path.join(fdir, name + ".json")).read()
    return json.loads(text[text.index("{"):])["jobs"][0]  # fio prints "terminating on signal" first

def wr(name):
    return job(name)["write"]

def ms(ns):
    return ns / 1e6

def p(w, q):
    return w["clat_ns"]["percentile"][q]

cp_s, mig_s = float(cp_s), float(mig_s)
mig, base = wr("load-migrate"), wr("load-base")
def iops(prefix, rw):
    return [job("%s-%d" % (prefix, r))[rw]["iops"] for r in range(1, int(reps) + 1)]

def mean(xs):
    return sum(xs) / len(xs)

def each(xs):
    return " (" + ", ".join("%.0f" % x for x in xs) + ")" if len(xs) > 1 else ""

wflat, wdelta = iops("write-flat", "write"), iops("write-delta", "write")
rflat, rchain = iops("read-flat", "read"), iops("read-chain", "read")
extra_max = ms(mig["clat_ns"]["max"]) - ms(base["clat_ns"]["max"])

def ok(b):
    return "yes" if b else "**no**"

rows = [
    ("(a) migration of a %s volume (%s random) to a 2nd datastore, same disk, under fio 4k randwrite QD8 @ %s IOPS"
     % (size, data, load_iops),
     "%.2f s" % mig_s, "%.2f s (`cp --sparse=always` + `sync`, same load)" % cp_s,
     "%.2fx" % (mig_s / cp_s), "<= 1.3x", ok(mig_s / cp_s <= 1.3)),
    ("(a) fio write clat max during the migration run vs the same load without (%s s each)" % load_s,
     "%.1f ms" % ms(mig["clat_ns"]["max"]), "%.1f ms" % ms(base["clat_ns"]["max"]),
     "+%.1f ms" % extra_max, "<= +50 ms", ok(extra_max <= 50)),
    ("(a) fio write clat p99.9 / p99 during vs without",
     "%.2f / %.2f ms" % (ms(p(mig, "99.900000")), ms(p(mig, "99.000000"))),
     "%.2f / %.2f ms" % (ms(p(base, "99.900000")), ms(p(base, "99.000000"))),
     "+%.2f ms (p99.9)" % (ms(p(mig, "99.900000")) - ms(p(base, "99.900000"))), "", ""),
    ("(a) I/O held for the pivot (the daemon's log, io_held)", held_pivot, "", "", "", ""),
    ("(a) load achieved (write IOPS) during vs without", "%.0f" % mig["iops"], "%.0f" % base["iops"], "", "", ""),
    ("(b) 4k randwrite QD32, %s volume, mean of %s alternating %s s runs: fresh delta vs flat (IOPS)"
     % (chain_size, reps, runtime),
     "%.0f%s" % (mean(wdelta), each(wdelta)), "%.0f%s" % (mean(wflat), each(wflat)),
     "%.2fx" % (mean(wdelta) / mean(wflat)), ">= 0.7x", ok(mean(wdelta) / mean(wflat) >= 0.7)),
    ("(c) 4k randread QD32, mean of %s alternating %s s runs: 10-deep chain (deltas 2-10 with %s random writes each) vs flat (IOPS)"
     % (reps, runtime, chain_writes),
     "%.0f%s" % (mean(rchain), each(rchain)), "%.0f%s" % (mean(rflat), each(rflat)),
     "%.2fx" % (mean(rchain) / mean(rflat)), ">= 0.9x", ok(mean(rchain) / mean(rflat) >= 0.9)),
]
print("| Figure | Extrasphere | Reference | Ratio / extra | Goal | Met |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
EOF

{
  echo "### Snapshots, clones and migration (bench/migrate.sh)"
  echo
  cat "$OUT/table.md"
  echo
  echo "Migration phases (job detail, seconds after the start): $(tr '\n' ';' <"$OUT/migrate-phases.log" 2>/dev/null | sed 's/;$//; s/;/; /g')."
  echo
  echo "Command: \`$CMDLINE\` (commit $COMMIT, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average" \
    "at start $LOAD_START, total $((T_END - T_START)) s). fio $(fio --version | sed 's/^fio-//') nbd engine on the" \
    "daemon's unix socket, page-cache mode; one run, single figures: compare only within the run."
} >"$OUT/results.md"
if [[ -n "${RESULTS:-}" ]]; then cp "$OUT/results.md" "$RESULTS"; fi
cat "$OUT/results.md"
