#!/usr/bin/env bash
# scripts/test.sh — everything `make test` (and .ci/run) checks, in order:
#
#   deps         scripts/deps.sh (Debian packages; fatal if it fails)
#   fmt          gofmt -l finds nothing
#   vet          go vet ./... and, with -tags integration, ./tests/...
#   build        bin/extrasphere (as `make build`) and bin/extrasphere-checked
#                (-race -tags extrasphere_checked: the daemon the interop tests run)
#   unit         go test -race ./...
#   guest        tests/guest/build.sh tests/guest/out (the TCG test guest, cached)
#   integration  go test -tags integration -count=1 -timeout 32m ./tests/...
#   fuzz         scripts/fuzz-smoke.sh (every Fuzz target, FUZZTIME=200000x runs each)
#
# Every stage runs even if an earlier one failed (except deps), so one run shows every problem; the
# exit status is non-zero if any stage failed. Tests are printed like plain `go test` (summary line
# per package, output of failing tests) and a skipped test is a failure (scripts/gotestfmt.py).
#
# The interop tests get, in the environment:
#   EXTRASPHERE_BIN  absolute path of bin/extrasphere-checked
#   ES_GUEST_DIR     absolute path of the built guest (vmlinuz, initrd.gz; see tests/guest/)
#   GORACE=halt_on_error=1  so a data race in the daemon kills it and the test sees it
# and PATH has /usr/bin right after the Go toolchain, so nbdsh finds the python3 with libnbd.
#
# Environment knobs: GO (go binary), STAGES (space-separated subset, default all), FUZZTIME.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
GO=${GO:-go}
command -v "$GO" >/dev/null || { echo "test.sh: $GO not found: install Go $(awk '/^go /{print $2}' go.mod)" >&2; exit 1; }
GO=$(command -v "$GO")
export PATH="$(dirname "$GO"):/usr/bin:$PATH"
STAGES=${STAGES:-deps fmt vet build unit guest integration fuzz}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
LDFLAGS="-X main.version=$VERSION"
GOTEST=(env GO="$GO" bash "$ROOT/scripts/gotest.sh")

declare -a results=() failtails=()
failed=0
stagelog=$(mktemp)
trap 'rm -f "$stagelog"' EXIT
has_stage() { [[ " $STAGES " == *" $1 "* ]]; }
run_stage() { # NAME CMD...
  local name=$1 start=$SECONDS rc
  shift
  has_stage "$name" || return 0
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$stagelog"
  rc=${PIPESTATUS[0]}
  if ((rc == 0)); then
    results+=("$(printf 'PASS  %-12s %4ds' "$name" $((SECONDS - start)))")
  else
    results+=("$(printf 'FAIL  %-12s %4ds  (exit %d)' "$name" $((SECONDS - start)) "$rc")")
    # CI shows only the end of the log: repeat the end of the failed stage's output there.
    failtails+=("--- last lines of $name:" "$(tail -n 15 "$stagelog")")
    failed=1
  fi
  return "$rc"
}

stage_fmt() {
  local files bad
  mapfile -t files < <(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' | LC_ALL=C sort)
  ((${#files[@]} == 0)) && return 0
  bad=$(gofmt -l "${files[@]}") || return 1
  [[ -z "$bad" ]] && return 0
  echo "not gofmt'ed (run make fmt):"
  echo "$bad"
  return 1
}
stage_vet() {
  local rc=0
  "$GO" vet ./... || rc=1
  if have_integration; then
    "$GO" vet -tags integration ./tests/... || rc=1
  fi
  return $rc
}
stage_build() {
  mkdir -p bin
  CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$LDFLAGS" -o bin/extrasphere ./cmd/extrasphere &&
    CGO_ENABLED=1 "$GO" build -race -tags extrasphere_checked -ldflags "$LDFLAGS" -o bin/extrasphere-checked ./cmd/extrasphere
}
have_integration() { [[ -n "$(find tests -name '*.go' -print -quit 2>/dev/null)" ]]; }
stage_integration() {
  if ! have_integration; then
    echo "no Go files under tests/ yet"
    return 0
  fi
  EXTRASPHERE_BIN="$ROOT/bin/extrasphere-checked" ES_GUEST_DIR="$ROOT/tests/guest/out" \
    GORACE=halt_on_error=1 \
    "${GOTEST[@]}" -tags integration -count=1 -timeout 32m ./tests/...
}

total_start=$SECONDS
run_stage deps env GO="$GO" "$ROOT/scripts/deps.sh" || { echo "test.sh: deps failed: cannot test" >&2; exit 1; }
run_stage fmt stage_fmt
run_stage vet stage_vet
run_stage build stage_build
run_stage unit env CGO_ENABLED=1 "${GOTEST[@]}" -race -timeout 15m ./...
run_stage guest "$ROOT/tests/guest/build.sh" "$ROOT/tests/guest/out"
run_stage integration stage_integration
run_stage fuzz env GO="$GO" FUZZTIME="${FUZZTIME:-200000x}" "$ROOT/scripts/fuzz-smoke.sh"

echo
echo "=== summary ($((SECONDS - total_start)) s)"
printf '%s\n' "${results[@]}"
((${#failtails[@]})) && printf '%s\n' "${failtails[@]}"
if ((failed)); then
  echo "make test: FAIL"
  exit 1
fi
echo "make test: PASS"
