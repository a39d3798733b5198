package cbt

import (
	"math/bits"
	"time"
)

// bitmap is one named dirty bitmap in memory: bit i covers the bytes
// [i*Granularity, (i+1)*Granularity) of the volume. Bits past nbits are
// always zero. It has no lock: State.mu guards every bitmap.
type bitmap struct {
	name    string
	created time.Time
	nbits   int64
	words   []uint64
}

func newBitmap(name string, created time.Time, nbits int64) *bitmap {
	return &bitmap{name: name, created: created, nbits: nbits, words: make([]uint64, (nbits+63)/64)}
}

// test reports whether block i is dirty.
func (b *bitmap) test(i int64) bool { return b.words[i/64]&(1<<(i%64)) != 0 }

// setRange marks blocks first..last (inclusive) dirty.
func (b *bitmap) setRange(first, last int64) {
	last = min(last, b.nbits-1)
	for i := first; i <= last; {
		w, bit := i/64, i%64
		n := min(64-bit, last-i+1)
		if n == 64 {
			b.words[w] = ^uint64(0)
		} else {
			b.words[w] |= (1<<n - 1) << bit
		}
		i += n
	}
}

// setAll marks every block dirty.
func (b *bitmap) setAll() {
	if b.nbits > 0 {
		b.setRange(0, b.nbits-1)
	}
}

// clearAll marks every block clean.
func (b *bitmap) clearAll() { clear(b.words) }

// count is the number of dirty blocks.
func (b *bitmap) count() int64 {
	var n int
	for _, w := range b.words {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// runEnd returns the first block at or after i whose state differs from
// dirty, or nbits.
func (b *bitmap) runEnd(i int64, dirty bool) int64 {
	for i < b.nbits {
		w := b.words[i/64]
		if !dirty {
			w = ^w
		}
		w >>= uint(i % 64) // the bits from i on; ones where the state holds
		if w == ^uint64(0)>>uint(i%64) {
			i += 64 - i%64 // the rest of the word holds
			continue
		}
		return min(i+int64(bits.TrailingZeros64(^w)), b.nbits)
	}
	return b.nbits
}

// page returns the words of data page p (a sub-slice, not a copy).
func (b *bitmap) page(p int64) []uint64 {
	lo := p * pageWords
	hi := min(lo+pageWords, int64(len(b.words)))
	if lo >= hi {
		return nil
	}
	return b.words[lo:hi]
}

// setPage marks every block of data page p dirty (a page that could not
// be read).
func (b *bitmap) setPage(p int64) {
	first := p * pageBits
	if first < b.nbits {
		b.setRange(first, first+pageBits-1)
	}
}

// maskTail clears the bits past nbits (a loaded page may carry them).
func (b *bitmap) maskTail() {
	if r := b.nbits % 64; r != 0 {
		b.words[len(b.words)-1] &= 1<<r - 1
	}
}
