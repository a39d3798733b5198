package sparse

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// createTemp creates a new hidden file next to path (mode 0644 minus the
// umask): .<base>.tmp-<random>.
func createTemp(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	for range 16 {
		name := filepath.Join(dir, fmt.Sprintf(".%s.tmp-%016x", base, rand.Uint64()))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, os.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("no free temp name for %s: %w", path, os.ErrExist)
}

// renameNoReplace renames tmp to path unless path exists (ErrExists):
// renameat2 RENAME_NOREPLACE, or link(2) + unlink where the filesystem
// lacks it (NFS, old kernels). Same logic as vmdk.AtomicWriter.
func renameNoReplace(tmp, path string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		if err = os.Link(tmp, path); err == nil {
			err = os.Remove(tmp)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return nil
}

// syncDir fsyncs a directory so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
