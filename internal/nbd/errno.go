package nbd

import (
	"context"
	"errors"
	"syscall"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// errnoFor maps a device error to the NBD errno sent to the client. It is
// the only place that does so. cmd matters for one case: the protocol wants
// ENOSPC for a write past the end and EINVAL for any other command.
func errnoFor(cmd uint16, err error) uint32 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, blockdev.ErrOutOfRange):
		if cmd == cmdWrite || cmd == cmdWriteZeroes {
			return eNOSPC
		}
		return eINVAL
	case errors.Is(err, blockdev.ErrMisaligned), errors.Is(err, blockdev.ErrUnknownContext),
		errors.Is(err, blockdev.ErrContractViolation):
		return eINVAL
	case errors.Is(err, blockdev.ErrReadOnly):
		return ePERM
	case errors.Is(err, blockdev.ErrNoSpace):
		return eNOSPC
	case errors.Is(err, blockdev.ErrNotFast), errors.Is(err, blockdev.ErrNotSupported):
		return eNOTSUP
	case errors.Is(err, blockdev.ErrClosed), errors.Is(err, context.Canceled):
		return eSHUTDOWN
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EPERM, syscall.EACCES, syscall.EROFS:
			return ePERM
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			return eNOSPC
		case syscall.EINVAL:
			return eINVAL
		case syscall.ENOMEM:
			return eNOMEM
		case syscall.EOVERFLOW:
			return eOVERFLOW
		case syscall.EOPNOTSUPP:
			return eNOTSUP
		case syscall.ESHUTDOWN:
			return eSHUTDOWN
		}
	}
	return eIO
}
