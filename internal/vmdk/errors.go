package vmdk

import "errors"

// Sentinel errors. Parse and Validate wrap them with the line or field at
// fault; callers test them with errors.Is.
var (
	// ErrNotDescriptor: the bytes are not a VMDK text descriptor (binary,
	// too large, no version line, or a line that is neither a key=value
	// nor an extent).
	ErrNotDescriptor = errors.New("not a VMDK descriptor")

	// ErrBadHeader: a header value (version, CID, parentCID, ...) is
	// malformed or repeated.
	ErrBadHeader = errors.New("bad VMDK descriptor header")

	// ErrBadExtent: an extent line is malformed.
	ErrBadExtent = errors.New("bad VMDK extent line")

	// ErrBadDDB: a disk database line is malformed or repeated.
	ErrBadDDB = errors.New("bad VMDK disk database entry")

	// ErrInvalid: the descriptor is well formed but inconsistent
	// (Validate).
	ErrInvalid = errors.New("invalid VMDK descriptor")

	// ErrBadSize: a virtual size that is not a positive multiple of 512
	// bytes.
	ErrBadSize = errors.New("size must be a positive multiple of 512 bytes")
)
