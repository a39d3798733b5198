// Package chain is the Device over a snapshot chain: a base (the flat
// volume, any blockdev.Device) under zero or more deltas (VMDK hosted
// sparse extents), of which only the top one is written.
//
//	reads:  grain g comes from owner[g]: the topmost layer that holds it
//	writes: go to the top delta; a grain not yet in the top is completed
//	        from below (read-modify-write) and allocated there once
//	zeroes: whole grains become zeroed-grain entries in the top, so the
//	        parent's data stays hidden; partial grains are written as zeros
//
// owner is kept in memory for every grain, so a read through N layers
// costs one lookup, not N.
package chain

import (
	"context"
)

// Kind says what a delta holds for one grain.
type Kind uint8

const (
	Unallocated Kind = iota // look in the layer below
	Zero                    // reads as zeros; hides the layers below
	Data                    // allocated in this delta
)

// Delta is one sparse layer as the chain uses it. internal/sparse
// implements it. The chain guarantees one writer per grain at a time.
type Delta interface {
	GrainSize() int64
	Kind(grain int64) Kind
	ReadGrain(ctx context.Context, grain int64, off int, p []byte) error
	WriteGrain(ctx context.Context, grain int64, off int, p []byte, fua bool) error
	AllocateGrain(ctx context.Context, grain int64, full []byte) error
	SetZero(ctx context.Context, grain int64) error
	Flush(ctx context.Context) error
	Close() error
}
