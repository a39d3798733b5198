package datastore

import (
	"github.com/extrasphere/extrasphere/internal/fsx"

	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Prefixes of the temporary directories of a volume being created or
// removed. They start with a dot, so Scan never takes them for volumes.
const (
	creatingPrefix = ".creating-"
	removingPrefix = ".removing-"
)

// Staged is a volume directory being created: the caller writes the
// descriptor at DescriptorPath (and its extent beside it), then calls
// Datastore.Commit, or Datastore.Abort on failure.
type Staged struct {
	Volume         string
	Dir            string // DIR/.creating-<vol>-<rand>
	DescriptorPath string // Dir/<vol>.vmdk
}

// Stage makes a temporary directory for a new volume. It fails with
// ErrVolumeDirExists when DIR/<vol> is already there.
func (d *Datastore) Stage(vol string) (*Staged, error) {
	if err := CheckName("volume", vol); err != nil {
		return nil, err
	}
	ok, err := exists(d.VolumeDir(vol))
	if err != nil {
		return nil, fmt.Errorf("stage volume %s: %w", vol, err)
	}
	if ok {
		return nil, fmt.Errorf("stage volume %s in %s: %w", vol, d.Path, ErrVolumeDirExists)
	}
	dir := filepath.Join(d.Path, creatingPrefix+vol+"-"+randSuffix())
	if err := os.Mkdir(dir, 0o750); err != nil {
		return nil, fmt.Errorf("stage volume %s: %w", vol, err)
	}
	return &Staged{Volume: vol, Dir: dir, DescriptorPath: filepath.Join(dir, DescriptorName(vol))}, nil
}

// Commit makes a staged volume visible: fsync its directory, rename it to
// DIR/<vol> without replacing anything, fsync DIR.
func (d *Datastore) Commit(s *Staged) error {
	if err := SyncDir(s.Dir); err != nil {
		return fmt.Errorf("commit volume %s: %w", s.Volume, err)
	}
	dst := d.VolumeDir(s.Volume)
	if err := renameNoReplaceDir(s.Dir, dst); err != nil {
		return fmt.Errorf("commit volume %s: %w", s.Volume, err)
	}
	if err := SyncDir(d.Path); err != nil {
		return fmt.Errorf("commit volume %s: %w", s.Volume, err)
	}
	return nil
}

// Abort deletes a staged volume directory.
func (d *Datastore) Abort(s *Staged) error {
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("abort volume %s: %w", s.Volume, err)
	}
	return nil
}

// RemoveVolume deletes DIR/<vol> durably: it is first renamed to a hidden
// name (so a crash never leaves a half-deleted volume that Scan would
// find), the rename is made durable, then the files are deleted.
func (d *Datastore) RemoveVolume(vol string) error {
	if err := CheckName("volume", vol); err != nil {
		return err
	}
	src := d.VolumeDir(vol)
	tmp := filepath.Join(d.Path, removingPrefix+vol+"-"+randSuffix())
	if err := os.Rename(src, tmp); err != nil {
		return fmt.Errorf("remove volume %s: %w", vol, err)
	}
	if err := SyncDir(d.Path); err != nil {
		return fmt.Errorf("remove volume %s: %w", vol, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove volume %s: %w", vol, err)
	}
	if err := SyncDir(d.Path); err != nil {
		return fmt.Errorf("remove volume %s: %w", vol, err)
	}
	return nil
}

// CleanStale deletes the .creating- and .removing- directories a crash
// left behind. It returns the names it removed.
func (d *Datastore) CleanStale() ([]string, error) {
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, fmt.Errorf("clean datastore %s: %w", d.Path, err)
	}
	var removed []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() || !(strings.HasPrefix(n, creatingPrefix) || strings.HasPrefix(n, removingPrefix)) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(d.Path, n)); err != nil {
			return removed, fmt.Errorf("clean datastore %s: %w", d.Path, err)
		}
		removed = append(removed, n)
	}
	if len(removed) > 0 {
		if err := SyncDir(d.Path); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func randSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never returns an error (Go >= 1.24)
	return hex.EncodeToString(b[:])
}

// ImportingFile marks a volume whose import has not finished. It is
// written in the staging directory before the volume becomes visible and
// removed when the import completes, so a daemon killed mid-import finds
// the volume marked at the next start.
const ImportingFile = ".importing"

// MarkImporting writes the importing marker into a staged volume.
func (s *Staged) MarkImporting() error {
	p := filepath.Join(s.Dir, ImportingFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("mark volume %s importing: %w", s.Volume, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("mark volume %s importing: %w", s.Volume, err)
	}
	return nil // Commit fsyncs the staging directory
}

// ClearImporting removes the importing marker of a committed volume.
func (d *Datastore) ClearImporting(vol string) error {
	if err := os.Remove(filepath.Join(d.VolumeDir(vol), ImportingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("finish import of volume %s: %w", vol, err)
	}
	return SyncDir(d.VolumeDir(vol))
}

// renameNoReplaceDir renames a volume directory into place; an existing
// one is ErrVolumeDirExists.
func renameNoReplaceDir(src, dst string) error {
	err := fsx.RenameNoReplace(src, dst)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("rename %s: %w", dst, ErrVolumeDirExists)
	}
	return err
}
