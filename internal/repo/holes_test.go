package repo

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// countingSource records every range read from it.
type countingSource struct {
	memSource
	mu    sync.Mutex // guards reads
	reads []blockdev.Range
}

func (c *countingSource) ReadAt(ctx context.Context, p []byte, off int64) error {
	c.mu.Lock()
	c.reads = append(c.reads, blockdev.Range{Off: off, Len: int64(len(p))})
	c.mu.Unlock()
	return c.memSource.ReadAt(ctx, p, off)
}

// A backup given the source's holes (VolumeOptions.Zeros) reads no byte
// of a chunk wholly inside them, stores those chunks as null ids, still
// reads chunks that holes only partly cover, and restores the same bytes.
func TestBackupSkipsHoles(t *testing.T) {
	r := newTestRepo(t, nil, nil)
	ctx := t.Context()
	const n = 16*testChunk + 100 // the last chunk is short
	data := make(memSource, n)
	// Data in chunks 2, 3 (only its first half), 9 and the short last one.
	for _, d := range []blockdev.Range{{Off: 2 * testChunk, Len: testChunk}, {Off: 3 * testChunk, Len: testChunk / 2}, {Off: 9 * testChunk, Len: testChunk}, {Off: 16 * testChunk, Len: 100}} {
		for i := d.Off; i < d.Off+d.Len; i++ {
			data[i] = byte(i*7 + 1)
		}
	}
	holes := []blockdev.Range{
		{Off: 0, Len: 2 * testChunk},
		{Off: 3*testChunk + testChunk/2, Len: 5*testChunk + testChunk/2}, // half of chunk 3, chunks 4-8
		{Off: 10 * testChunk, Len: 6*testChunk + 50},                     // chunks 10-15 and half of the last one
		{Off: n + 10, Len: 10},                                           // past the end: ignored
	}
	src := &countingSource{memSource: data}
	m := backupOne(t, r, "v", src, VolumeOptions{Zeros: func(_ context.Context, visit func(blockdev.Range)) error {
		for _, h := range holes {
			visit(h)
		}
		return nil
	}})
	wantRead := map[int64]bool{2 * testChunk: true, 3 * testChunk: true, 9 * testChunk: true, 16 * testChunk: true}
	for _, rd := range src.reads {
		if !wantRead[rd.Off] {
			t.Errorf("read [%d, +%d): inside a hole", rd.Off, rd.Len)
		}
		delete(wantRead, rd.Off)
	}
	if len(wantRead) != 0 {
		t.Errorf("chunks with data not read: %v", wantRead)
	}
	if got, want := m.Stats.BytesRead, int64(3*testChunk+100); got != want {
		t.Errorf("BytesRead = %d, want %d", got, want)
	}
	if got, want := m.Stats.ChunksZero, int64(13); got != want {
		t.Errorf("ChunksZero = %d, want %d", got, want)
	}
	dst := make(memTarget, n)
	for i := range dst {
		dst[i] = 0xff
	}
	if err := r.Restore(ctx, m, "v", dst, RestoreOptions{ZeroFill: true, Workers: 2}); err != nil || !bytes.Equal(dst, data) {
		t.Fatalf("restore: %v (equal %v)", err, bytes.Equal(dst, data))
	}
}

// An allocation map that fails fails the backup.
func TestBackupZerosError(t *testing.T) {
	r := newTestRepo(t, nil, nil)
	boom := errors.New("boom")
	_, err := tryBackupOne(t.Context(), r, "v", randomData(1, 4*testChunk), VolumeOptions{
		Zeros: func(context.Context, func(blockdev.Range)) error { return boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("backup = %v, want the allocation map's error", err)
	}
}
