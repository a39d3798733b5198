package local

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
	"github.com/extrasphere/extrasphere/internal/repo/backend/backendtest"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		b, err := Create(filepath.Join(t.TempDir(), "repo"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestOpenMissingOrFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing dir: %v, want ErrNotExist", err)
	}
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Open(f); err == nil {
		t.Fatal("Open of a file succeeded")
	}
}

// Temp files are never listed; stale ones go at Open (outside chunks/) and
// at List (where it walks); fresh ones stay (a Put may be running).
func TestTempFiles(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := b.Put(ctx, "chunks/ab/ab01", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "snapshots/s1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * staleTemp)
	mk := func(rel string, stale bool) string {
		p := filepath.Join(dir, rel)
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		if stale {
			os.Chtimes(p, old, old)
		}
		return p
	}
	staleSnap := mk("snapshots/.s2.tmp-0123456789abcdef", true)
	freshSnap := mk("snapshots/.s3.tmp-0123456789abcdef", false)
	staleChunk := mk("chunks/ab/.ab02.tmp-0123456789abcdef", true)
	if got := keys(t, b, ""); strings.Join(got, ",") != "chunks/ab/ab01,snapshots/s1" {
		t.Fatalf("List shows %v", got)
	}
	if _, err := os.Stat(staleChunk); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("List left a stale temp file in chunks/: %v", err)
	}
	staleChunk = mk("chunks/ab/.ab02.tmp-0123456789abcdef", true)
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(staleSnap); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open left a stale temp file: %v", err)
	}
	if _, err := os.Stat(freshSnap); err != nil {
		t.Fatalf("Open removed a fresh temp file: %v", err)
	}
	if _, err := os.Stat(staleChunk); err != nil {
		t.Fatalf("Open walked chunks/ (it must not: it can be huge): %v", err)
	}
	if err := b.Put(ctx, ".hidden", []byte("x")); !errors.Is(err, backend.ErrBadKey) {
		t.Fatalf("Put of a dot key: %v, want ErrBadKey", err)
	}
}

func keys(t *testing.T, b *Backend, prefix string) []string {
	var out []string
	if err := b.List(t.Context(), prefix, func(k string, _ int64) error {
		out = append(out, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// A full filesystem is ErrNoSpace, and the failed Put leaves neither the
// object nor its temp file.
func TestNoSpace(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOSPC, unix.EDQUOT} {
		dir := t.TempDir()
		b, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		b.write = func(f *os.File, p []byte) (int, error) {
			n, _ := f.Write(p[:len(p)/2])
			return n, &os.PathError{Op: "write", Path: f.Name(), Err: errno}
		}
		err = b.Put(t.Context(), "chunks/ab/ab01", []byte("some bytes"))
		if !errors.Is(err, backend.ErrNoSpace) || !errors.Is(err, errno) {
			t.Fatalf("Put on a full filesystem (%v): %v, want ErrNoSpace wrapping the errno", errno, err)
		}
		ents, _ := os.ReadDir(filepath.Join(dir, "chunks/ab"))
		if len(ents) != 0 {
			t.Fatalf("failed Put left %v", ents)
		}
	}
	if err := mapErr("x", "p", unix.EIO); errors.Is(err, backend.ErrNoSpace) || !errors.Is(err, unix.EIO) {
		t.Fatalf("EIO mapped to %v", err)
	}
}
