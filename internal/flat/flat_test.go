package flat

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
)

// newVolume creates a volume in a temp dir and returns its descriptor path.
func newVolume(t *testing.T, size int64, opts CreateOptions) string {
	t.Helper()
	desc := filepath.Join(t.TempDir(), "vol.vmdk")
	if err := Create(desc, size, opts); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return desc
}

func openVolume(t *testing.T, desc string, opts Options) *Device {
	t.Helper()
	d, err := Open(desc, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

// openWithContent creates a volume holding content and opens it with opts.
func openWithContent(t *testing.T, content []byte, create CreateOptions, opts Options) *Device {
	t.Helper()
	desc := newVolume(t, int64(len(content)), create)
	flatPath, err := FlatPath(desc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flatPath, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return openVolume(t, desc, opts)
}

func TestConformanceThin(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		return openVolume(t, newVolume(t, size, CreateOptions{}), Options{})
	}, devtest.Options{OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
		return openWithContent(t, content, CreateOptions{}, Options{ReadOnly: true})
	}})
}

func TestConformancePreallocated(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		return openVolume(t, newVolume(t, size, CreateOptions{Preallocate: true}), Options{})
	}, devtest.Options{OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
		// Read-only from the descriptor (ddb.extrasphere.readOnly), not the option.
		return openWithContent(t, content, CreateOptions{Preallocate: true, ReadOnly: true}, Options{})
	}})
}

// The checked device over a flat: the suite's calls and the flat's
// replies (block status) both keep the contract.
func TestConformanceChecked(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		return blockdev.NewChecked(openVolume(t, newVolume(t, size, CreateOptions{}), Options{}))
	}, devtest.Options{OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
		return blockdev.NewChecked(openWithContent(t, content, CreateOptions{}, Options{ReadOnly: true}))
	}})
}
