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
// (pwritev2 RWF_DSYNC, fdatasync) and that errors from them surface.
// Real power-loss durability cannot be observed from a unit test; the
// daemon's kill -9 tests and the kernel's guarantees for those syscalls
// cover the rest.
type counts struct {
	pwrite, pwriteDS, fdatasync, fallocate atomic.Int64
}

func countSyscalls(d *Device) *counts {
	c := &counts{}
	orig := d.sys
	d.sys.pwrite = func(fd int, p []byte, off int64) (int, error) { c.pwrite.Add(1); return orig.pwrite(fd, p, off) }
	d.sys.pwriteDS = func(fd int, p []byte, off int64) (int, error) { c.pwriteDS.Add(1); return orig.pwriteDS(fd, p, off) }
	d.sys.fdatasync = func(fd int) error { c.fdatasync.Add(1); return orig.fdatasync(fd) }
	d.sys.fallocate = func(fd int, mode uint32, off, n int64) error {
		c.fallocate.Add(1)
		return orig.fallocate(fd, mode, off, n)
	}
	return c
}

func (c *counts) want(t *testing.T, step string, pwrite, pwriteDS, fdatasync, fallocate int64) {
	t.Helper()
	got := [4]int64{c.pwrite.Load(), c.pwriteDS.Load(), c.fdatasync.Load(), c.fallocate.Load()}
	if want := [4]int64{pwrite, pwriteDS, fdatasync, fallocate}; got != want {
		t.Fatalf("%s: syscalls [pwrite pwritev2-dsync fdatasync fallocate] = %v, want %v", step, got, want)
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
	c.want(t, "plain write", 1, 0, 0, 0) // page cache only
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.want(t, "flush", 1, 0, 1, 0)
	if err := d.WriteAt(ctx, data, 8192, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	c.want(t, "FUA write", 1, 1, 1, 0) // RWF_DSYNC, no full fdatasync
	if err := d.WriteZeroes(ctx, 0, 4096, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	c.want(t, "FUA write zeroes", 1, 1, 2, 1)
	if err := d.Trim(ctx, 8192, 8192, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	c.want(t, "FUA trim", 1, 1, 3, 2)
	if err := d.WriteZeroes(ctx, 0, 4096, 0); err != nil {
		t.Fatal(err)
	}
	c.want(t, "write zeroes without FUA", 1, 1, 3, 3)

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

// Where pwritev2 has no RWF_DSYNC, a FUA write is pwrite + fdatasync, and
// the device remembers not to try again.
func TestFUAFallback(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	c := countSyscalls(d)
	d.sys.pwriteDS = func(int, []byte, int64) (int, error) { c.pwriteDS.Add(1); return 0, unix.EOPNOTSUPP }
	ctx := t.Context()
	for i := range 3 {
		if err := d.WriteAt(ctx, []byte("durable"), int64(i)*100, blockdev.FUA); err != nil {
			t.Fatal(err)
		}
	}
	c.want(t, "three FUA writes", 3, 1, 3, 0)
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
	d.sys.pwriteDS = func(int, []byte, int64) (int, error) { return 0, unix.EIO }
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
