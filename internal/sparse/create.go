package sparse

import (
	"io/fs"

	"github.com/extrasphere/extrasphere/internal/fsx"

	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/vmdk"
	"golang.org/x/sys/unix"
)

// MaxCapacity is the largest capacity Create accepts: 2 TiB less 512 MiB,
// so that every grain of the capacity plus the metadata (256 MiB at
// 2 TiB) and some leaked grains stay within the 2^32 sectors a grain
// table entry addresses.
const MaxCapacity = 2<<40 - 512<<20

// Failpoints of Create, in the order they are reached.
const (
	FailpointCreateBeforeFileSync = "sparse.create.before-file-sync" // temp file written, not synced
	FailpointCreateBeforeRename   = "sparse.create.before-rename"    // temp file synced
	FailpointCreateBeforeDirSync  = "sparse.create.before-dir-sync"  // renamed, directory not synced
)

// CreateOptions tune Create.
type CreateOptions struct {
	// DDB holds disk database entries set over the defaults (qemu's IDE
	// geometry, adapterType and toolsVersion), e.g. DDBSnapshotName or
	// the parent's ddb.adapterType.
	DDB vmdk.DDB

	// Failpoint, when set, is called at each FailpointCreate* name; a
	// non-nil error aborts Create there (the temp file is removed).
	Failpoint func(name string) error
}

// Create makes a new, empty sparse extent of capacity bytes (a positive
// multiple of 512, at most MaxCapacity) at path, over parent (FileNameHint
// "" for none), laid out exactly as qemu-img create -f vmdk -o
// subformat=monolithicSparse,zeroed_grain=on: version 2 header with the
// newline-test, redundant-directory and zeroed-grain flags, 64 KiB grains,
// the descriptor embedded in 20 sectors, both grain directories with all
// their grain tables allocated (the tables are holes: all entries 0).
//
// The file is written under a temp name, fsynced, renamed into place
// without replacing (ErrExists if path exists; nothing is changed) and the
// directory fsynced. A crash leaves no file at path, or a whole one (and
// maybe a .<name>.tmp-* file to delete).
func Create(path string, capacity int64, parent ParentRef, opts CreateOptions) (err error) {
	if capacity <= 0 || capacity%sectorSize != 0 || capacity > MaxCapacity {
		return fmt.Errorf("create sparse extent %s of %d bytes: %w", path, capacity, ErrBadCapacity)
	}
	desc, err := newDescriptor(capacity, filepath.Base(path), parent, opts.DDB)
	if err != nil {
		return fmt.Errorf("create sparse extent %s: %w", path, err)
	}
	text := desc.Marshal()
	if len(text) > qemuDescBytes-1 {
		return fmt.Errorf("create sparse extent %s: descriptor of %d bytes: %w", path, len(text), ErrDescriptorTooLarge)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("create sparse extent %s: %w", path, ErrExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("create sparse extent %s: %w", path, err)
	}
	tmp, err := fsx.CreateTemp(path)
	if err != nil {
		return fmt.Errorf("create sparse extent %s: %w", path, err)
	}
	renamed := false
	defer func() {
		if err != nil {
			tmp.Close()
			if !renamed {
				os.Remove(tmp.Name())
			}
		}
	}()
	fail := func(name string) error {
		if opts.Failpoint == nil {
			return nil
		}
		if err := opts.Failpoint(name); err != nil {
			return fmt.Errorf("create sparse extent %s: failpoint %s: %w", path, name, err)
		}
		return nil
	}
	if err := writeImage(tmp, capacity/sectorSize, text); err != nil {
		return fmt.Errorf("create sparse extent %s: write %s: %w", path, tmp.Name(), noSpace(err))
	}
	if err := fail(FailpointCreateBeforeFileSync); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("create sparse extent %s: sync %s: %w", path, tmp.Name(), noSpace(err))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("create sparse extent %s: close %s: %w", path, tmp.Name(), err)
	}
	if err := fail(FailpointCreateBeforeRename); err != nil {
		return err
	}
	if err := renameNoReplaceExtent(tmp.Name(), path); err != nil {
		return fmt.Errorf("create sparse extent %s: %w", path, err)
	}
	renamed = true
	err = fail(FailpointCreateBeforeDirSync)
	if err == nil {
		err = fsx.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(path) // renamed by us a moment ago: no one else has it yet
		return err
	}
	return nil
}

// writeImage writes the empty extent: header, descriptor, both grain
// directories; the grain tables and the padding to the overhead are holes.
func writeImage(f *os.File, capSectors int64, text []byte) error {
	h := newHeader(uint64(capSectors))
	g := geometryOf(h.Capacity, h.GrainSectors)
	if err := f.Truncate(int64(h.Overhead) * sectorSize); err != nil {
		return err
	}
	if _, err := f.WriteAt(h.marshal(), 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(text, int64(h.DescOffset)*sectorSize); err != nil {
		return err
	}
	for _, gd := range []uint64{h.RGDOffset, h.GDOffset} {
		buf := make([]byte, g.gdSectors*sectorSize)
		for i := range g.gts {
			binary.LittleEndian.PutUint32(buf[i*gteBytes:], tableSector(gd, g.gdSectors, i))
		}
		if _, err := f.WriteAt(buf, int64(gd)*sectorSize); err != nil {
			return err
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

// renameNoReplaceExtent renames without replacing; an existing file is
// ErrExists.
func renameNoReplaceExtent(tmp, path string) error {
	err := fsx.RenameNoReplace(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		return ErrExists
	}
	return err
}
