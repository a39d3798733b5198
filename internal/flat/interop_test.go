package flat

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// qemuImg runs qemu-img, failing the test on a non-zero exit.
func qemuImg(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "qemu-img", args...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, exit.Stderr)
		}
		t.Fatalf("qemu-img %v: %v", args, err)
	}
	return out
}

// Data written through the device is what qemu-img reads through the
// descriptor, and the volume is a monolithicFlat of the right size to it.
func TestQemuReadsWhatWeWrote(t *testing.T) {
	const size = 4<<20 + 512
	for _, prealloc := range []bool{false, true} {
		desc := newVolume(t, size, CreateOptions{Preallocate: prealloc})
		d := openVolume(t, desc, Options{})
		want := make([]byte, size)
		rng := rand.New(rand.NewPCG(3, 4))
		ctx := t.Context()
		for range 200 {
			off := rng.Int64N(size - 5000)
			p := make([]byte, 1+rng.IntN(5000))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			if err := d.WriteAt(ctx, p, off, blockdev.WriteFlags(rng.IntN(2))); err != nil {
				t.Fatal(err)
			}
			copy(want[off:], p)
		}
		if err := d.WriteZeroes(ctx, 1<<20, 100000, 0); err != nil {
			t.Fatal(err)
		}
		clear(want[1<<20 : 1<<20+100000])
		if err := d.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		raw := filepath.Join(t.TempDir(), "want.raw")
		if err := os.WriteFile(raw, want, 0o644); err != nil {
			t.Fatal(err)
		}
		var info struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		if err := json.Unmarshal(qemuImg(t, "info", "--output=json", desc), &info); err != nil {
			t.Fatal(err)
		}
		if info.Format != "vmdk" || info.VirtualSize != size {
			t.Fatalf("qemu-img info: %+v, want vmdk of %d bytes", info, size)
		}
		qemuImg(t, "compare", "-q", "-f", "vmdk", "-F", "raw", desc, raw)
	}
}
