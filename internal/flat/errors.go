package flat

import "errors"

// Sentinel errors of volume files; data-path errors are blockdev's.
var (
	// ErrExists: Create found the descriptor or the flat file already
	// there. Nothing was changed.
	ErrExists = errors.New("volume files already exist")

	// ErrBadName: the descriptor path does not end in ".vmdk".
	ErrBadName = errors.New("descriptor path must end in .vmdk")

	// ErrNotFlat: the descriptor is not a single FLAT extent at offset 0
	// (another VMDK layout; convert it with qemu-img first).
	ErrNotFlat = errors.New("descriptor is not a single FLAT extent at offset 0")

	// ErrShortFlat: the flat file is smaller than the descriptor says
	// (truncated or the wrong file).
	ErrShortFlat = errors.New("flat file is smaller than the descriptor's extent")

	// ErrNotRegular: the flat extent is not a regular file.
	ErrNotRegular = errors.New("flat extent is not a regular file")

	// ErrBadOption: an ddb.extrasphere.* value is not "true" or "false".
	ErrBadOption = errors.New("bad ddb.extrasphere option in descriptor")
)
