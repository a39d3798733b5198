//go:build integration

package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// randomFile writes size bytes of seeded random data to dir/name and returns the path and data.
// The seed is logged so a failure can be reproduced.
func randomFile(t *testing.T, dir, name string, size int64, seed uint64) (string, []byte) {
	t.Helper()
	r := rand.New(rand.NewChaCha8(seedBytes(seed)))
	b := make([]byte, size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d random bytes, seed %d", name, size, seed)
	return path, b
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// extent is a byte range [Off, Off+Len).
type extent struct{ Off, Len int64 }

func (e extent) String() string { return fmt.Sprintf("[%d,+%d)", e.Off, e.Len) }

// mergeExtents joins adjacent ranges of an ordered list and drops empty ones.
func mergeExtents(in []extent) []extent {
	var out []extent
	for _, e := range in {
		if e.Len == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len == e.Off {
			out[n-1].Len += e.Len
			continue
		}
		out = append(out, e)
	}
	return out
}

func equalExtents(a, b []extent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// firstDiff returns the first offset where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i += 4096 {
		end := min(i+4096, n)
		if bytes.Equal(a[i:end], b[i:end]) {
			continue
		}
		for j := i; j < end; j++ {
			if a[j] != b[j] {
				return j
			}
		}
	}
	if len(a) != len(b) {
		return n
	}
	return -1
}

// readFile reads a whole file; it must exist.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
