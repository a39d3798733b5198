package flat

import (
	"errors"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

// sysOps are the syscalls a Device makes on its flat file. Open fills them
// with the real ones; tests replace entries to count syncs or inject
// faults (ENOSPC) without a full filesystem.
type sysOps struct {
	pread     func(fd int, p []byte, off int64) (int, error)
	pwrite    func(fd int, p []byte, off int64) (int, error)
	fdatasync func(fd int) error
	fallocate func(fd int, mode uint32, off, length int64) error
	seek      func(fd int, off int64, whence int) (int64, error)
}

func realSys() sysOps {
	return sysOps{
		pread:     unix.Pread,
		pwrite:    unix.Pwrite,
		fdatasync: unix.Fdatasync,
		fallocate: unix.Fallocate,
		seek:      unix.Seek,
	}
}

// unsupported reports errors that mean "this filesystem or kernel cannot
// do that operation" rather than a failure of the disk.
func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}

// mapErr wraps a syscall error with the operation and file, mapping the
// errnos the data path names to blockdev sentinels (the errno stays in the
// chain for logs).
func (d *Device) mapErr(op string, err error) error {
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("%s %s: %w: %w", op, d.path, blockdev.ErrNoSpace, err)
	case errors.Is(err, unix.EROFS), errors.Is(err, unix.EBADF) && d.readOnly:
		return fmt.Errorf("%s %s: %w: %w", op, d.path, blockdev.ErrReadOnly, err)
	default:
		return fmt.Errorf("%s %s: %w", op, d.path, err)
	}
}
