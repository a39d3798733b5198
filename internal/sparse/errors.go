package sparse

import "errors"

// Sentinel errors of sparse extents. Open wraps them with what is wrong
// and where (a field, a sector); callers test them with errors.Is.
// Data-path conditions reuse blockdev's sentinels: blockdev.ErrReadOnly,
// blockdev.ErrClosed, blockdev.ErrNoSpace.
var (
	// ErrNotSparse: the file does not start with the "KDMV" magic (not a
	// VMDK hosted sparse extent: a descriptor, a raw file, a qcow2, ...).
	ErrNotSparse = errors.New("not a VMDK sparse extent")

	// ErrCorrupt: the file has the magic but a field, the embedded
	// descriptor, a grain directory or a grain table is inconsistent
	// (truncated, overwritten, transferred in text mode). The message names
	// the field and the sector. Nothing was changed.
	ErrCorrupt = errors.New("corrupt VMDK sparse extent")

	// ErrUnsupported: a valid VMDK that this package does not handle
	// (compressed or streamOptimized, version > 3, no embedded descriptor,
	// a twoGbMaxExtentSparse piece, version 3 or unallocated grain tables
	// opened for writing, SetZero without the zeroed-grain flag). Convert
	// it with qemu-img first.
	ErrUnsupported = errors.New("unsupported VMDK sparse extent")

	// ErrExists: Create found a file at the path. Nothing was changed.
	ErrExists = errors.New("sparse extent already exists")

	// ErrBadCapacity: Create was asked for a capacity that is not a
	// positive multiple of 512 bytes or exceeds MaxCapacity.
	ErrBadCapacity = errors.New("capacity must be a positive multiple of 512 bytes, at most MaxCapacity")

	// ErrDescriptorTooLarge: the new embedded descriptor text does not fit
	// in the file's descriptor area (keep names and disk database values
	// short). Nothing was written.
	ErrDescriptorTooLarge = errors.New("descriptor does not fit in the embedded descriptor area")

	// ErrBadDescriptor: a descriptor rewrite changed what must not change
	// (createType, the extent line). Nothing was written.
	ErrBadDescriptor = errors.New("descriptor rewrite changes the extent or createType")

	// ErrGrainRange: a grain index outside [0, Grains()) or a byte range
	// outside the grain, or an AllocateGrain buffer of the wrong length.
	ErrGrainRange = errors.New("grain or byte range out of bounds")

	// ErrNotAllocated: ReadGrain or WriteGrain on a grain that holds no
	// data in this extent (read the layer below, or AllocateGrain).
	ErrNotAllocated = errors.New("grain not allocated in this extent")

	// ErrAllocated: AllocateGrain on a grain that already holds data (use
	// WriteGrain).
	ErrAllocated = errors.New("grain already allocated")

	// ErrExtentFull: the file would grow past 2^32 sectors, the most a
	// 32-bit grain table entry can address. Returned together with
	// blockdev.ErrNoSpace (errors.Is matches both).
	ErrExtentFull = errors.New("sparse extent reached 2 TiB, the most its grain tables address")
)
