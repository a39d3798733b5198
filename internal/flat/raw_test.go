package flat

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
)

// rawTail is what a raw file holds past the device's size in
// TestConformanceRawLonger: bytes the device must never touch.
const rawTail = 1<<16 + 300

// OpenRaw (a mirror's file:// replica) over a file of exactly the size.
func TestConformanceRaw(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		path := filepath.Join(t.TempDir(), "replica.raw")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		return openRaw(t, path, size)
	})
}

// OpenRaw over a longer file (a replica file may be larger than the
// volume): the device is the first size bytes, and zeroing, trimming or
// writing its last block never changes a byte past it.
func TestConformanceRawLonger(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		path := filepath.Join(t.TempDir(), "replica.raw")
		tail := bytes.Repeat([]byte{0x5a}, rawTail)
		if err := os.WriteFile(path, append(make([]byte, size), tail...), 0o644); err != nil {
			t.Fatal(err)
		}
		// Registered before the suite's Close, so it runs after it.
		t.Cleanup(func() {
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(got)) != size+rawTail {
				t.Fatalf("the file is %d bytes, want %d: the device changed its length", len(got), size+rawTail)
			}
			if i := firstDiff(got[size:], tail); i >= 0 {
				t.Fatalf("byte %d past the device's end changed to %#02x", i, got[size+int64(i)])
			}
		})
		return openRaw(t, path, size)
	})
}

func openRaw(t *testing.T, path string, size int64) *Device {
	t.Helper()
	d, err := OpenRaw(path, size)
	if err != nil {
		t.Fatalf("OpenRaw: %v", err)
	}
	return d
}
