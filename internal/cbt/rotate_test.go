package cbt

import (
	"slices"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Rotate hands back exactly the old generation's dirty ranges, starts a
// clean one with a new creation time, durably (a reload sees it), and
// enables a missing bitmap.
func TestRotate(t *testing.T) {
	const size = 16<<20 + 1000 // a partial last block
	tr, s, ms, _, _ := newRecorded(t, size, 8)
	ctx := t.Context()
	buf := make([]byte, 4096)
	for _, off := range []int64{0, 70000, 5 << 20, size - 10} {
		if err := tr.WriteAt(ctx, buf[:min(4096, size-off)], off, 0); err != nil {
			t.Fatal(err)
		}
	}
	created := s.List()[0].Created
	at := time.Unix(1800000000, 5)
	r, err := s.Rotate("a", at)
	if err != nil {
		t.Fatal(err)
	}
	// Adjacent dirty blocks come as one run.
	want := []blockdev.Range{{Off: 0, Len: 128 << 10}, {Off: 5 << 20, Len: 64 << 10}, {Off: 16 << 20, Len: 1000}}
	if !slices.Equal(r.Dirty, want) {
		t.Errorf("dirty ranges %v, want %v", r.Dirty, want)
	}
	if !r.Created.Equal(created) || !r.Next.Created.Equal(at.UTC()) || r.Next.DirtyBytes != 0 {
		t.Errorf("rotated %+v, want old created %v and a clean bitmap created %v", r, created, at)
	}
	// A second rotation at the same instant still gets a new generation.
	r2, err := s.Rotate("a", at)
	if err != nil || len(r2.Dirty) != 0 || !r2.Next.Created.After(at) {
		t.Errorf("second rotation: %+v %v", r2, err)
	}
	s.Close()
	s2 := openMem(t, ms.snapshot(), testOpts(size, 8))
	if got := s2.List()[0]; !got.Created.Equal(r2.Next.Created) || got.DirtyBytes != 0 {
		t.Errorf("after reload: %+v, want created %v and clean", got, r2.Next.Created)
	}
	// A bitmap that does not exist is enabled: no history.
	r3, err := s2.Rotate("b", at)
	if err != nil || !r3.Created.IsZero() || r3.Dirty != nil || r3.Next.Name != "b" {
		t.Errorf("rotate of a missing bitmap: %+v %v", r3, err)
	}
}
