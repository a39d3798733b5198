#!/usr/bin/env bash
# bench/nbd.sh — fio's nbd engine against qemu-nbd, nbdkit `file` and Extrasphere, side by side.
#
# Each server gets an equal raw file/volume of SIZE bytes, created sparse and then filled through NBD
# with the same random seed file (nbdcopy), in the same cache mode. Then, for each workload, the same
# fio job runs against each server in turn (interleaved, so drift hits all servers alike):
#
#   randwrite-4k-qd32   4 KiB random writes, iodepth 32
#   randread-4k-qd32    4 KiB random reads, iodepth 32
#   write-1m-qd8        1 MiB sequential writes, iodepth 8
#   randwrite-4k-qd1-fsync  4 KiB random writes, iodepth 1, NBD FLUSH after every write (--fsync=1)
#
# Then 4 KiB random writes at QD32 at one fixed rate for all (LAT_RATE IOPS, below what every server
# sustains): the latency a guest sees at the same load. Unbounded, the faster server writes more
# into the page cache in its 10 s and meets the kernel's write-back throttling sooner, which is
# what the p99 column of the first table shows (nbdkit too).
#
# Before each run, `sync` writes back the dirty pages the previous run left (another server's file):
# without it, whichever server runs after a write workload pays for that write-back, and its tail
# latency shows it (measured: p99 up to 2x on randwrite-4k-qd32 for the server in second place).
#
# Then 4 KiB random writes at QD32, unbounded, with each server's threads on one CPU and fio on
# another (PIN_ROUNDS rounds, the servers' order rotated each round). On a 2-CPU machine the
# unpinned rows above share both CPUs between fio, the server's threads and the kernel's write-back,
# and a server thread the scheduler parks for a time slice (1-3 ms, seen in a runtime trace: a
# non-blocking read that returned after 2.8 ms) stalls every request in flight: the unbounded p99
# then follows where the scheduler put the threads more than the server. Pinned, it shows the server.
#
# Then the TLS rows: the same fio jobs over TCP on 127.0.0.1, Extrasphere with TLS (its client CA, a
# certificate from `extrasphere client add`) against qemu-nbd serving the same file with the same
# certificates (--object tls-creds-x509,dir=<the daemon's pki dir>,endpoint=server --tls-creds), and
# both again over plain TCP (the daemon with --nbd-insecure), to show what TLS costs.
#
# Then the Extrasphere daemon's RSS (VmRSS/VmHWM) is measured on a fresh daemon: right after start,
# with 10 volumes each holding one idle NBD connection, and with fio writing to all 10 at once.
#
# Results go to bench/out/ (fio JSON per run, logs, results.md); the markdown table for
# bench/RESULTS.md is printed at the end. Compare figures only within one run: the machine is noisy.
#
# Usage: make bench      (or bench/nbd.sh after make build)
# Environment:
#   SIZE=1G           size of each file/volume
#   RUNTIME=10        seconds of measurement per run (after RAMP=2 seconds of ramp)
#   CACHE=writeback   peers' cache mode: writeback (page cache) or none (qemu-nbd O_DIRECT; nbdkit
#                     cache=none only drops pages after I/O). Extrasphere uses its own documented mode.
#   EXTRASPHERE_BIN=bin/extrasphere
#   EXTRASPHERE_SKIP=1  run the peers only (no Extrasphere columns, no RSS section)
#   KEEP=1            keep bench/out/work (the data files) afterwards
#   TLS_SKIP=1        no TLS rows
#   LAT_RATE=20000    IOPS of the fixed-rate latency rows
#   PIN_ROUNDS=3      rounds of the pinned QD32 rows (0: none; they need at least 2 CPUs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench/out"
WORK="$OUT/work"
SIZE=${SIZE:-1G}
RUNTIME=${RUNTIME:-10}
RAMP=${RAMP:-2}
CACHE=${CACHE:-writeback}
BIN=${EXTRASPHERE_BIN:-$ROOT/bin/extrasphere}
SKIP_ES=${EXTRASPHERE_SKIP:-0}
TLS_SKIP=${TLS_SKIP:-0}
LAT_RATE=${LAT_RATE:-20000}
PIN_ROUNDS=${PIN_ROUNDS:-3}
PY=/usr/bin/python3 # python3-libnbd lives there; another python3 may come first on PATH

