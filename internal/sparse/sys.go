package sparse

import (
	"errors"
	"fmt"
	"io"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

// sysOps are the syscalls an Extent makes on its file. Open fills them with
// the real ones; tests replace entries to record their order or inject
// faults.
type sysOps struct {
	pread     func(fd int, p []byte, off int64) (int, error)
	pwrite    func(fd int, p []byte, off int64) (int, error)
	fdatasync func(fd int) error
}

func realSys() sysOps {
	return sysOps{pread: unix.Pread, pwrite: unix.Pwrite, fdatasync: unix.Fdatasync}
}

// reader reads exactly len(p) bytes at off.
type reader interface {
	readAt(p []byte, off int64) error
}

// fileIO is an open extent file with full-length, EINTR-safe I/O.
type fileIO struct {
	path string
	fd   int
	sys  sysOps
}

func (f *fileIO) readAt(p []byte, off int64) error {
	for len(p) > 0 {
		n, err := f.sys.pread(f.fd, p, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return f.mapErr("read", off, err)
		}
		if n == 0 {
			return fmt.Errorf("read %s at %d: %w", f.path, off, io.ErrUnexpectedEOF)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (f *fileIO) writeAt(p []byte, off int64) error {
	for len(p) > 0 {
		n, err := f.sys.pwrite(f.fd, p, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return f.mapErr("write", off, err)
		}
		if n == 0 {
			return fmt.Errorf("write %s at %d: %w", f.path, off, io.ErrShortWrite)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (f *fileIO) datasync() error {
	for {
		err := f.sys.fdatasync(f.fd)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return f.mapErr("sync", -1, err)
		}
		return nil
	}
}

// mapErr wraps a syscall error with the operation, file and offset (-1:
// none), adding blockdev.ErrNoSpace to ENOSPC/EDQUOT and
// blockdev.ErrReadOnly to EROFS.
func (f *fileIO) mapErr(op string, off int64, err error) error {
	where := f.path
	if off >= 0 {
		where = fmt.Sprintf("%s at %d", f.path, off)
	}
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("%s %s: %w: %w", op, where, blockdev.ErrNoSpace, err)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%s %s: %w: %w", op, where, blockdev.ErrReadOnly, err)
	}
	return fmt.Errorf("%s %s: %w", op, where, err)
}
