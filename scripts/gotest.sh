#!/usr/bin/env bash
# scripts/gotest.sh ARGS... — `go test -json ARGS`, printed like plain `go test` by scripts/gotestfmt.py.
# Exit status is non-zero if go test failed (build error, failing test, timeout) or any test was skipped.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"${GO:-go}" test -json "$@" 2>&1 | /usr/bin/python3 "$HERE/gotestfmt.py"
