package chain

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// countingDev counts the bytes written into a device.
type countingDev struct {
	blockdev.Device
	written atomic.Int64
}

func (d *countingDev) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	d.written.Add(int64(len(p)))
	return d.Device.WriteAt(ctx, p, off, f)
}

func TestSubRuns(t *testing.T) {
	for _, tc := range []struct {
		mask uint32
		want [][2]int
	}{
		{0, nil},
		{1, [][2]int{{0, 4}}},
		{0b1011_0000_0000_0110, [][2]int{{4, 8}, {48, 8}, {60, 4}}},
		{fullMask, [][2]int{{0, 64}}},
	} {
		var got [][2]int
		subRuns(tc.mask, 4, func(off, n int) error { got = append(got, [2]int{off, n}); return nil })
		if len(got) != len(tc.want) {
			t.Fatalf("subRuns(%b) = %v, want %v", tc.mask, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("subRuns(%b) = %v, want %v", tc.mask, got, tc.want)
			}
		}
	}
}

// Merging the top into the base copies only the parts written into the
// top, and still reads exactly like the chain: also for a grain the top
// zeroed and then wrote, a grain written partly on the last, short grain,
// and after Rebase onto copies of the lower layers.
func TestMergeCopiesWrittenParts(t *testing.T) {
	ctx := t.Context()
	const size = 20*testGrain + 5000 // a short last grain
	mem := memdev.New(size, false)
	mem.WriteAt(ctx, bytes.Repeat([]byte{1}, size), 0, 0)
	base := &countingDev{Device: mem}
	c, err := New(base, []Delta{newMemDelta(testGrain)})
	if err != nil {
		t.Fatal(err)
	}
	w := func(b byte, off, n int64) {
		if err := c.WriteAt(ctx, bytes.Repeat([]byte{b}, int(n)), off, 0); err != nil {
			t.Fatal(err)
		}
	}
	for g := range int64(10) {
		w(byte(10+g), g*testGrain+g*4096, 4096) // one part of each of 10 grains
	}
	w(7, 11*testGrain+4000, 200) // straddles two parts
	if err := c.WriteZeroes(ctx, 12*testGrain, testGrain, 0); err != nil {
		t.Fatal(err)
	}
	w(8, 12*testGrain+8192, 100) // a zeroed grain written again: all of it differs from the base
	w(9, size-3000, 3000)        // the short last grain

	// Rebase onto a copy of the base, as a migration does.
	cp := memdev.New(size, false)
	cp.WriteAt(ctx, bytes.Repeat([]byte{1}, size), 0, 0)
	target := &countingDev{Device: cp}
	c, err = Rebase(c, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := readAll(t, c)
	m := NewMerger(c)
	if _, err := m.Copy(ctx, 1, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	nd, err := m.Without()
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, nd); !bytes.Equal(got, want) {
		t.Fatal("merged base reads differently from the chain")
	}
	part := int64(testGrain / subBlocks)
	// 10 parts + 2 parts + a whole zeroed-then-written grain + the last grain's written parts.
	wantBytes := 10*part + 2*part + testGrain + (size - (size-3000)/part*part)
	if got := target.written.Load(); got != wantBytes {
		t.Errorf("merge wrote %d bytes into the base, want %d (the written parts only)", got, wantBytes)
	}
}

// A chain built from files does not know what was written: whole grains.
func TestNewChainMarksWholeGrains(t *testing.T) {
	ctx := t.Context()
	d := newMemDelta(testGrain)
	d.AllocateGrain(ctx, 3, bytes.Repeat([]byte{5}, testGrain))
	c, err := New(memdev.New(8*testGrain, false), []Delta{d})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.subMask(3); got != fullMask {
		t.Errorf("mask of a grain found in the top: %b, want full", got)
	}
	if got := c.subMask(2); got != 0 {
		t.Errorf("mask of a grain not in the top: %b, want 0", got)
	}
}
