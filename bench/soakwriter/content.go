package main

import (
	"encoding/binary"
	"math/rand/v2"
)

// blockSize is the unit the writer writes and the verifier checks: every request covers whole
// blocks, and 4 KiB is the page size, so a write a crash interrupts is torn at most at block edges.
const blockSize = 4096

// headerLen is the part of a block naming the write (SEQ) and the block number.
const headerLen = 16

// unknown is the baseline of a block whose content matched no write: anything is accepted there
// until a durable write replaces it (the mismatch was counted when it was found).
const unknown = ^uint64(0)

// fill writes the content of block blk as write seq puts it down. seq 0 is the zero block.
func fill(p []byte, seq uint64, blk int64) {
	if seq == 0 {
		clear(p)
		return
	}
	binary.LittleEndian.PutUint64(p[0:], seq)
	binary.LittleEndian.PutUint64(p[8:], uint64(blk))
	r := rand.NewPCG(seq, uint64(blk))
	for i := headerLen; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
}

// classify names the write whose content block blk holds: 0 for zeros; ok is false when the
// block holds neither zeros nor an intact block of some write (torn, corrupt or misplaced).
func classify(p []byte, blk int64, scratch []byte) (seq uint64, ok bool) {
	if allZero(p) {
		return 0, true
	}
	seq = binary.LittleEndian.Uint64(p[0:])
	if seq == 0 || seq == unknown || binary.LittleEndian.Uint64(p[8:]) != uint64(blk) {
		return 0, false
	}
	fill(scratch, seq, blk)
	for i := range p {
		if p[i] != scratch[i] {
			return 0, false
		}
	}
	return seq, true
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
