package flat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/vmdk"
	"golang.org/x/sys/unix"
)

// FailpointBeforeFlatSync is reached in Create after the flat file is
// sized and before it is fsynced.
const FailpointBeforeFlatSync = "flat.create.before-flat-fsync"

// CreateOptions tune Create.
type CreateOptions struct {
	// Preallocate allocates every block now (fallocate, or zeros where
	// the filesystem has no fallocate) and records it in the descriptor
	// so the volume never gets holes. Otherwise the flat file is sparse.
	Preallocate bool

	// ReadOnly records ddb.extrasphere.readOnly = "true".
	ReadOnly bool

	// Failpoint, when set, is called at FailpointBeforeFlatSync and at the
	// descriptor writer's failpoints (vmdk.Failpoint*); a non-nil error
	// aborts Create there. Crash tests use it.
	Failpoint func(name string) error
}

// FlatPath is the flat file of descriptor descPath: dir/<name>.vmdk ->
// dir/<name>-flat.vmdk.
func FlatPath(descPath string) (string, error) {
	name := filepath.Base(descPath)
	base, ok := strings.CutSuffix(name, ".vmdk")
	if !ok || base == "" || strings.HasSuffix(descPath, "/") {
		return "", fmt.Errorf("volume %s: %w", descPath, ErrBadName)
	}
	return filepath.Join(filepath.Dir(descPath), base+"-flat.vmdk"), nil
}

// Create makes a new volume of size bytes (a positive multiple of 512):
// the flat file first (sized, fsynced), then the descriptor through an
// atomic no-replace write that also fsyncs the directory. A descriptor
// therefore never names a flat file that is not durable. Create refuses to
// touch existing files (ErrExists) and removes its flat file on failure.
func Create(descPath string, size int64, opts CreateOptions) (err error) {
	flatPath, err := FlatPath(descPath)
	if err != nil {
		return err
	}
	desc, err := vmdk.NewFlat(size, filepath.Base(flatPath))
	if err != nil {
		return fmt.Errorf("create volume %s: %w", descPath, err)
	}
	if opts.ReadOnly {
		desc.DDB.Set(vmdk.DDBExtrasphereReadOnly, "true")
	}
	if opts.Preallocate {
		desc.DDB.Set(vmdk.DDBExtraspherePreAlloc, "true")
	}
	if _, err := os.Lstat(descPath); err == nil {
		return fmt.Errorf("create volume %s: %w", descPath, ErrExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("create volume %s: %w", descPath, err)
	}
	f, err := os.OpenFile(flatPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create volume %s: %s: %w", descPath, flatPath, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create flat extent %s: %w", flatPath, err)
	}
	defer func() {
		if err != nil {
			os.Remove(flatPath)
		}
	}()
	if err := sizeFlat(f, size, opts.Preallocate); err != nil {
		f.Close()
		return fmt.Errorf("create flat extent %s: %w", flatPath, err)
	}
	if opts.Failpoint != nil {
		if err := opts.Failpoint(FailpointBeforeFlatSync); err != nil {
			f.Close()
			return fmt.Errorf("failpoint %s: %w", FailpointBeforeFlatSync, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync flat extent %s: %w", flatPath, noSpace(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close flat extent %s: %w", flatPath, err)
	}
	text := desc.Marshal()
	w := vmdk.AtomicWriter{NoReplace: true, Failpoint: opts.Failpoint}
	if err := w.WriteFile(descPath, text); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create volume %s: %w", descPath, ErrExists)
		}
		removeOurs(descPath, text) // renamed but the directory sync failed
		return fmt.Errorf("create volume %s: %w", descPath, noSpace(err))
	}
	return nil
}

// removeOurs removes the descriptor at path if it holds exactly text (its
// random CID makes it ours), so a failed Create leaves no descriptor
// naming a flat file it is about to remove.
func removeOurs(path string, text []byte) {
	if got, err := os.ReadFile(path); err == nil && bytes.Equal(got, text) {
		os.Remove(path)
	}
}

// sizeFlat gives the new flat file its size: sparse, or every block
// allocated when preallocating.
func sizeFlat(f *os.File, size int64, prealloc bool) error {
	if !prealloc {
		return f.Truncate(size)
	}
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if !unsupported(err) {
		return noSpace(err)
	}
	// No fallocate (NFSv3, ...): write the zeros.
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return noSpace(err)
		}
	}
	return nil
}

// noSpace adds blockdev.ErrNoSpace to ENOSPC/EDQUOT errors.
func noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w", blockdev.ErrNoSpace, err)
	}
	return err
}
