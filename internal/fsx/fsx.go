// Package fsx holds the few file-system steps every on-disk format of
// Extrasphere is made durable with: a temp file next to the target, a
// rename that never replaces, and an fsync of the directory after either.
// One copy, so the durability rules are the same everywhere.
package fsx

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SyncDir fsyncs a directory so that entries created, renamed or removed
// in it are durable.
func SyncDir(dir string) error {
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

// RenameNoReplace renames src to dst and fails with an error wrapping
// fs.ErrExist if dst exists. It uses renameat2(RENAME_NOREPLACE); where
// the filesystem lacks it (some NFS servers, old kernels) a file is
// linked then unlinked (link also refuses an existing name) and a
// directory is checked then renamed (the callers serialise creations of
// one name, so that window is only against other programs).
func RenameNoReplace(src, dst string) error {
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		err = fallbackRename(src, dst)
	}
	if errors.Is(err, unix.EEXIST) || errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("rename %s to %s: %w", src, dst, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", src, dst, err)
	}
	return nil
}

func fallbackRename(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if err := os.Link(src, dst); err != nil {
			return err
		}
		return os.Remove(src)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fs.ErrExist
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(src, dst)
}

// CreateTemp creates a new hidden file next to path, .<base>.tmp-<random>,
// with mode 0644 minus the umask (os.CreateTemp would force 0600).
func CreateTemp(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	for range 16 {
		name := filepath.Join(dir, fmt.Sprintf(".%s.tmp-%016x", base, rand.Uint64()))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("no free temp name for %s: %w", path, fs.ErrExist)
}

// WriteNew writes a new file (failing if it exists) and fsyncs it; the
// caller fsyncs the directory when the name must be durable too.
func WriteNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return f.Close()
}

// WriteFileAtomic replaces path with data, with mode: a temp file in the
// same directory, fsync, rename over path, fsync of the directory. A
// crash leaves the old file or the new one, never a mix; a failed write
// removes the temp file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return writeAtomic(path, data, mode, os.Rename)
}

// WriteFileNoReplace is WriteFileAtomic for a file that must not exist
// yet: the rename fails with fs.ErrExist if path exists (RenameNoReplace).
func WriteFileNoReplace(path string, data []byte, mode os.FileMode) error {
	return writeAtomic(path, data, mode, RenameNoReplace)
}

// writeAtomic writes data to a temp file next to path, fsyncs it, moves
// it to path with rename and fsyncs the directory.
func writeAtomic(path string, data []byte, mode os.FileMode, rename func(src, dst string) error) error {
	f, err := CreateTemp(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}
