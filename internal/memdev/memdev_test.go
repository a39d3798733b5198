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
		caps := ReadOnlyCaps(DefaultCaps())
		return NewWithOptions(int64(len(content)), Options{Caps: &caps, Content: content})
	}})
}

// NarrowCaps are the capabilities of TestConformanceNarrow: MinBlock 512,
// no FUA or FastZero, 64 KiB payloads.
func narrowCaps() blockdev.Caps {
	c := DefaultCaps()
	c.MinBlock, c.FUA, c.FastZero, c.MaxPayload = 512, false, false, 64<<10
	return c
}

// With narrow caps and block status replies of at most 3 extents, the
// device still keeps the contract (and the suite sends only what the caps
// allow).
func TestConformanceNarrow(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		caps := narrowCaps()
		return NewWithOptions(size, Options{Caps: &caps, MaxExtents: 3})
	}, devtest.Options{OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
		caps := narrowCaps()
		caps.ReadOnly = true
		return NewWithOptions(int64(len(content)), Options{Caps: &caps, Content: content, MaxExtents: 3})
	}})
}

// A reply capped at MaxExtents stops early, at an extent's end.
func TestMaxExtents(t *testing.T) {
	ctx := t.Context()
	d := NewWithOptions(8*pageSize, Options{MaxExtents: 2})
	for _, pg := range []int64{1, 3, 5} { // hole, data, hole, data, hole, data, hole, hole
		if err := d.WriteAt(ctx, []byte{1}, pg*pageSize, 0); err != nil {
			t.Fatal(err)
		}
	}
	ext, err := d.BlockStatus(ctx, blockdev.MetaBaseAllocation, 0, 8*pageSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != 2 || ext[0].Length != pageSize || ext[1].Length != pageSize || ext[1].Flags != 0 {
		t.Fatalf("BlockStatus = %v, want a hole page then a data page", ext)
	}
}
