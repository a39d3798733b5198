package transfer

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// The one copy loop: copies what the source holds, skips its holes, and
// reports progress up to the size, holes included.
func TestCopyDeviceCopiesDataAndCountsHoles(t *testing.T) {
	ctx := t.Context()
	const size = 8 << 20
	src := memdev.New(size, false)
	for _, off := range []int64{0, 3<<20 + 4096, size - 512} {
		p := bytes.Repeat([]byte{byte(off>>12) | 1}, 512)
		if err := src.WriteAt(ctx, p, off, 0); err != nil {
			t.Fatal(err)
		}
	}
	dst := memdev.New(size, false)
	var done atomic.Int64 // the copy's workers report concurrently
	err := CopyDevice(ctx, dst, src, 0, func(n int64) {
		if n <= 0 {
			t.Errorf("progress of %d bytes", n)
		}
		done.Add(n)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := done.Load(); got != size {
		t.Errorf("progress added up to %d, want %d", got, size)
	}
	want, got := make([]byte, size), make([]byte, size)
	if err := src.ReadAt(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	if err := dst.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, got) {
		t.Fatal("target differs from source")
	}
	// Only the three written chunks were written: the rest stayed holes.
	ext, err := dst.BlockStatus(ctx, blockdev.MetaBaseAllocation, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	var data int64
	for _, x := range ext {
		if x.Flags&blockdev.StateHole == 0 {
			data += x.Length
		}
	}
	if data > 3*copyChunk {
		t.Errorf("target has %d bytes allocated, want at most the 3 chunks that hold data", data)
	}
}

// failStatus fails every BlockStatus call.
type failStatus struct{ blockdev.Device }

var errStatus = errors.New("block status failed (test)")

func (failStatus) BlockStatus(context.Context, string, int64, int64) ([]blockdev.Extent, error) {
	return nil, errStatus
}

// A device copy needs the source's map and fails without it; an export
// (lenient) copies everything instead.
func TestCopySpansWhenBlockStatusFails(t *testing.T) {
	ctx := t.Context()
	src := failStatus{memdev.New(1<<20, false)}
	if err := CopyDevice(ctx, memdev.New(1<<20, false), src, 0, nil); !errors.Is(err, errStatus) {
		t.Fatalf("CopyDevice = %v, want %v", err, errStatus)
	}
	var got []blockdev.Range
	err := allocatedSpans(src, 1<<20, true)(ctx, func(r blockdev.Range) bool {
		got = append(got, r)
		return true
	})
	if err != nil || len(got) != 1 || got[0] != (blockdev.Range{Off: 0, Len: 1 << 20}) {
		t.Fatalf("lenient spans = %v, %v; want the whole device", got, err)
	}
}

// blockWrites holds every write until its context ends.
type blockWrites struct {
	blockdev.Device
	started chan struct{}
}

func (b blockWrites) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	select {
	case b.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// Cancelling a copy ends it: the writes in flight see the cancellation and
// the copy returns the context's error, not a write error.
func TestCopyDeviceCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	const size = 16 << 20
	src := memdev.New(size, false)
	if err := src.WriteAt(ctx, bytes.Repeat([]byte{7}, size), 0, 0); err != nil {
		t.Fatal(err)
	}
	dst := blockWrites{Device: memdev.New(size, false), started: make(chan struct{}, 1)}
	errc := make(chan error, 1)
	go func() { errc <- CopyDevice(ctx, dst, src, 0, nil) }()
	<-dst.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("CopyDevice = %v, want context.Canceled", err)
	}
}
