package fence

import (
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// openFenced returns a fence.Device over next for a session of a fresh
// fence, as a replica's NBD session or a mirror target sees it.
func openFenced(t *testing.T, next blockdev.Device, owns bool) blockdev.Device {
	t.Helper()
	h, err := New(time.Minute).Open(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return NewDevice(next, h, owns)
}

// A device the session opened for itself (a mirror target): Close closes it.
func TestConformanceOwned(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		return openFenced(t, memdev.New(size, false), true)
	})
}

// A volume shared with others (a replica's session): Close ends the
// handle only, and the volume stays open under it.
func TestConformanceShared(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		vol := memdev.New(size, false)
		t.Cleanup(func() { vol.Close() })
		return openFenced(t, vol, false)
	})
}
