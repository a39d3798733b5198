#!/usr/bin/env bash
# scripts/fuzz-smoke.sh — run every Go fuzz target in the repo for a short time (default 10 s each).
#
# Targets are discovered with grep (`func FuzzXxx(f *testing.F)` in *_test.go files), so a new fuzzer
# is picked up without editing anything. Each runs as
#   go test -run='^$' -fuzz='^FuzzXxx$' -fuzztime=$FUZZTIME ./pkg
# Files with a //go:build constraint are skipped (go test -fuzz would need their tags). A crasher is
# written by Go to pkg/testdata/fuzz/FuzzXxx/ — commit it as a regression seed once fixed.
# Prints one line per target; the full output of a failing target. Exits 1 if any target failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-200000x}

mapfile -t files < <(grep -rlE --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git \
  '^func Fuzz[A-Za-z0-9_]*\(' . | LC_ALL=C sort)
if ((${#files[@]} == 0)); then
  echo "fuzz: no fuzz targets found"
  exit 0
fi

fails=()
count=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for f in "${files[@]}"; do
  if grep -q '^//go:build' "$f"; then
    echo "fuzz: note: $f has a //go:build line; its targets are not fuzzed here"
    continue
  fi
  pkg="./$(dirname "${f#./}")"
  while read -r name; do
    count=$((count + 1))
    start=$SECONDS
    if "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
      execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -n1 | cut -d' ' -f2)
      printf 'ok  \tfuzz %s %s\t%ds, %s execs\n' "$pkg" "$name" $((SECONDS - start)) "${execs:-?}"
    else
      cat "$log"
      printf 'FAIL\tfuzz %s %s\n' "$pkg" "$name"
      fails+=("$pkg $name")
    fi
  done < <(grep -oE '^func Fuzz[A-Za-z0-9_]*\(' "$f" | sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(/\1/')
done

echo "fuzz: $count target(s), ${#fails[@]} failed"
((${#fails[@]} == 0))
