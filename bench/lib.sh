# bench/lib.sh — process bookkeeping shared by the bench scripts (sourced, not run).
# The caller sets WORK and appends every background PID it starts to PIDS; cleanup (installed as the
# EXIT trap) stops only those, then removes WORK unless KEEP=1.

PIDS=()

stop_pids() { # PID...: SIGTERM, then SIGKILL whatever is still there after 5 s
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}

cleanup() {
  stop_pids "${PIDS[@]}"
  if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
