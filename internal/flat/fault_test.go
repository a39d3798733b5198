package flat

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

// Errno mapping: a full or over-quota datastore is ErrNoSpace, a
// read-only filesystem ErrReadOnly, anything else keeps its errno; every
// error names the flat file.
func TestErrnoMapping(t *testing.T) {
	tests := []struct {
		name  string
		errno unix.Errno
		want  error
	}{
		{"ENOSPC", unix.ENOSPC, blockdev.ErrNoSpace},
		{"EDQUOT", unix.EDQUOT, blockdev.ErrNoSpace},
		{"EROFS", unix.EROFS, blockdev.ErrReadOnly},
		{"EIO", unix.EIO, unix.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
			defer d.Close()
			fail := func(int, []byte, int64) (int, error) { return 0, tt.errno }
			d.sys.pwrite = fail
			d.sys.fallocate = func(int, uint32, int64, int64) error { return tt.errno }
			d.sys.fdatasync = func(int) error { return tt.errno }
			ctx := t.Context()
			ops := map[string]func() error{
				"WriteAt":           func() error { return d.WriteAt(ctx, []byte("x"), 0, 0) },
				"WriteAtFUA":        func() error { return d.WriteAt(ctx, []byte("x"), 0, blockdev.FUA) },
				"WriteZeroes":       func() error { return d.WriteZeroes(ctx, 0, 4096, 0) },
				"WriteZeroesNoHole": func() error { return d.WriteZeroes(ctx, 0, 4096, blockdev.NoHole) },
				"Trim":              func() error { return d.Trim(ctx, 0, 8192, 0) },
				"Flush":             func() error { return d.Flush(ctx) },
			}
			for name, op := range ops {
				err := op()
				if !errors.Is(err, tt.want) || !errors.Is(err, tt.errno) {
					t.Errorf("%s = %v, want %v wrapping %v", name, err, tt.want, tt.errno)
				}
				if err != nil && !strings.Contains(err.Error(), d.Path()) {
					t.Errorf("%s error %q does not name %s", name, err, d.Path())
				}
			}
		})
	}
}

// A filesystem without fallocate: WriteZeroes writes zeros, FastZero
// refuses with ErrNotFast and leaves the data, Trim is a no-op.
func TestNoFallocate(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	d.sys.fallocate = func(int, uint32, int64, int64) error { return unix.EOPNOTSUPP }
	ctx := t.Context()
	data := bytes.Repeat([]byte{0xee}, 1<<20)
	if err := d.WriteAt(ctx, data, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteZeroes(ctx, 0, 4096, blockdev.FastZero); !errors.Is(err, blockdev.ErrNotFast) {
		t.Fatalf("FastZero = %v, want ErrNotFast", err)
	}
	if err := d.Trim(ctx, 0, 1<<20, 0); err != nil {
		t.Fatalf("Trim = %v, want a no-op", err)
	}
	readBack(t, d, 0, data)
	// Larger than the zero buffer, unaligned.
	if err := d.WriteZeroes(ctx, 100, 1<<20-200, 0); err != nil {
		t.Fatal(err)
	}
	clear(data[100 : 1<<20-100])
	readBack(t, d, 0, data)
}

func readBack(t *testing.T, d *Device, off int64, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if err := d.ReadAt(t.Context(), got, off); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("byte %d = %#02x, want %#02x", off+int64(i), got[i], want[i])
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Short reads and writes are continued until the whole buffer is done;
// EINTR is retried; a read that hits end of file is an error, not zeros.
func TestShortIO(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	defer d.Close()
	orig := d.sys
	var eintr bool
	d.sys.pwrite = func(fd int, p []byte, off int64) (int, error) {
		if eintr = !eintr; eintr {
			return 0, unix.EINTR
		}
		return orig.pwrite(fd, p[:min(len(p), 1000)], off)
	}
	d.sys.pread = func(fd int, p []byte, off int64) (int, error) {
		return orig.pread(fd, p[:min(len(p), 777)], off)
	}
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if err := d.WriteAt(t.Context(), data, 12345, 0); err != nil {
		t.Fatal(err)
	}
	readBack(t, d, 12345, data)
	d.sys.pread = func(int, []byte, int64) (int, error) { return 0, nil }
	if err := d.ReadAt(t.Context(), make([]byte, 10), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAt at end of file = %v, want io.ErrUnexpectedEOF", err)
	}
}

// Close while I/O is in flight: each call either completes or fails with
// ErrClosed, never uses a closed descriptor. Run under -race.
func TestCloseDuringIO(t *testing.T) {
	d := openVolume(t, newVolume(t, 1<<20, CreateOptions{}), Options{})
	ctx := t.Context()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p := make([]byte, 4096)
			for i := range 500 {
				off := int64((w*500 + i) % 256 * 4096)
				var err error
				if i%2 == 0 {
					err = d.WriteAt(ctx, p, off, 0)
				} else {
					err = d.ReadAt(ctx, p, off)
				}
				if errors.Is(err, blockdev.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
			}
		}()
	}
	close(start)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}
