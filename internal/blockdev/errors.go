package blockdev

import "errors"

// Sentinel errors of the data path. Devices wrap them with context
// (fmt.Errorf("...: %w", ErrX)); callers test them with errors.Is. The NBD
// layer maps them to protocol errnos in one function (nbd.errnoFor).
var (
	// ErrOutOfRange: the request reaches past the end of the device or
	// has a negative offset or length.
	ErrOutOfRange = errors.New("request out of range")

	// ErrMisaligned: the request is not a multiple of Caps().MinBlock.
	ErrMisaligned = errors.New("request not aligned to the device block size")

	// ErrReadOnly: a write, zero or trim reached a read-only device.
	ErrReadOnly = errors.New("device is read-only")

	// ErrNoSpace: the datastore under the device is full (ENOSPC, EDQUOT).
	ErrNoSpace = errors.New("no space left on the datastore")

	// ErrNotFast: WriteZeroes with FastZero could not zero quickly;
	// nothing was written.
	ErrNotFast = errors.New("fast zero not possible")

	// ErrNotSupported: the operation is not implemented by this device.
	ErrNotSupported = errors.New("operation not supported")

	// ErrUnknownContext: BlockStatus asked for a meta context the device
	// does not serve.
	ErrUnknownContext = errors.New("unknown meta context")

	// ErrClosed: the device was closed.
	ErrClosed = errors.New("device closed")

	// ErrContractViolation: a call broke the Device contract (range,
	// alignment, flags the device does not advertise), or a device answered
	// in a way the contract forbids. Only the checked device returns it.
	ErrContractViolation = errors.New("device contract violation")
)
