package memdev

import (
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
)

func TestConformance(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		return New(size, false)
	}, devtest.Options{OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
		d := New(int64(len(content)), false)
		if err := d.WriteAt(t.Context(), content, 0, 0); err != nil {
			t.Fatal(err)
		}
		d.setReadOnly()
		return d
	}})
}
