package cbt

import (
	"testing"
	"time"
)

func TestBitmapSetRangeAndRuns(t *testing.T) {
	for _, tc := range []struct {
		name        string
		nbits       int64
		first, last int64
	}{
		{"OneBit", 200, 5, 5},
		{"WithinWord", 200, 3, 60},
		{"WordEdges", 200, 63, 64},
		{"WholeWords", 256, 64, 191},
		{"ToEnd", 130, 70, 129},
		{"PastEnd", 130, 120, 1000},
		{"All", 97, 0, 96},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBitmap("x", time.Time{}, tc.nbits)
			b.setRange(tc.first, tc.last)
			last := min(tc.last, tc.nbits-1)
			for i := range tc.nbits {
				if got, want := b.test(i), i >= tc.first && i <= last; got != want {
					t.Fatalf("bit %d = %v, want %v", i, got, want)
				}
			}
			if got, want := b.count(), last-tc.first+1; got != want {
				t.Errorf("count = %d, want %d", got, want)
			}
			if got, want := b.runEnd(0, false), tc.first; got != want {
				t.Errorf("runEnd(0, clean) = %d, want %d", got, want)
			}
			if got, want := b.runEnd(tc.first, true), last+1; got != want {
				t.Errorf("runEnd(%d, dirty) = %d, want %d", tc.first, got, want)
			}
			if got, want := b.runEnd(last+1, false), tc.nbits; got != want {
				t.Errorf("runEnd(%d, clean) = %d, want %d", last+1, got, want)
			}
		})
	}
}

func TestBitmapSetAllMasksTail(t *testing.T) {
	b := newBitmap("x", time.Time{}, 70)
	b.setAll()
	if got, want := b.count(), int64(70); got != want {
		t.Errorf("count after setAll = %d, want %d", got, want)
	}
	b.words[1] = ^uint64(0) // a page read from disk may carry bits past the end
	b.maskTail()
	if got, want := b.count(), int64(70); got != want {
		t.Errorf("count after maskTail = %d, want %d", got, want)
	}
	b.clearAll()
	if got := b.count(); got != 0 {
		t.Errorf("count after clearAll = %d", got)
	}
}

func TestBitmapPages(t *testing.T) {
	b := newBitmap("x", time.Time{}, 2*pageBits+10)
	b.setPage(1)
	if got, want := b.count(), int64(pageBits); got != want {
		t.Errorf("setPage(1) set %d bits, want %d", got, want)
	}
	if !b.test(pageBits) || !b.test(2*pageBits-1) || b.test(pageBits-1) || b.test(2*pageBits) {
		t.Error("setPage(1) set the wrong bits")
	}
	if got, want := len(b.page(2)), 1; got != want { // 10 bits: one word
		t.Errorf("last page has %d words, want %d", got, want)
	}
	b.setPage(2)
	if got, want := b.count(), int64(pageBits+10); got != want {
		t.Errorf("after setPage(2): %d bits, want %d", got, want)
	}
}
