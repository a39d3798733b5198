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

	// ErrSyncFailed: an earlier fdatasync (or durable FUA write) of the
	// flat file failed, so writes acknowledged since the last successful
	// flush may not be on disk and a retried sync cannot tell. Every
	// later Flush and write fails until the volume is reopened; reads
	// still work. The message carries the first failure's errno.
	ErrSyncFailed = errors.New("an earlier sync of the flat file failed and writes since the last " +
		"successful flush may be lost; check the datastore's disk (dmesg), then restart the daemon " +
		"to reopen the volume and check the guest's filesystem, or restore from a replica or backup")
)
