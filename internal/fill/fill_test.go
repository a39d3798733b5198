package fill

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// memSource is a backup volume in memory; chunks of zeros are zero chunks.
type memSource struct {
	data   []byte
	chunk  int
	reads  atomic.Int64 // ReadAt calls; the conformance suite reads concurrently
	closed bool
}

func (s *memSource) ReadAt(ctx context.Context, p []byte, off int64) error {
	s.reads.Add(1)
	copy(p, s.data[off:])
	return nil
}
func (s *memSource) Size() int64    { return int64(len(s.data)) }
func (s *memSource) ChunkSize() int { return s.chunk }
func (s *memSource) IsZero(c int) bool {
	end := min((c+1)*s.chunk, len(s.data))
	return blockdev.IsZero(s.data[c*s.chunk : end])
}
func (s *memSource) Close() error { s.closed = true; return nil }

func TestFill(t *testing.T) {
	ctx := t.Context()
	const chunk, size = 4096, 10*4096 + 100 // a short last chunk
	src := &memSource{data: make([]byte, size), chunk: chunk}
	for i := range src.data {
		if i/chunk != 3 { // chunk 3 stays zero
			src.data[i] = byte(i%251 + 1)
		}
	}
	want := bytes.Clone(src.data)
	flat := memdev.New(size, false)
	d, err := New(flat, src)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	if err := d.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read before any fill: %v", err)
	}
	buf := make([]byte, chunk)
	for c := range d.Chunks() {
		if err := d.Fill(ctx, c, buf); err != nil {
			t.Fatal(err)
		}
	}
	// Filled chunks come from the flat file: change the source and read.
	clear(src.data)
	src.reads.Store(0)
	if err := d.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, want) || src.reads.Load() != 0 {
		t.Fatalf("read after filling: %v, %d reads from the backup", err, src.reads.Load())
	}
	flatGot := make([]byte, size)
	flat.ReadAt(ctx, flatGot, 0)
	if !bytes.Equal(flatGot, want) {
		t.Fatal("the flat file does not hold the backup after every chunk was filled")
	}
	ext, err := d.BlockStatus(ctx, blockdev.MetaBaseAllocation, 0, size)
	if err != nil || len(ext) != 1 { // the source is all zero now: one hole
		t.Fatalf("block status: %v %v", ext, err)
	}
	if err := d.WriteAt(ctx, []byte{1}, 0, 0); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Fatalf("write: %v, want ErrReadOnly", err)
	}
	if err := d.ReadAt(ctx, got[:2], size-1); !errors.Is(err, blockdev.ErrOutOfRange) {
		t.Fatalf("read past the end: %v", err)
	}
	f, err := d.Release()
	if err != nil || f != flat || !src.closed {
		t.Fatalf("release: %v", err)
	}
	if err := d.ReadAt(ctx, got[:1], 0); !errors.Is(err, blockdev.ErrClosed) {
		t.Fatalf("read after release: %v", err)
	}
}

func TestFillSizeMismatch(t *testing.T) {
	if _, err := New(memdev.New(8192, false), &memSource{data: make([]byte, 4096), chunk: 4096}); err == nil {
		t.Fatal("no error for a flat file of another size")
	}
}
