package vmdk

import (
	"github.com/extrasphere/extrasphere/internal/fsx"
	"io/fs"

	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Failpoints of AtomicWriter.WriteFile, in the order they are reached. A
// crash test stops the writer at one of them and checks that the old file
// (or no file) is still there, whole.
const (
	FailpointBeforeTempSync = "vmdk.atomic.before-temp-fsync" // temp file written, not synced
	FailpointBeforeRename   = "vmdk.atomic.before-rename"     // temp file synced
	FailpointBeforeDirSync  = "vmdk.atomic.before-dir-fsync"  // renamed, directory not synced
)

// AtomicWriter replaces files atomically: temp file -> fsync -> rename ->
// fsync directory. A reader sees the old content or the new one, never a
// mix, and after the call returns the new content survives a crash.
type AtomicWriter struct {
	// NoReplace makes WriteFile fail with an error wrapping os.ErrExist
	// if path already exists (renameat2 RENAME_NOREPLACE, or link(2) on
	// filesystems without it), instead of replacing it.
	NoReplace bool

	// Failpoint, when set, is called at each Failpoint* name; a non-nil
	// error aborts the write there (the temp file is removed). Tests use
	// it to simulate a crash at each step.
	Failpoint func(name string) error
}

// WriteFileAtomic replaces path with data atomically and durably (mode
// 0644 before umask).
func WriteFileAtomic(path string, data []byte) error {
	return AtomicWriter{}.WriteFile(path, data)
}

// WriteFile writes data to path atomically and durably (mode 0644 before
// umask).
func (w AtomicWriter) WriteFile(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := fsx.CreateTemp(filepath.Join(dir, base))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmpName, err)
	}
	if err := w.failpoint(FailpointBeforeTempSync); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmpName, err)
	}
	if err := w.failpoint(FailpointBeforeRename); err != nil {
		return err
	}
	if err := w.rename(tmpName, path); err != nil {
		return err
	}
	if err := w.failpoint(FailpointBeforeDirSync); err != nil {
		return err // renamed: the new file is in place, only its durability is unknown
	}
	return fsx.SyncDir(dir)
}

func (w AtomicWriter) failpoint(name string) error {
	if w.Failpoint == nil {
		return nil
	}
	if err := w.Failpoint(name); err != nil {
		return fmt.Errorf("failpoint %s: %w", name, err)
	}
	return nil
}

func (w AtomicWriter) rename(tmp, path string) error {
	if !w.NoReplace {
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("rename %s: %w", path, err)
		}
		return nil
	}
	if err := fsx.RenameNoReplace(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", path, os.ErrExist)
		}
		return err
	}
	return nil
}
