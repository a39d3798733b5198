package sparse

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

// A Flush stopped at each failpoint (as a crash would stop it) leaves a
// file that opens and holds every grain flushed before; the grains of the
// failed Flush appear only if their grain tables were written. New grains
// never reuse the space of leaked ones. A Flush retried after the failure
// writes everything.
func TestFlushFailpoints(t *testing.T) {
	for _, fp := range []string{FailpointBeforeDataSync, FailpointBeforeGTWrite, FailpointBeforeGTSync} {
		for _, retry := range []bool{false, true} {
			name := fp + "/reopen"
			if retry {
				name = fp + "/retry"
			}
			t.Run(name, func(t *testing.T) {
				testFlushFailpoint(t, fp, retry)
			})
		}
	}
}

func testFlushFailpoint(t *testing.T, fp string, retry bool) {
	ctx := t.Context()
	path := newDelta(t, t.TempDir(), "d.vmdk", 1<<20, ParentRef{})
	e := openExtent(t, path, false)
	gs := int(e.GrainSize())
	data := map[int64][]byte{}
	alloc := func(e *Extent, g int64) {
		t.Helper()
		data[g] = pattern(uint64(100+g), gs)
		if err := e.AllocateGrain(ctx, g, data[g]); err != nil {
			t.Fatal(err)
		}
	}
	for g := range int64(5) {
		alloc(e, g)
	}
	if err := e.SetZero(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Not flushed: allocations, an in-place write, a zeroing of data.
	for g := int64(6); g < 10; g++ {
		alloc(e, g)
	}
	if err := e.WriteGrain(ctx, 2, 100, []byte("in place")); err != nil {
		t.Fatal(err)
	}
	copy(data[2][100:], "in place") // in the page cache either way
	if err := e.SetZero(ctx, 1); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("crash")
	e.Failpoint = func(name string) error {
		if name == fp {
			return boom
		}
		return nil
	}
	if err := e.Flush(ctx); !errors.Is(err, boom) {
		t.Fatalf("Flush = %v, want the failpoint's error", err)
	}
	tablesWritten := fp == FailpointBeforeGTSync
	if retry {
		e.Failpoint = nil
		if err := e.Flush(ctx); err != nil {
			t.Fatalf("Flush retried: %v", err)
		}
		tablesWritten = true
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = openExtent(t, path, false)
	want := map[int64]GrainKind{0: Data, 1: Data, 2: Data, 3: Data, 4: Data, 5: Zero}
	for g := int64(6); g < 10; g++ {
		want[g] = Unallocated
	}
	if tablesWritten {
		want[1] = Zero
		for g := int64(6); g < 10; g++ {
			want[g] = Data
		}
	}
	for g, kind := range want {
		if got := e.Lookup(g).Kind; got != kind {
			t.Errorf("grain %d after reopen is %s, want %s", g, got, kind)
			continue
		}
		if kind == Data {
			got := make([]byte, gs)
			if err := e.ReadGrain(ctx, g, 0, got); err != nil || !bytes.Equal(got, data[g]) {
				t.Errorf("grain %d after reopen: %v, %s", g, err, firstDiff(got, data[g]))
			}
		}
	}
	alloc(e, 10)
	if got := e.Lookup(10).Sector * sectorSize; got < uint64(fi.Size()) {
		t.Errorf("new grain at byte %d reuses space of the %d-byte file", got, fi.Size())
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e.Close()
	run(t, "qemu-img", "check", "-q", path)
}

// A failed fdatasync is sticky: the page cache may have dropped writes, so
// the extent refuses further changes and flushes until reopened; reads
// still work.
func TestSyncFailureIsSticky(t *testing.T) {
	ctx := t.Context()
	path := newDelta(t, t.TempDir(), "d.vmdk", 1<<20, ParentRef{})
	e := openExtent(t, path, false)
	defer e.Close()
	g0 := pattern(1, int(e.GrainSize()))
	if err := e.AllocateGrain(ctx, 0, g0); err != nil {
		t.Fatal(err)
	}
	e.file.sys.fdatasync = func(int) error { return unix.EIO }
	if err := e.Flush(ctx); !errors.Is(err, unix.EIO) {
		t.Fatalf("Flush = %v, want EIO", err)
	}
	e.file.sys.fdatasync = unix.Fdatasync
	for name, op := range map[string]func() error{
		"Flush":         func() error { return e.Flush(ctx) },
		"AllocateGrain": func() error { return e.AllocateGrain(ctx, 1, g0) },
		"WriteGrain":    func() error { return e.WriteGrain(ctx, 0, 0, []byte("x")) },
		"SetZero":       func() error { return e.SetZero(ctx, 2) },
		"SetParent":     func() error { return e.SetParent(ParentRef{}) },
	} {
		if err := op(); !errors.Is(err, unix.EIO) {
			t.Errorf("%s after a failed sync = %v, want the sync's EIO", name, err)
		}
	}
	got := make([]byte, len(g0))
	if err := e.ReadGrain(ctx, 0, 0, got); err != nil || !bytes.Equal(got, g0) {
		t.Fatalf("ReadGrain after a failed sync: %v", err)
	}
}

// A full datastore while writing grain tables (they are holes until first
// written) fails the Flush with ErrNoSpace; the tables stay dirty and the
// next Flush writes them.
func TestFlushNoSpaceRetries(t *testing.T) {
	ctx := t.Context()
	path := newDelta(t, t.TempDir(), "d.vmdk", 1<<20, ParentRef{})
	e := openExtent(t, path, false)
	g3 := pattern(3, int(e.GrainSize()))
	if err := e.AllocateGrain(ctx, 3, g3); err != nil {
		t.Fatal(err)
	}
	e.file.sys.pwrite = func(int, []byte, int64) (int, error) { return 0, unix.ENOSPC }
	if err := e.Flush(ctx); !errors.Is(err, blockdev.ErrNoSpace) {
		t.Fatalf("Flush = %v, want ErrNoSpace", err)
	}
	e.file.sys.pwrite = unix.Pwrite
	if err := e.Flush(ctx); err != nil {
		t.Fatalf("Flush after space came back: %v", err)
	}
	e.Close()
	e = openExtent(t, path, true)
	defer e.Close()
	got := make([]byte, len(g3))
	if err := e.ReadGrain(ctx, 3, 0, got); err != nil || !bytes.Equal(got, g3) {
		t.Fatalf("grain 3 after the retried Flush: %v", err)
	}
}
