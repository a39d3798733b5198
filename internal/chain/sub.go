package chain

import (
	"math/bits"
	"sync/atomic"
)

// Sub-grain write masks. A 4 KiB write into a grain the top delta does not
// hold yet allocates the whole 64 KiB grain there, completed from below.
// Merging that grain back down (snapshot rm, migration) then needs only
// the parts written since: the rest equals what the layers below read.
// sub records, for each grain the top holds, which 1/16ths of it were
// written (or zeroed) into the top since the chain was built; merges copy
// just those (Merger.copyGrain). A grain the top held when the chain was
// built from the files, or allocated over a zeroed grain, is marked whole:
// its history is unknown, or the layers below do not read its zeros.
//
// Two grains share one 32-bit word, so the map costs 2 bytes a grain and
// is updated with atomic ORs, without the stripe lock.

// subBlocks is the number of parts a grain's mask tracks.
const subBlocks = 16

const fullMask = 1<<subBlocks - 1

func newSubMasks(grains int) []subWord { return make([]subWord, (grains+1)/2) }

// markSub records that [goff, goff+n) of grain g was written into the top.
func (c *Chain) markSub(g int64, goff, n int) {
	if n <= 0 {
		return
	}
	part := int(c.grain) / subBlocks
	first, last := goff/part, (goff+n-1)/part
	m := uint32(fullMask>>(subBlocks-1-(last-first))) << first
	c.orSub(g, m)
}

func (c *Chain) orSub(g int64, m uint32) {
	c.sub[g/2].Or(m << (16 * (g % 2)))
}

// subMask returns grain g's mask.
func (c *Chain) subMask(g int64) uint32 {
	return c.sub[g/2].Load() >> (16 * (g % 2)) & fullMask
}

// subRuns calls fn for each run of marked parts of mask: byte offset and
// length within the grain.
func subRuns(mask uint32, part int, fn func(off, n int) error) error {
	for mask != 0 {
		first := bits.TrailingZeros32(mask)
		run := bits.TrailingZeros32(^(mask >> first))
		if err := fn(first*part, run*part); err != nil {
			return err
		}
		mask &^= (1<<run - 1) << first
	}
	return nil
}

// subWord is one word of the mask map (two grains).
type subWord = atomic.Uint32
