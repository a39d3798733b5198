// Package blockdev defines the one data-path contract of Extrasphere: Device.
//
// Every layer of an export's stack (the leaf file, and later the CBT tracker,
// the mirror, the snapshot chain) is a Device. Filters hold an explicit next
// Device and call it; they never embed it, so adding a method here breaks
// every filter's build and forces a review of each one.
//
// Offsets and lengths are in bytes. Every method takes a context first; a
// cancelled context may abort an operation that has not yet started its I/O
// but never leaves a half-applied metadata update behind.
package blockdev

import (
	"context"
	"fmt"
)

// Meta context names served through BlockStatus.
const (
	// MetaBaseAllocation is the NBD "base:allocation" context: holes and
	// known-zero ranges.
	MetaBaseAllocation = "base:allocation"
)

// Extent flags for the base:allocation context. They are the NBD values,
// so the NBD layer passes them through unchanged.
const (
	StateHole uint32 = 1 << 0 // not allocated: reads as zero, writes may allocate
	StateZero uint32 = 1 << 1 // reads as zero
)

// Extent is one run of a block-status reply: Length bytes that share Flags.
type Extent struct {
	Length int64
	Flags  uint32
}

// WriteFlags modify WriteAt, WriteZeroes and Trim.
type WriteFlags uint32

const (
	// FUA (force unit access): the data of this request is durable when the
	// call returns, as if followed by Flush for that range.
	FUA WriteFlags = 1 << iota
	// NoHole (WriteZeroes only): the range must stay allocated; do not punch.
	NoHole
	// FastZero (WriteZeroes only): fail with ErrNotFast rather than fall
	// back to something slower than a metadata update.
	FastZero
)

// Caps are a device's capabilities. A leaf computes them once at open; a
// filter copies its next device's Caps and may only narrow them (turn a
// true into false, raise a block size), with a comment saying why.
type Caps struct {
	ReadOnly  bool // WriteAt, WriteZeroes and Trim fail with ErrReadOnly
	Flush     bool // Flush makes completed writes durable
	FUA       bool // FUA is honoured natively
	Trim      bool // Trim deallocates (it is always allowed to be a no-op)
	Zero      bool // WriteZeroes is efficient (not a buffer write)
	FastZero  bool // WriteZeroes honours FastZero
	MultiConn bool // all handles of the device share one consistent view, so a Flush anywhere covers writes completed everywhere
	Cache     bool // reading ahead is useful (NBD_CMD_CACHE)

	// Block size constraints in bytes. MinBlock is the smallest unit of
	// I/O the device supports (1 means any byte alignment), PrefBlock the
	// size that avoids read-modify-write, MaxPayload the largest single
	// ReadAt or WriteAt buffer.
	MinBlock   uint32
	PrefBlock  uint32
	MaxPayload uint32

	// MetaContexts lists the BlockStatus contexts the device answers.
	MetaContexts []string
}

// Device is a virtual disk of fixed size.
//
// Concurrency: every method may be called from many goroutines at once, for
// any ranges, overlapping or not. Overlapping writes that are in flight at
// the same time land in an unspecified order (as on a real disk); a write
// that completed before another one started is ordered before it.
//
// Ranges: off >= 0, length >= 0, off+length <= Size(), and both multiples of
// Caps().MinBlock. A range that breaks these fails with ErrOutOfRange or
// ErrMisaligned and nothing is done.
//
// Durability: a completed write is visible to every later read through any
// handle of the device but is durable only after a Flush that started after
// it completed, or when written with FUA.
type Device interface {
	// ReadAt fills p with the bytes at off. It never returns short: either
	// all of p is filled or an error is returned.
	ReadAt(ctx context.Context, p []byte, off int64) error

	// WriteAt writes p at off. Flags: FUA only.
	WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error

	// WriteZeroes makes the range read as zeros. It may deallocate unless
	// NoHole is set. With FastZero it returns ErrNotFast without writing
	// anything if it cannot zero the range quickly. Flags: FUA, NoHole,
	// FastZero.
	WriteZeroes(ctx context.Context, off, length int64, flags WriteFlags) error

	// Trim tells the device the range is no longer needed. Afterwards the
	// range reads either as before or as zeros. Flags: FUA.
	Trim(ctx context.Context, off, length int64, flags WriteFlags) error

	// Flush makes every write that completed before the call durable.
	Flush(ctx context.Context) error

	// Size is the virtual size in bytes; constant for the device's life.
	Size() int64

	// Caps returns the capabilities computed at open.
	Caps() Caps

	// BlockStatus describes the range [off, off+length) in the named meta
	// context (one of Caps().MetaContexts). The extents are contiguous,
	// start at off, and cover at least one byte and at most length bytes:
	// a device may stop early and let the caller ask again. Unknown
	// contexts fail with ErrUnknownContext.
	BlockStatus(ctx context.Context, meta string, off, length int64) ([]Extent, error)

	// Close releases the device. It does not flush; callers that need
	// durability call Flush first. Calls after Close fail with ErrClosed.
	Close() error
}

// CheckRange validates a request against a device's size and minimum block
// size. Leaves and the NBD layer share it so they agree on every edge.
func CheckRange(size int64, minBlock uint32, off, length int64) error {
	if off < 0 || length < 0 || off > size || length > size-off {
		return fmt.Errorf("range [%d, +%d) of a %d-byte device: %w", off, length, size, ErrOutOfRange)
	}
	if minBlock > 1 && (off%int64(minBlock) != 0 || length%int64(minBlock) != 0) {
		return fmt.Errorf("range [%d, +%d) not a multiple of %d: %w", off, length, minBlock, ErrMisaligned)
	}
	return nil
}