die() { echo "bench/nbd.sh: $*" >&2; exit 1; }
log() { echo "bench/nbd.sh: $*" >&2; }

for tool in fio qemu-nbd nbdkit nbdcopy nbdinfo setpriv taskset "$PY"; do
  command -v "$tool" >/dev/null || die "$tool is missing: run make deps"
done
if [[ "$SKIP_ES" != 1 ]]; then
  [[ -x "$BIN" ]] || die "$BIN is missing: run make build (or EXTRASPHERE_SKIP=1 to bench the peers only)"
else
  log "EXTRASPHERE_SKIP=1: benchmarking the peers only"
fi
case "$CACHE" in
  writeback)
    QEMU_CACHE=(--cache=writeback)
    NBDKIT_CACHE=() # the file plugin's default (cache=default) is the page cache
    ;;
  none)
    QEMU_CACHE=(--cache=none --aio=native)
    NBDKIT_CACHE=(cache=none)
    ;;
  *) die "CACHE must be writeback or none, not $CACHE" ;;
esac

rm -rf "$WORK" "$OUT"/fio "$OUT"/*.log
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$WORK" "$OUT/fio"

# --- process bookkeeping: we stop only what we started, by PID (bench/lib.sh) -------------------
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

wait_for_socket() { # PATH [PID]
  local i
  for i in $(seq 100); do
    [[ -S "$1" ]] && return 0
    if [[ -n "${2-}" ]] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

# es CMD...: the Extrasphere CLI against the daemon whose data dir is $ES_DATA.
es() { EXTRASPHERE_DATA="$ES_DATA" EXTRASPHERE_API="unix:$ES_DATA/api.sock" "$BIN" "$@"; }

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_extrasphere() { # DATA LOGFILE [NBD_TCP_ADDR] -> sets ES_PID
  ES_DATA=$1
  mkdir -p "$ES_DATA"
  # With an address, NBD over TCP on it with TLS, and plain too (--nbd-insecure, loopback only), so
  # the TLS rows can show what TLS costs on one listener.
  local tcp=(--nbd "")
  [[ -n "${3-}" ]] && tcp=(--nbd "$3" --nbd-insecure)
  "$BIN" serve --data "$ES_DATA" "${tcp[@]}" --nbd-socket "$ES_DATA/nbd.sock" --api "unix:$ES_DATA/api.sock" \
    >"$2" 2>&1 &
  ES_PID=$!
  PIDS+=("$ES_PID")
  wait_for_socket "$ES_DATA/api.sock" "$ES_PID" || die "extrasphere did not start: see $2"
  local i
  for i in $(seq 100); do
    es volume list >/dev/null 2>&1 && return 0
    kill -0 "$ES_PID" 2>/dev/null || die "extrasphere exited: see $2"
    sleep 0.1
  done
  die "extrasphere API did not answer within 10 s: see $2"
}

# --- servers ------------------------------------------------------------------------------------------
log "seed: $SIZE of random data"
bytes=$(numfmt --from=iec "$SIZE")
head -c "$bytes" /dev/urandom >"$WORK/seed.raw"

SERVERS=(qemu-nbd nbdkit)
declare -A URI

truncate -s "$bytes" "$WORK/qemu-nbd.raw"
qemu-nbd -f raw --persistent --fork --pid-file="$WORK/qemu-nbd.pid" -k "$WORK/qemu-nbd.sock" \
  "${QEMU_CACHE[@]}" -e 8 --discard=unmap "$WORK/qemu-nbd.raw" 2>"$OUT/qemu-nbd.log" ||
  die "qemu-nbd failed: see $OUT/qemu-nbd.log"
PIDS+=("$(cat "$WORK/qemu-nbd.pid")")
URI[qemu-nbd]="nbd+unix:///?socket=$WORK/qemu-nbd.sock"

truncate -s "$bytes" "$WORK/nbdkit.raw"
nbdkit -U "$WORK/nbdkit.sock" -P "$WORK/nbdkit.pid" file "$WORK/nbdkit.raw" "${NBDKIT_CACHE[@]}" \
  2>"$OUT/nbdkit.log" || die "nbdkit failed: see $OUT/nbdkit.log"
wait_for_socket "$WORK/nbdkit.sock" || die "nbdkit socket did not appear"
for _ in $(seq 50); do [[ -s "$WORK/nbdkit.pid" ]] && break; sleep 0.1; done
PIDS+=("$(cat "$WORK/nbdkit.pid")")
URI[nbdkit]="nbd+unix:///?socket=$WORK/nbdkit.sock"

if [[ "$SKIP_ES" != 1 ]]; then
  ES_PORT=$(free_port)
  start_extrasphere "$WORK/es-data" "$OUT/extrasphere.log" "127.0.0.1:$ES_PORT"
  es volume create bench --size "$SIZE" >/dev/null || die "extrasphere volume create bench failed"
  SERVERS+=(extrasphere)
  URI[extrasphere]="nbd+unix:///bench?socket=$ES_DATA/nbd.sock"
fi

for s in "${SERVERS[@]}"; do
  got=$(nbdinfo --size "${URI[$s]}") || die "nbdinfo ${URI[$s]} failed"
  [[ "$got" == "$bytes" ]] || die "$s export is $got bytes, want $bytes"
  log "fill $s"
  nbdcopy --flush "$WORK/seed.raw" "${URI[$s]}" || die "nbdcopy into $s failed"
done
rm -f "$WORK/seed.raw"

# --- fio ----------------------------------------------------------------------------------------------
WORKLOADS=(randwrite-4k-qd32 randread-4k-qd32 write-1m-qd8 randwrite-4k-qd1-fsync)
fio_args() { # WORKLOAD
  case "$1" in
    randwrite-4k-qd32) echo --rw=randwrite --bs=4k --iodepth=32 --norandommap ;;
    randread-4k-qd32) echo --rw=randread --bs=4k --iodepth=32 --norandommap ;;
    write-1m-qd8) echo --rw=write --bs=1M --iodepth=8 ;;
    randwrite-4k-qd1-fsync) echo --rw=randwrite --bs=4k --iodepth=1 --fsync=1 --norandommap ;;
  esac
}
for w in "${WORKLOADS[@]}"; do
  for s in "${SERVERS[@]}"; do
    log "$w on $s"
    sync
    # shellcheck disable=SC2046
    fio --name="$w" --ioengine=nbd --uri="${URI[$s]}" $(fio_args "$w") \
      --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --randrepeat=1 \
      --output-format=json --output="$OUT/fio/$w.$s.json" >/dev/null ||
      die "fio $w on $s failed (see $OUT/fio/$w.$s.json)"
  done
done

# --- latency at one rate -------------------------------------------------------------------------------
for s in "${SERVERS[@]}"; do
  log "randwrite-4k-qd32 at $LAT_RATE IOPS on $s"
  sync
  fio --name=lat --ioengine=nbd --uri="${URI[$s]}" --rw=randwrite --bs=4k --iodepth=32 --norandommap \
    --rate_iops="$LAT_RATE" --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --randrepeat=1 \
    --output-format=json --output="$OUT/fio/lat.$s.json" >/dev/null ||
    die "fio at a fixed rate on $s failed (see $OUT/fio/lat.$s.json)"
done

# --- QD32 with the server on one CPU and fio on another -------------------------------------------
# taskset -a moves every thread of a server; threads it starts later inherit the mask. The Go
# runtime follows its CPU mask (GOMAXPROCS drops to 1 while pinned), as qemu-nbd's and nbdkit's
# thread pools simply share the one CPU.
declare -A SPID
SPID[qemu-nbd]=$(cat "$WORK/qemu-nbd.pid")
SPID[nbdkit]=$(cat "$WORK/nbdkit.pid")
[[ "$SKIP_ES" != 1 ]] && SPID[extrasphere]=$ES_PID
ALL_CPUS="0-$(($(nproc) - 1))"
PINNED=0
if (( PIN_ROUNDS > 0 && $(nproc) >= 2 )); then
  PINNED=$PIN_ROUNDS
  n=${#SERVERS[@]}
  for r in $(seq "$PIN_ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do
      s=${SERVERS[$(((i + r) % n))]}
      log "randwrite-4k-qd32 pinned (server CPU 0, fio CPU 1), round $r, on $s"
      taskset -a -p -c 0 "${SPID[$s]}" >/dev/null || die "taskset $s (pid ${SPID[$s]}) failed"
      sync
      taskset -c 1 fio --name=pin --ioengine=nbd --uri="${URI[$s]}" --rw=randwrite --bs=4k --iodepth=32 \
        --norandommap --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --randrepeat=1 \
        --output-format=json --output="$OUT/fio/pin$r.$s.json" >/dev/null ||
        die "pinned fio on $s failed (see $OUT/fio/pin$r.$s.json)"
      taskset -a -p -c "$ALL_CPUS" "${SPID[$s]}" >/dev/null || die "taskset $s (pid ${SPID[$s]}) failed"
    done
  done
else
  log "pinned rows skipped (PIN_ROUNDS=$PIN_ROUNDS, $(nproc) CPUs)"
fi

# --- TLS over TCP: the same fio jobs, Extrasphere vs qemu-nbd with the same certificates ------------
TLS_SERVERS=()
if [[ "$SKIP_ES" != 1 && "$TLS_SKIP" != 1 ]]; then
  CERTS="$WORK/certs"
  es client add bench --volumes bench --out "$CERTS" >/dev/null || die "extrasphere client add failed"
  # fio's libnbd refuses tls-certificates= in a URI ("local file access is not allowed"), so it
  # reads the certificates from its default directory, $HOME/.pki/libnbd; as root libnbd ignores
  # $HOME (it uses /etc/pki/libnbd), so fio then runs as nobody.
  TLS_HOME="$WORK/tls-home"
  mkdir -p "$TLS_HOME/.pki"
  cp -r "$CERTS" "$TLS_HOME/.pki/libnbd"
  FIO_TLS=(env HOME="$TLS_HOME" fio)
  if [[ $(id -u) == 0 ]]; then
    chown -R nobody:nogroup "$TLS_HOME"
    FIO_TLS=(env HOME="$TLS_HOME" setpriv --reuid=nobody --regid=nogroup --clear-groups fio)
  fi
  # qemu-nbd serves the file it served on the unix socket, twice (TLS and plain TCP, one port each),
  # with the daemon's CA and server certificate (its pki directory is QEMU's endpoint=server layout);
  # image locking is off so two processes may open the file; they are never used at once.
  QT_PORT=$(free_port)
  QP_PORT=$(free_port)
  qemu_img_opts="driver=raw,file.driver=file,file.filename=$WORK/qemu-nbd.raw,file.locking=off"
  qemu-nbd --image-opts --persistent --fork --pid-file="$WORK/qemu-nbd-tls.pid" -b 127.0.0.1 -p "$QT_PORT" \
    --object "tls-creds-x509,id=tls0,dir=$ES_DATA/pki,endpoint=server" --tls-creds tls0 \
    "${QEMU_CACHE[@]}" -e 8 --discard=unmap "$qemu_img_opts" 2>"$OUT/qemu-nbd-tls.log" ||
    die "qemu-nbd with TLS failed: see $OUT/qemu-nbd-tls.log"
  PIDS+=("$(cat "$WORK/qemu-nbd-tls.pid")")
  qemu-nbd --image-opts --persistent --fork --pid-file="$WORK/qemu-nbd-tcp.pid" -b 127.0.0.1 -p "$QP_PORT" \
    "${QEMU_CACHE[@]}" -e 8 --discard=unmap "$qemu_img_opts" 2>"$OUT/qemu-nbd-tcp.log" ||
    die "qemu-nbd on TCP failed: see $OUT/qemu-nbd-tcp.log"
  PIDS+=("$(cat "$WORK/qemu-nbd-tcp.pid")")
  TLS_SERVERS=(extrasphere-tls qemu-nbd-tls extrasphere-tcp qemu-nbd-tcp)
  URI[extrasphere-tls]="nbds://127.0.0.1:$ES_PORT/bench"
  URI[qemu-nbd-tls]="nbds://127.0.0.1:$QT_PORT/"
  URI[extrasphere-tcp]="nbd://127.0.0.1:$ES_PORT/bench"
  URI[qemu-nbd-tcp]="nbd://127.0.0.1:$QP_PORT/"
  for w in "${WORKLOADS[@]}"; do
    for s in "${TLS_SERVERS[@]}"; do
      log "$w on $s"
      sync
      # shellcheck disable=SC2046
      "${FIO_TLS[@]}" --name="$w" --ioengine=nbd --uri="${URI[$s]}" $(fio_args "$w") \
        --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" --randrepeat=1 \
        --output-format=json >"$OUT/fio/$w.$s.json" ||
        die "fio $w on $s failed (see $OUT/fio/$w.$s.json)"
    done
  done
  stop_pids "$(cat "$WORK/qemu-nbd-tls.pid")" "$(cat "$WORK/qemu-nbd-tcp.pid")"
fi

# --- Extrasphere RSS ----------------------------------------------------------------------------------
rss_json="$OUT/rss.json"
rm -f "$rss_json"
if [[ "$SKIP_ES" != 1 ]]; then
  stop_pids "$ES_PID"
  wait "$ES_PID" 2>/dev/null || true # reap it (it is our child)
  log "RSS: fresh daemon, 10 volumes"
  start_extrasphere "$WORK/es-rss" "$OUT/extrasphere-rss.log"
  status() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$ES_PID/status"; } # kB
  rss_start=$(status VmRSS)
  uris=()
  for i in $(seq 0 9); do
    es volume create "vol$i" --size "$SIZE" >/dev/null || die "extrasphere volume create vol$i failed"
    uris+=("nbd+unix:///vol$i?socket=$ES_DATA/nbd.sock")
  done
  # One idle connection per volume, held open by libnbd (stopped by PID below / in cleanup).
  holders=()
  for i in $(seq 0 9); do
    "$PY" -c 'import nbd, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1]); open(sys.argv[2], "w").close(); time.sleep(600)' \
      "${uris[$i]}" "$WORK/hold$i.ready" 2>>"$OUT/holders.log" &
    holders+=("$!")
    PIDS+=("$!")
  done
  for i in $(seq 0 9); do
    for _ in $(seq 100); do [[ -e "$WORK/hold$i.ready" ]] && break; sleep 0.1; done
    [[ -e "$WORK/hold$i.ready" ]] || die "could not hold a connection to vol$i: see $OUT/holders.log"
  done
  sleep 1
  rss_idle=$(status VmRSS)
  fio_jobs=()
  for i in $(seq 0 9); do
    fio_jobs+=(--name="vol$i" --ioengine=nbd --uri="${uris[$i]}" --rw=randwrite --bs=4k --iodepth=8
      --time_based --runtime=6 --norandommap)
  done
  fio --output-format=json --output="$OUT/fio/rss-load.json" "${fio_jobs[@]}" >/dev/null &
  fio_pid=$!
  PIDS+=("$fio_pid")
  sleep 4
  rss_load=$(status VmRSS)
  wait "$fio_pid" || die "fio load on 10 volumes failed"
  rss_hwm=$(status VmHWM)
  conns=${#holders[@]}
  stop_pids "${holders[@]}"
  printf '{"start_kib":%s,"idle10_kib":%s,"load10_kib":%s,"hwm_kib":%s,"connections":%s}\n' \
    "$rss_start" "$rss_idle" "$rss_load" "$rss_hwm" "$conns" >"$rss_json"
fi

# --- report -------------------------------------------------------------------------------------------
{
  echo "versions: $(qemu-nbd --version | head -n1); nbdkit $(nbdkit --version | cut -d' ' -f2); $(fio --version)"
  [[ "$SKIP_ES" != 1 ]] && echo "extrasphere: $("$BIN" version 2>/dev/null | head -n1)"
  echo "host: $(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
"$PY" "$ROOT/bench/report.py" --out "$OUT" --size "$SIZE" --cache "$CACHE" --runtime "$RUNTIME" \
  --ramp "$RAMP" --servers "${SERVERS[*]}" --workloads "${WORKLOADS[*]}" --lat-rate "$LAT_RATE" --pin-rounds "$PINNED" --tls-servers "${TLS_SERVERS[*]}" |
  tee "$OUT/results.md"
