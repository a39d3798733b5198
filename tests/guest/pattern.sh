#!/usr/bin/env bash
# tests/guest/pattern.sh — print the bytes the test guest writes to its disk.
#
# The guest (tests/guest/build.sh) writes PATTERN_LEN = 4 MiB at disk offset PATTERN_OFF = 1 MiB.
# The region is a sequence of 16-byte ASCII records, one per 16 bytes of disk:
#
#     record at absolute disk offset O (O = 1 MiB, 1 MiB+16, ..., 5 MiB-16) = printf "ES-%012x\n" O
#
# e.g. the first record is "ES-000000100000\n". Every record names its own offset, so a misplaced
# or stale block is detected, not just a corrupted one. In Go:
#
#     for off := int64(1 << 20); off < 5<<20; off += 16 { b.WriteString(fmt.Sprintf("ES-%012x\n", off)) }
#
# Usage: pattern.sh > expected.bin   (4194304 bytes; sha256 printed by `pattern.sh | sha256sum`)
set -euo pipefail
PATTERN_OFF=$((1 << 20))
PATTERN_LEN=$((4 << 20))
LC_ALL=C awk -v start="$PATTERN_OFF" -v end="$((PATTERN_OFF + PATTERN_LEN))" \
  'BEGIN { for (o = start; o < end; o += 16) printf "ES-%012x\n", o }'
