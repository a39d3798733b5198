package sparse

import (
	"context"
	"fmt"
	"sync"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/vmdk"
	"golang.org/x/sys/unix"
)

// GrainKind says what this extent holds for a grain.
type GrainKind uint8

// Grain kinds, from the grain table entry.
const (
	Unallocated GrainKind = iota // entry 0: not in this extent, read the layer below
	Zero                         // entry 1 (zeroed-grain flag): reads as zeros, hides the layer below
	Data                         // any other entry: the grain's data is at Sector
)

func (k GrainKind) String() string {
	switch k {
	case Unallocated:
		return "unallocated"
	case Zero:
		return "zero"
	case Data:
		return "data"
	}
	return fmt.Sprintf("GrainKind(%d)", uint8(k))
}

// GrainState is a grain's entry: its kind and, for Data, the sector of its
// first byte in the file.
type GrainState struct {
	Kind   GrainKind
	Sector uint64
}

// Extent is an open VMDK hosted sparse extent: the on-disk delta layer.
// The grain tables live in memory; Lookup never does I/O.
//
// Concurrency: every method is safe for concurrent use, with one rule the
// caller keeps: at most one of WriteGrain, AllocateGrain and SetZero runs
// for a given grain at a time. A ReadGrain racing an AllocateGrain of the
// same grain sees ErrNotAllocated or the whole new grain, never part of it
// (the entry is published after the data is written).
type Extent struct {
	// Failpoint, when set, is called at each Failpoint* name in Flush and
	// the descriptor rewrites; a non-nil error aborts there as a crash
	// would. Nil in production. Set it before the Extent is shared.
	Failpoint func(name string) error

	path      string
	readOnly  bool
	hdr       header
	geo       geometry
	grainSize int64  // bytes
	tables    tables // fixed after Open; entries are atomics

	// io guards file.fd and closed. Every method that touches the file
	// holds it shared for its whole call; Close takes it exclusively, so
	// the fd is never closed (or reused) under a syscall.
	io     sync.RWMutex
	file   fileIO
	closed bool

	// flushMu serializes Flush and descriptor rewrites: one metadata
	// writer at a time. Taken after io, before mu.
	flushMu sync.Mutex

	// mu guards next, dirty, desc and broken, and every store to
	// a grain table entry (loads are atomic and take no lock).
	mu     sync.Mutex
	next   uint64             // byte offset of the next grain to allocate, grain-aligned
	dirty  map[int64]struct{} // grain table sectors (grain/128) changed since they were last written
	desc   *vmdk.Descriptor   // the embedded descriptor as in the file
	broken error              // a failed fdatasync: the page cache may have dropped writes
}

// Path is the extent file.
func (e *Extent) Path() string { return e.path }

// ReadOnly reports whether the extent was opened read-only.
func (e *Extent) ReadOnly() bool { return e.readOnly }

// Grains is the number of grains covering the capacity.
func (e *Extent) Grains() int64 { return e.geo.grains }

// GrainSize is the grain size in bytes (64 KiB for extents Create makes).
func (e *Extent) GrainSize() int64 { return e.grainSize }

// GrainLen is the number of bytes of grain inside the capacity: GrainSize,
// less for the last grain when the capacity is not a multiple of it.
func (e *Extent) GrainLen(grain int64) int64 { return grainLen(&e.hdr, e.geo, grain) }

// Capacity is the virtual size in bytes.
func (e *Extent) Capacity() int64 { return int64(e.hdr.Capacity) * sectorSize }

// ZeroGrains reports whether the file has the zeroed-grain flag, so
// SetZero works (every extent Create makes has it).
func (e *Extent) ZeroGrains() bool { return e.hdr.Flags&flagZeroGrain != 0 }

// Descriptor returns a copy of the embedded descriptor.
func (e *Extent) Descriptor() *vmdk.Descriptor {
	e.mu.Lock()
	defer e.mu.Unlock()
	return cloneDescriptor(e.desc)
}

// CID is the extent's content id from its descriptor.
func (e *Extent) CID() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.desc.CID
}

// Parent is the parent named by the descriptor (FileNameHint "" when the
// extent has none).
func (e *Extent) Parent() ParentRef {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.desc.ParentFileNameHint == "" {
		return ParentRef{}
	}
	return ParentRef{FileNameHint: e.desc.ParentFileNameHint, CID: e.desc.ParentCID}
}

// Lookup returns the state of grain. A grain outside [0, Grains()) is
// Unallocated. It does no I/O and takes no lock.
func (e *Extent) Lookup(grain int64) GrainState {
	if grain < 0 || grain >= e.geo.grains {
		return GrainState{}
	}
	gt := e.tables[grain/gtesPerGT]
	if gt == nil {
		return GrainState{}
	}
	return e.state(gt.entries[grain%gtesPerGT].Load())
}

// state decodes a grain table entry.
func (e *Extent) state(v uint32) GrainState {
	switch {
	case v == 0:
		return GrainState{Kind: Unallocated}
	case v == gteZero && e.ZeroGrains():
		return GrainState{Kind: Zero}
	}
	return GrainState{Kind: Data, Sector: uint64(v)}
}

// Close closes the file without flushing: allocations since the last Flush
// are lost as in a crash (their grains leak). Later calls fail with
// blockdev.ErrClosed.
func (e *Extent) Close() error {
	e.io.Lock()
	defer e.io.Unlock()
	if e.closed {
		return fmt.Errorf("close %s: %w", e.path, blockdev.ErrClosed)
	}
	e.closed = true
	if err := unix.Close(e.file.fd); err != nil {
		return fmt.Errorf("close %s: %w", e.path, err)
	}
	return nil
}

// acquire checks that the extent is open (and writable when write is
// set) and that ctx is live, and takes io shared; on success the caller
// must call e.io.RUnlock.
func (e *Extent) acquire(ctx context.Context, op string, write bool) error {
	e.io.RLock()
	err := ctx.Err()
	switch {
	case e.closed:
		err = blockdev.ErrClosed
	case err == nil && write && e.readOnly:
		err = blockdev.ErrReadOnly
	}
	if err != nil {
		e.io.RUnlock()
		return fmt.Errorf("%s %s: %w", op, e.path, err)
	}
	return nil
}

// failpoint calls the Failpoint hook.
func (e *Extent) failpoint(name string) error {
	if e.Failpoint == nil {
		return nil
	}
	if err := e.Failpoint(name); err != nil {
		return fmt.Errorf("failpoint %s: %w", name, err)
	}
	return nil
}
