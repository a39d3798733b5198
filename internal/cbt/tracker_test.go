package cbt

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  func(size int64) Options
		names []string
	}{
		// 64 KiB extents and 4 slots: the suite's writes evict constantly.
		{"SmallAL", func(size int64) Options {
			return Options{Volume: "v", Size: size, ExtentSize: Granularity, ALSlots: 4}
		}, []string{"a", "b"}},
		{"Defaults", func(size int64) Options { return Options{Volume: "v", Size: size} }, []string{"cbt"}},
		{"NoBitmaps", func(size int64) Options { return Options{Volume: "v", Size: size} }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
				s := openMem(t, &memStore{}, tc.opts(size))
				enable(t, s, tc.names...)
				return New(memdev.New(size, false), s)
			}, devtest.Options{OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
				m := memdev.New(int64(len(content)), false)
				if err := m.WriteAt(t.Context(), content, 0, 0); err != nil {
					t.Fatal(err)
				}
				s := openMem(t, &memStore{}, tc.opts(int64(len(content))))
				enable(t, s, tc.names...)
				return New(readOnly(m), s)
			}})
		})
	}
}

func TestCapsAddOneContextPerBitmap(t *testing.T) {
	next := memdev.New(8<<20, false)
	s := openMem(t, &memStore{}, testOpts(8<<20, 8))
	enable(t, s, "zeta", "alpha")
	got := New(next, s).Caps()
	want := next.Caps()
	want.MetaContexts = append(want.MetaContexts, "qemu:dirty-bitmap:alpha", "qemu:dirty-bitmap:zeta")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Caps() = %+v, want %+v", got, want)
	}
}

func TestBlockStatusIsExactlyTheWrittenBlocks(t *testing.T) {
	const size = 8<<20 + 512
	s := openMem(t, &memStore{}, testOpts(size, 8))
	enable(t, s, "cbt")
	tr := New(memdev.New(size, false), s)
	ctx := t.Context()
	if err := tr.WriteAt(ctx, make([]byte, 4096), 70000, 0); err != nil { // block 1
		t.Fatal(err)
	}
	if err := tr.WriteZeroes(ctx, 3<<20, 200<<10, 0); err != nil { // blocks 48..51
		t.Fatal(err)
	}
	if err := tr.Trim(ctx, size-512, 512, 0); err != nil { // the partial last block
		t.Fatal(err)
	}
	if err := tr.WriteAt(ctx, make([]byte, 512), 0, 0); err != nil { // block 0
		t.Fatal(err)
	}
	got, err := tr.BlockStatus(ctx, "qemu:dirty-bitmap:cbt", 0, size)
	if err != nil {
		t.Fatal(err)
	}
	G := int64(Granularity)
	ext := func(n int64, f uint32) blockdev.Extent { return blockdev.Extent{Length: n, Flags: f} }
	want := []blockdev.Extent{
		ext(2*G, StateDirty), ext(46*G, 0), ext(4*G, StateDirty),
		ext(size-512-52*G, 0), ext(512, StateDirty),
	}
	if !slices.Equal(got, want) {
		t.Errorf("BlockStatus = %v, want %v", got, want)
	}
	// A range that starts and ends inside blocks.
	got, err = tr.BlockStatus(ctx, "qemu:dirty-bitmap:cbt", G+100, 3*G)
	if err != nil {
		t.Fatal(err)
	}
	if want := []blockdev.Extent{ext(G-100, StateDirty), ext(2*G+100, 0)}; !slices.Equal(got, want) {
		t.Errorf("BlockStatus(inner range) = %v, want %v", got, want)
	}
	if _, err := tr.BlockStatus(ctx, "qemu:dirty-bitmap:other", 0, G); !errors.Is(err, blockdev.ErrUnknownContext) {
		t.Errorf("BlockStatus(unknown bitmap) = %v, want ErrUnknownContext", err)
	}
	if _, err := tr.BlockStatus(ctx, "qemu:dirty-bitmap:cbt", size, 1); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Errorf("BlockStatus past the end = %v, want ErrOutOfRange", err)
	}
}

func TestRejectedRequestsAreNotRecorded(t *testing.T) {
	const size = 8 << 20
	s := openMem(t, &memStore{}, testOpts(size, 8))
	enable(t, s, "cbt")
	ro := New(readOnly(memdev.New(size, false)), s)
	if err := ro.WriteAt(t.Context(), make([]byte, 4096), 0, 0); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Fatalf("write to read-only = %v", err)
	}
	rw := New(memdev.New(size, false), s)
	if err := rw.WriteAt(t.Context(), make([]byte, 4096), size, 0); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("write past the end = %v", err)
	}
	if d := dirtyBlocks(t, s, "cbt"); len(d) != 0 {
		t.Errorf("refused requests marked blocks %v", d)
	}
}

// roDev is a read-only view of a device, for the suite's ReadOnly part.
type roDev struct {
	blockdev.Device // test double: every write method is overridden
}

func readOnly(d blockdev.Device) blockdev.Device { return roDev{d} }

func (d roDev) Caps() blockdev.Caps {
	c := d.Device.Caps()
	c.ReadOnly, c.FUA, c.Trim, c.Zero, c.FastZero = true, false, false, false, false
	return c
}

func (d roDev) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	return blockdev.ErrReadOnly
}

func (d roDev) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	return blockdev.ErrReadOnly
}

func (d roDev) Trim(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	return blockdev.ErrReadOnly
}
