package mirror

// bitset is a fixed-size set of chunk indexes.
type bitset []uint64

func newBitset(n int64) bitset { return make(bitset, (n+63)/64) }

func (b bitset) test(i int64) bool { return b[i/64]&(1<<(i%64)) != 0 }

// set sets bit i and reports whether it was clear.
func (b bitset) set(i int64) bool {
	w, m := i/64, uint64(1)<<(i%64)
	was := b[w]&m != 0
	b[w] |= m
	return !was
}

// clear clears bit i and reports whether it was set.
func (b bitset) clear(i int64) bool {
	w, m := i/64, uint64(1)<<(i%64)
	was := b[w]&m != 0
	b[w] &^= m
	return was
}

// next returns the first set bit at or after i, or -1.
func (b bitset) next(i, n int64) int64 {
	for i < n {
		w := b[i/64] >> (i % 64)
		if w == 0 {
			i = (i/64 + 1) * 64
			continue
		}
		for w&1 == 0 {
			w >>= 1
			i++
		}
		if i < n {
			return i
		}
		return -1
	}
	return -1
}
