package flat

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

// counts wraps a Device's orig syscalls and counts them. These tests check
// that FUA and Flush reach the syscalls that make data durable
// (fdatasync) and that errors from them surface.
// Real power-loss durability cannot be observed from a unit test; the
// daemon's kill -9 tests and the kernel's guarantees for those syscalls
// cover the rest.
type counts struct {
	pwrite, fdatasync, fallocate atomic.Int64
}

func countSyscalls(d *Device) *counts {
	c := &counts{}
	orig := d.sys
	d.sys.pwrite = func(fd int, p []byte, off int64) (int, error) { c.pwrite.Add(1); return orig.pwrite(fd, p, off) }
	d.sys.fdatasync = func(fd int) error { c.fdatasync.Add(1); return orig.fdatasync(fd) }
	d.sys.fallocate = func(fd int, mode uint32, off, n int64) error {
		c.fallocate.Add(1)
		return orig.fallocate(fd, mode, off, n)
	}
	return c
}

func (c *counts) want(t *testing.T, step string, pwrite, fdatasync, fallocate int64) {
	t.Helper()
	got := [3]int64{c.pwrite.Load(), c.fdatasync.Load(), c.fallocate.Load()}
	if want := [3]int64{pwrite, fdatasync, fallocate}; got != want {
		t.Fatalf("%s: syscalls [pwrite fdatasync fallocate] = %v, want %v", step, got, want)
	}
}

func TestDurabilitySyscalls(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	c := countSyscalls(d)
	ctx := t.Context()
	data := bytes.Repeat([]byte{0x5a}, 8192)

	if err := d.WriteAt(ctx, data, 0, 0); err != nil {
		t.Fatal(err)
	}
	c.want(t, "plain write", 1, 0, 0) // page cache only
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.want(t, "flush", 1, 1, 0)
	if err := d.WriteAt(ctx, data, 8192, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	c.want(t, "FUA write", 2, 2, 0)
	if err := d.WriteZeroes(ctx, 0, 4096, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	c.want(t, "FUA write zeroes", 2, 3, 1)
	if err := d.Trim(ctx, 8192, 8192, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	c.want(t, "FUA trim", 2, 4, 2)
	if err := d.WriteZeroes(ctx, 0, 4096, 0); err != nil {
		t.Fatal(err)
	}
	c.want(t, "write zeroes without FUA", 2, 4, 3)

	got := make([]byte, 16384)
	if err := d.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	want := append(make([]byte, 4096), data[:4096]...)
	want = append(want, make([]byte, 8192)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("data after the sequence differs")
	}
}

// A FUA write that fails with ENOSPC wrote nothing: it is an error the
// guest recovers from, not a failed sync. Once there is space again the
// same write succeeds and is durable.
func TestFUANoSpaceIsNotSticky(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	c := countSyscalls(d)
	orig := d.sys.pwrite
	d.sys.pwrite = func(int, []byte, int64) (int, error) { return 0, unix.ENOSPC }
	ctx := t.Context()
	if err := d.WriteAt(ctx, []byte("durable"), 200, blockdev.FUA); !errors.Is(err, blockdev.ErrNoSpace) || errors.Is(err, ErrSyncFailed) {
		t.Fatalf("FUA write on a full datastore = %v, want ErrNoSpace, not ErrSyncFailed", err)
	}
	d.sys.pwrite = orig
	if err := d.WriteAt(ctx, []byte("durable"), 200, blockdev.FUA); err != nil {
		t.Fatalf("FUA write with space again: %v", err)
	}
	c.want(t, "FUA write after ENOSPC", 1, 1, 0) // no fdatasync after the failed pwrite
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got := make([]byte, 7)
	if err := d.ReadAt(ctx, got, 200); err != nil || string(got) != "durable" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// A failed fdatasync is never swallowed: Flush and FUA writes report it.
func TestSyncErrorsSurface(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	d.sys.fdatasync = func(int) error { return unix.EIO }
	ctx := t.Context()
	if err := d.Flush(ctx); !errors.Is(err, unix.EIO) {
		t.Fatalf("Flush = %v, want EIO", err)
	}
	if err := d.WriteAt(ctx, []byte("x"), 0, blockdev.FUA); !errors.Is(err, unix.EIO) {
		t.Fatalf("FUA WriteAt = %v, want EIO", err)
	}
	if err := d.WriteZeroes(ctx, 0, 4096, blockdev.FUA); !errors.Is(err, unix.EIO) {
		t.Fatalf("FUA WriteZeroes = %v, want EIO", err)
	}
}
