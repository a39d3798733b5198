#!/usr/bin/env bash
# bench/soak.sh — the soak campaign of issue 9 that runs outside CI (items A, F and G): a verifying
# write load (bench/soakwriter) on a volume with CBT, a snapshot and a sync mirror to a second
# daemon, under three kinds of trouble:
#
#   crash    TRIALS SIGKILLs at random moments under the load (the source daemon, or with
#            KILL_REPLICA_PCT percent chance the replica's). After each: restart, check every
#            acknowledged and flushed (or FUA) write on the volume through the daemon, check that
#            the CBT bitmap (cleared before the trial) covers every block that changed, wait for
#            the mirror to be in sync, and compare the replica's flat file with the volume block by
#            block. Prints trials, writes verified, writes lost, CBT misses, divergences.
#   linkcut  CUTS cuts of the veth link between the two daemons (network namespace; no RST, like a
#            pulled cable) at random moments under the load, each down for a random time up to
#            CUT_MAX_MS (the mirror's replica timeout is 5 s, so some cuts degrade the mirror and
#            some only stall it). After each: stop the load, wait for in-sync, check every
#            acknowledged write (no crash: none may be missing), and `qemu-img compare` the
#            volume with the replica. Prints cuts, writes verified, lost, divergences.
#   fuzz     each NBD fuzz target of FUZZ_TARGETS (option and transmission phase) for FUZZTIME.
#
# How a write is checked: bench/soakwriter/main.go. The writer logs each request before it is
# sent and its reply before it goes on; the checker accepts, per 4 KiB block, the content of the
# last durable request on it or of any later one (in flight or unflushed at the kill), and
# records what it found as the baseline of the next trial. Each trial prints one line; figures and
# logs go to bench/out/soak/ (the logs of a passing trial are deleted unless KEEP_LOGS=1).
#
# Usage: make soak   (or bench/soak.sh [crash] [linkcut] [fuzz] after make build; all three
#        by default). Needs root for the network namespace (NET=loopback runs crash without one).
# Environment:
#   TRIALS=1000 CUTS=200 SEED=1 SIZE=64M  FUZZTIME=10m  FUZZ_TARGETS=auto (internal/nbd targets named
#   for the option and the transmission phase, else FuzzSession and FuzzRequest; or a list of names)
#   FUZZ_PARALLEL=N (fuzz workers; default one per CPU)
#   KILL_REPLICA_PCT=20  RUN_MIN_MS=200 RUN_MAX_MS=2000 (load before a kill or cut)
#   CUT_MAX_MS=8000  SYNC_TIMEOUT=120 (s, a watchdog)  DEPTH=4 (requests in flight)
#   NET=netns|loopback  EXTRASPHERE_BIN=bin/extrasphere  KEEP=1 (keep the work dir)
#   FAULT=drop|replica|cbt   prove the checks work: a write acknowledged but never sent (trial 1),
#                            a replica block overwritten after sync (trial 1), the bitmap cleared
#                            after the kill (trial 1); the run must then report the failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench/out/soak"
WORK="$OUT/work"
TRIALS=${TRIALS:-1000}
CUTS=${CUTS:-200}
SEED=${SEED:-1}
SIZE=${SIZE:-64M}
FUZZTIME=${FUZZTIME:-10m}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-} # go test -parallel for the fuzz workers (default: GOMAXPROCS)
FUZZ_TARGETS=${FUZZ_TARGETS:-auto}
KILL_REPLICA_PCT=${KILL_REPLICA_PCT:-20}
RUN_MIN_MS=${RUN_MIN_MS:-200}
RUN_MAX_MS=${RUN_MAX_MS:-2000}
CUT_MAX_MS=${CUT_MAX_MS:-8000}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-120}
DEPTH=${DEPTH:-4}
NET=${NET:-netns}
FAULT=${FAULT:-}
BIN=${EXTRASPHERE_BIN:-$ROOT/bin/extrasphere}
MODES=("$@")
[[ ${#MODES[@]} -gt 0 ]] || MODES=(crash linkcut fuzz)
VOL=soak
BITMAP=soak

die() { echo "bench/soak.sh: $*" >&2; exit 1; }
log() { echo "bench/soak.sh: $(date +%T) $*" >&2; }
has_mode() { local m; for m in "${MODES[@]}"; do [[ "$m" == "$1" ]] && return 0; done; return 1; }

for m in "${MODES[@]}"; do
  [[ "$m" =~ ^(crash|linkcut|fuzz)$ ]] || die "unknown mode $m: want crash, linkcut and/or fuzz"
done
[[ -z "$FAULT" || "$FAULT" =~ ^(drop|replica|cbt)$ ]] || die "FAULT=$FAULT: want drop, replica or cbt"
[[ "$NET" =~ ^(netns|loopback)$ ]] || die "NET=$NET: want netns or loopback"
if has_mode linkcut && [[ "$NET" != netns ]]; then die "linkcut cuts a veth link: it needs NET=netns"; fi
for tool in go qemu-img python3; do command -v "$tool" >/dev/null || die "$tool is missing: run make deps"; done
if has_mode crash || has_mode linkcut; then
  [[ -x "$BIN" ]] || die "$BIN is missing: run make build (or set EXTRASPHERE_BIN)"
  if [[ "$NET" == netns ]]; then
    [[ $(id -u) == 0 ]] || die "NET=netns needs root (ip netns); NET=loopback runs the crash trials without it"
    command -v ip >/dev/null || die "ip (iproute2) is missing"
  fi
fi

rm -rf "$WORK" "$OUT/trials" "$OUT"/*.log "$OUT"/*.txt "$OUT"/results.md
mkdir -p "$WORK" "$OUT/trials"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
RANDOM=$SEED # every random choice of the script below comes from $RANDOM: SEED replays a run
rnd() { echo $(($1 + (RANDOM * 32768 + RANDOM) % ($2 - $1 + 1))); } # LO HI: uniform in [LO, HI]
msleep() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the fuzz soak (F) needs no daemon ---------------------------------------------------------
FUZZ_RESULTS=()
run_fuzz() {
  local t avail
  avail=$(cd "$ROOT" && go test -list 'Fuzz.*' ./internal/nbd/ | grep '^Fuzz' || true)
  if [[ "$FUZZ_TARGETS" == auto ]]; then
    # The option phase: a target named for it, else FuzzSession (a whole client stream from the
    # handshake on); the transmission phase: a target named for it, else FuzzRequest.
    FUZZ_TARGETS="$(grep -E -m1 'Option|Handshake' <<<"$avail" || echo FuzzSession) $(grep -E -m1 'Transmission' <<<"$avail" || echo FuzzRequest)"
  fi
  for t in $FUZZ_TARGETS; do
    grep -qx "$t" <<<"$avail" || die "fuzz target $t is not in internal/nbd (have: $(echo $avail)); set FUZZ_TARGETS"
    log "fuzz $t for $FUZZTIME"
    if (cd "$ROOT" && go test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" ${FUZZ_PARALLEL:+-parallel "$FUZZ_PARALLEL"} \
      ./internal/nbd/) >"$OUT/fuzz-$t.log" 2>&1; then
      FUZZ_RESULTS+=("| $t | $FUZZTIME | $(grep -o 'execs: [0-9]*' "$OUT/fuzz-$t.log" | tail -1 | cut -d' ' -f2) | pass |")
    else
      FUZZ_RESULTS+=("| $t | $FUZZTIME | $(grep -o 'execs: [0-9]*' "$OUT/fuzz-$t.log" | tail -1 | cut -d' ' -f2) | FAIL: see $OUT/fuzz-$t.log and internal/nbd/testdata/fuzz/$t |")
      log "fuzz $t FAILED: see $OUT/fuzz-$t.log (the input is in internal/nbd/testdata/fuzz/$t: make it a regression test)"
    fi
  done
}

# --- the report ----------------------------------------------------------------------------------
report() {
{
  echo "### Run: bench/soak.sh ${MODES[*]}, seed $SEED${FAULT:+, FAULT=$FAULT (a deliberate fault: failures expected)}"
  echo
  has_mode crash || has_mode linkcut &&
    echo "- extrasphere: $("$BIN" version 2>/dev/null | head -1); volume $SIZE (flat + snapshot delta), CBT bitmap, sync mirror (policy degrade) to a second daemon ($NET); $DEPTH requests in flight: WRITE, WRITE+FUA, WRITE_ZEROES, TRIM, FLUSH"
  echo "- host: $(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - T_START)) s in all"
  echo
  if has_mode crash; then
    echo "| crash campaign (G) | figure |"
    echo "|---|--:|"
    echo "| trials (SIGKILL; KILL_REPLICA_PCT=$KILL_REPLICA_PCT) | $TRIALS |"
    echo "| seconds per trial | $(python3 -c "print(f'{$CRASH_SECS / max($TRIALS, 1):.1f}')") |"
    echo "| requests issued | $(tot crash.issued) |"
    echo "| durable writes verified (flushed or FUA) | $(tot crash.verified) |"
    echo "| durable writes lost | $(tot crash.lost) ($(tot crash.lost_blocks) blocks, $(tot crash.lost_baseline_blocks) of earlier trials) |"
    echo "| acknowledged unflushed writes missing after the kill (allowed) | $(tot crash.unflushed_missing) |"
    echo "| in flight at the kill | $(tot crash.failed) |"
    echo "| CBT blocks checked / missed | $(tot crash.cbt_checked) / $(tot crash.cbt_miss) |"
    echo "| replica blocks compared / divergent | $(tot crash.replica_blocks) / $(tot crash.divergent_blocks) |"
    echo "| mirror not in sync within ${SYNC_TIMEOUT} s | $(tot crash.sync_timeouts) |"
    echo "| snapshot changed | $(tot crash.snapshot_changed) |"
    echo
  fi
  if has_mode linkcut; then
    echo "| link-cut soak (A) | figure |"
    echo "|---|--:|"
    echo "| cuts (down 0.1-$((CUT_MAX_MS / 1000)) s) | $CUTS |"
    echo "| seconds per cut | $(python3 -c "print(f'{$CUT_SECS / max($CUTS, 1):.1f}')") |"
    echo "| acknowledged writes verified | $(tot cut.verified) |"
    echo "| acknowledged writes lost | $(tot cut.lost) ($(tot cut.lost_blocks) blocks) |"
    echo "| CBT blocks checked / missed | $(tot cut.cbt_checked) / $(tot cut.cbt_miss) |"
    echo "| replica blocks compared / divergent | $(tot cut.replica_blocks) / $(tot cut.divergent_blocks) |"
    echo "| qemu-img compare: different | $(tot cut.compare_diffs) |"
    echo "| mirror not in sync within ${SYNC_TIMEOUT} s | $(tot cut.sync_timeouts) |"
    echo "| snapshot changed | $(tot cut.snapshot_changed) |"
    echo
  fi
  if has_mode fuzz; then
    echo "| fuzz target (F) | time | execs | result |"
    echo "|---|---|--:|---|"
    printf '%s\n' "${FUZZ_RESULTS[@]}"
    echo
  fi
  echo "Trials or cuts that failed: $TRIAL_FAILS (their logs: $OUT/trials/)."
} | tee "$OUT/results.md"
}

TRIAL_FAILS=0
if ! has_mode crash && ! has_mode linkcut; then
  run_fuzz
  report
  exit 0
fi

log "build bench/soakwriter"
(cd "$ROOT" && go build -o "$OUT/soakwriter" ./bench/soakwriter) || die "go build ./bench/soakwriter failed"
SW="$OUT/soakwriter"

# --- the link: a network namespace for the replica's daemon, joined by a veth pair -------------
NS="" DEV="" HOST_IP=127.0.0.1 NS_IP=127.0.0.1
netns_cleanup() {
  if [[ -n "$NS" ]]; then ip netns del "$NS" 2>/dev/null || true; fi
  if [[ -n "$DEV" ]]; then ip link del "$DEV" 2>/dev/null || true; fi
}
trap 'cleanup; netns_cleanup' EXIT
if [[ "$NET" == netns ]]; then
  # 10.214.N.0/24 and names xss* (the integration tests use 10.213 and xsp*); `ip netns add`
  # fails on a name that exists, which claims N against a concurrent run.
  for n in $(seq 1 250); do
    if ip netns add "xss$n" 2>/dev/null; then NS="xss$n"; break; fi
  done
  [[ -n "$NS" ]] || die "no free network namespace xss1..xss250 (stale ones? ip netns list)"
  DEV="xss${n}a" HOST_IP="10.214.$n.1" NS_IP="10.214.$n.2"
  ip link add "$DEV" type veth peer name "xss${n}b"
  ip link set "xss${n}b" netns "$NS"
  ip addr add "$HOST_IP/24" dev "$DEV"
  ip link set "$DEV" up
  ip -n "$NS" addr add "$NS_IP/24" dev "xss${n}b"
  ip -n "$NS" link set "xss${n}b" up
  ip -n "$NS" link set lo up
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- two daemons: src holds the volume, dst its replica -----------------------------------------
SRC="$WORK/src" DST="$WORK/dst"
mkdir -p "$SRC" "$DST"
SRC_NODE="$HOST_IP:$(free_port)" DST_NODE="$NS_IP:$(free_port)" DST_NBD="$NS_IP:$(free_port)"
# A replica's daemon must serve NBD on TCP. No --nbd-insecure (issue 9 B): it is refused off
# loopback, and the replica stream uses TLS with the node certificates whether or not it is given.
SRC_PID="" DST_PID=""
start_src() {
  echo "==== soak.sh: start $(date +%T.%N)" >>"$OUT/src.log"
  "$BIN" serve --data "$SRC" --nbd "" --nbd-socket "$SRC/nbd.sock" --api "unix:$SRC/api.sock" \
    --node "$SRC_NODE" >>"$OUT/src.log" 2>&1 &
  SRC_PID=$!
  PIDS+=("$SRC_PID")
  api_wait src "$SRC_PID"
}
start_dst() {
  local pre=()
  [[ -n "$NS" ]] && pre=(ip netns exec "$NS")
  echo "==== soak.sh: start $(date +%T.%N)" >>"$OUT/dst.log"
  "${pre[@]}" "$BIN" serve --data "$DST" --nbd "$DST_NBD" --nbd-socket "$DST/nbd.sock" \
    --api "unix:$DST/api.sock" --node "$DST_NODE" >>"$OUT/dst.log" 2>&1 &
  DST_PID=$!
  PIDS+=("$DST_PID")
  api_wait dst "$DST_PID"
}
src() { "$BIN" --data "$SRC" --api "unix:$SRC/api.sock" "$@"; }
dst() { "$BIN" --data "$DST" --api "unix:$DST/api.sock" "$@"; }
api_wait() { # NAME PID: up to 30 s for the API (a watchdog)
  for _ in $(seq 300); do
    "$1" volume list >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || die "the $1 daemon exited: see $OUT/$1.log"
    sleep 0.1
  done
  die "the $1 daemon's API did not answer within 30 s: see $OUT/$1.log"
}
# forget PID: a reaped process leaves PIDS, so cleanup never signals a PID the system reused.
forget() {
  local p keep=()
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
kill9() { # PID: SIGKILL and reap (ip netns exec execs the daemon, so the PID is the daemon's)
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}
mirror_state() { src mirror status "$VOL" --json 2>/dev/null | python3 -c '
import json, sys
for m in json.load(sys.stdin):
    if m["role"] == "source":
        print(m["state"], "diverged" if m.get("diverged") else "-")' 2>/dev/null || echo "unknown -"; }
wait_in_sync() { # up to SYNC_TIMEOUT s; 0 when in sync
  local st
  for _ in $(seq $((SYNC_TIMEOUT * 10))); do
    st=$(mirror_state)
    [[ "$st" == "in-sync -" ]] && return 0
    sleep 0.1
  done
  log "mirror not in sync after ${SYNC_TIMEOUT}s: state $st"
  return 1
}
URI="nbd+unix:///$VOL?socket=$SRC/nbd.sock"
REPLICA="$DST/datastores/default/$VOL/$VOL-flat.vmdk"
STATE="$WORK/state"

start_src
start_dst
src node init --name soak-src >/dev/null
dst node init --name soak-dst >/dev/null
code=$(dst node show --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pairing_code"])')
src node pair "$DST_NODE" --code "$code" >/dev/null || die "node pair failed: see $OUT/src.log"
src volume create "$VOL" --size "$SIZE" >/dev/null
src cbt enable "$VOL" --bitmap "$BITMAP" >/dev/null

# Session 1 puts data down before the snapshot, so the chain's delta lies over real data.
SESSION=1
"$SW" write --uri "$URI" --log "$WORK/s1.log" --session 1 --seed "$SEED" --depth "$DEPTH" --duration 2s \
  2>>"$OUT/writer.log" || die "the first session failed: see $OUT/writer.log"
"$SW" verify --uri "$URI" --state "$STATE" --log "$WORK/s1.log" --strict >>"$OUT/verify.log" 2>&1 ||
  die "the first session does not verify: see $OUT/verify.log"
src snapshot create "$VOL" --name soak-base >/dev/null
# The snapshot froze the flat file; new writes go to a delta. Its hash must never change.
SNAP_FILE="$SRC/datastores/default/$VOL/$VOL-flat.vmdk"
[[ -f "$SNAP_FILE" ]] || die "no $SNAP_FILE after the snapshot: the datastore layout changed, update bench/soak.sh"
SNAP_SUM=$(sha256sum <"$SNAP_FILE")
snap_check() { # PREFIX ID: 1 when the snapshot's file changed
  [[ "$(sha256sum <"$SNAP_FILE")" == "$SNAP_SUM" ]] && return 0
  log "$2: the snapshot soak-base changed (sha256 of $SNAP_FILE)"
  TOT[$1.snapshot_changed]=$(($(tot "$1.snapshot_changed") + 1))
  return 1
}
src mirror create "$VOL" --to "extrasphere://$DST_NODE/$VOL" --mode sync --on-failure degrade >/dev/null
wait_in_sync || die "the first copy did not reach in-sync: see $OUT/src.log"
log "ready: volume $VOL ($SIZE) with bitmap $BITMAP, snapshot soak-base, sync mirror to $DST_NODE ($NET); seed $SEED"

# Totals over all trials and cuts, summed from the checker's key=value lines.
declare -A TOT
add_totals() { # a soak-verify line
  local kv
  for kv in $1; do
    [[ "$kv" == *=* ]] || continue
    TOT[$2.${kv%%=*}]=$((${TOT[$2.${kv%%=*}]:-0} + ${kv#*=}))
  done
}
tot() { echo "${TOT[$1]:-0}"; }

# check PREFIX TRIAL ARGS...: run the checker, add its figures under PREFIX; 1 when it found a failure.
check() {
  local pfx=$1 id=$2 out rc=0
  shift 2
  out=$("$SW" verify --uri "$URI" --state "$STATE" "$@" 2>>"$OUT/trials/$id.err") || rc=$?
  echo "$out" >>"$OUT/trials/$id.out"
  [[ "$out" == soak-verify* ]] || { log "$id: the checker failed to run: see $OUT/trials/$id.err"; return 2; }
  add_totals "$out" "$pfx"
  return $rc
}

trial_done() { # ID RC SECONDS
  if [[ "$2" == 0 && "${KEEP_LOGS:-0}" != 1 ]]; then
    rm -f "$OUT/trials/$1".* "$WORK/$1.log"
  elif [[ "$2" != 0 ]]; then
    TRIAL_FAILS=$((TRIAL_FAILS + 1))
    cp "$WORK/$1.log" "$OUT/trials/$1.writer-log" 2>/dev/null || true
  fi
}

# --- G: crash trials ---------------------------------------------------------------------------
crash_trial() { # N
  local n=$1 id="crash-$1" victim=src wait_ms rc=0 wrc=0 t0 extra=() strict=()
  t0=$(date +%s.%N)
  SESSION=$((SESSION + 1))
  src cbt clear "$VOL" "$BITMAP" >/dev/null
  [[ "$FAULT" == drop && $n == 1 ]] && extra=(--fault-drop-after 50)
  "$SW" write --uri "$URI" --log "$WORK/$id.log" --session "$SESSION" --seed "$SEED" --depth "$DEPTH" \
    "${extra[@]}" 2>>"$OUT/writer.log" &
  local wpid=$!
  PIDS+=("$wpid")
  (( $(rnd 1 100) <= KILL_REPLICA_PCT )) && victim=dst
  wait_ms=$(rnd "$RUN_MIN_MS" "$RUN_MAX_MS")
  [[ "$FAULT" == drop && $n == 1 ]] && wait_ms=$((wait_ms + 1000)) # past the dropped write and a FLUSH
  msleep "$wait_ms"
  if [[ "$victim" == src ]]; then
    kill9 "$SRC_PID"
    wait "$wpid" || wrc=$?
    forget "$wpid"
    [[ $wrc == 3 ]] || log "$id: the writer exited $wrc after the source died (want 3, connection lost): see $OUT/writer.log"
    start_src
  else
    kill9 "$DST_PID"
    msleep "$(rnd 100 1000)" # the load goes on against a degraded mirror
    kill "$wpid"
    wait "$wpid" || wrc=$?
    forget "$wpid"
    [[ $wrc == 0 ]] || log "$id: the writer exited $wrc with the replica down (policy degrade: want 0): see $OUT/writer.log"
    start_dst
  fi
  [[ "$FAULT" == cbt && $n == 1 ]] && src cbt clear "$VOL" "$BITMAP" >/dev/null
  # The source did not crash when the replica's daemon was killed: then nothing acknowledged may be missing.
  [[ "$victim" == dst ]] && strict=(--strict)
  check crash "$id" --log "$WORK/$id.log" --bitmap "$BITMAP" "${strict[@]}" || rc=1
  snap_check crash "$id" || rc=1
  if wait_in_sync; then
    if [[ "$FAULT" == replica && $n == 1 ]]; then
      head -c 4096 /dev/urandom | dd of="$REPLICA" bs=4096 seek=$(rnd 0 100) conv=notrunc status=none
    fi
    check crash "$id" --replica "$REPLICA" || rc=1
  else
    TOT[crash.sync_timeouts]=$(($(tot crash.sync_timeouts) + 1))
    rc=1
  fi
  local secs
  secs=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  printf 'crash %4d/%d: killed %s after %4d ms, %.1f s: %s\n' "$n" "$TRIALS" "$victim" "$wait_ms" "$secs" \
    "$( [[ $rc == 0 ]] && echo ok || echo "FAIL (see $OUT/trials/$id.*)")" | tee -a "$OUT/crash.txt"
  trial_done "$id" "$rc"
}

# --- A: link cuts ------------------------------------------------------------------------------
cut_trial() { # N
  local n=$1 id="cut-$1" rc=0 wrc=0 run_ms down_ms t0 cmp=identical
  t0=$(date +%s.%N)
  SESSION=$((SESSION + 1))
  src cbt clear "$VOL" "$BITMAP" >/dev/null
  "$SW" write --uri "$URI" --log "$WORK/$id.log" --session "$SESSION" --seed "$SEED" --depth "$DEPTH" \
    2>>"$OUT/writer.log" &
  local wpid=$!
  PIDS+=("$wpid")
  run_ms=$(rnd "$RUN_MIN_MS" "$RUN_MAX_MS")
  down_ms=$(rnd 100 "$CUT_MAX_MS")
  msleep "$run_ms"
  ip link set "$DEV" down
  msleep "$down_ms"
  ip link set "$DEV" up
  msleep "$(rnd 0 1000)" # the load goes on over the restored link
  kill "$wpid"
  wait "$wpid" || wrc=$?
  forget "$wpid"
  [[ $wrc == 0 ]] || { log "$id: the writer exited $wrc (policy degrade: want 0): see $OUT/writer.log"; rc=1; }
  if wait_in_sync; then
    check cut "$id" --log "$WORK/$id.log" --strict --bitmap "$BITMAP" --replica "$REPLICA" || rc=1
    snap_check cut "$id" || rc=1
    if ! qemu-img compare -f raw -F raw "$URI" "$REPLICA" >>"$OUT/trials/$id.out" 2>&1; then
      cmp=DIFFERENT rc=1
      TOT[cut.compare_diffs]=$(($(tot cut.compare_diffs) + 1))
    fi
  else
    TOT[cut.sync_timeouts]=$(($(tot cut.sync_timeouts) + 1))
    rc=1
  fi
  local secs
  secs=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  printf 'cut %4d/%d: after %4d ms, down %4d ms, %.1f s: qemu-img compare %s: %s\n' "$n" "$CUTS" "$run_ms" "$down_ms" \
    "$secs" "$cmp" "$( [[ $rc == 0 ]] && echo ok || echo "FAIL (see $OUT/trials/$id.*)")" | tee -a "$OUT/linkcut.txt"
  trial_done "$id" "$rc"
}

CRASH_SECS=0 CUT_SECS=0
if has_mode crash; then
  t=$(date +%s)
  for i in $(seq 1 "$TRIALS"); do crash_trial "$i"; done
  CRASH_SECS=$(($(date +%s) - t))
fi
if has_mode linkcut; then
  t=$(date +%s)
  for i in $(seq 1 "$CUTS"); do cut_trial "$i"; done
  CUT_SECS=$(($(date +%s) - t))
fi
has_mode fuzz && run_fuzz
report
[[ $TRIAL_FAILS == 0 ]]

