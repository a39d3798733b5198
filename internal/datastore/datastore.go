// Package datastore manages a datastore: a directory that holds volumes and
// describes itself.
//
// Layout of a datastore directory DIR:
//
//	DIR/extrasphere-datastore.json   marker: magic, version, name, uuid, created, crc32c
//	DIR/<vol>/<vol>.vmdk             VMDK monolithicFlat descriptor (the truth about the volume)
//	DIR/<vol>/<vol>-flat.vmdk        raw data extent named by the descriptor
//	DIR/.creating-<vol>-<rand>/      a volume being created (renamed to DIR/<vol> when complete)
//	DIR/.removing-<vol>-<rand>/      a volume being removed (renamed away first, then deleted)
//
// Everything about a volume is rediscovered by Scan from its descriptor, so a
// datastore can be moved, copied or re-added to another daemon. Directory
// entries starting with a dot are never volumes; stale .creating- and
// .removing- entries left by a crash are deleted by CleanStale.
package datastore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Datastore is an opened datastore directory. It holds no mutable state:
// the engine serializes changes to one volume name.
type Datastore struct {
	Name    string
	Path    string // absolute, cleaned
	UUID    string
	Created string
}

// Open opens the datastore at path, which must hold a valid marker.
func Open(path string) (*Datastore, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open datastore %s: %w", path, err)
	}
	m, err := ReadMarker(abs)
	if err != nil {
		return nil, fmt.Errorf("open datastore %s: %w", abs, err)
	}
	return &Datastore{Name: m.Name, Path: abs, UUID: m.UUID, Created: m.Created}, nil
}

// Init opens the datastore at path, creating the directory and a marker
// called name when there is no marker yet. An existing marker is kept as
// it is (its name wins; the caller compares). created reports whether a
// new marker was written.
func Init(path, name string, now time.Time) (ds *Datastore, created bool, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, false, fmt.Errorf("init datastore %s: %w", path, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, false, fmt.Errorf("init datastore %s: %w", abs, err)
	}
	ds, err = Open(abs)
	if err == nil {
		return ds, false, nil
	}
	if !errors.Is(err, ErrNoMarker) {
		return nil, false, err
	}
	m, err := NewMarker(name, now)
	if err != nil {
		return nil, false, fmt.Errorf("init datastore %s: %w", abs, err)
	}
	if err := WriteMarker(abs, m); err != nil {
		return nil, false, fmt.Errorf("init datastore %s: %w", abs, err)
	}
	return &Datastore{Name: m.Name, Path: abs, UUID: m.UUID, Created: m.Created}, true, nil
}

// VolumeDir is DIR/<vol>.
func (d *Datastore) VolumeDir(vol string) string { return filepath.Join(d.Path, vol) }

// DescriptorPath is DIR/<vol>/<vol>.vmdk.
func (d *Datastore) DescriptorPath(vol string) string {
	return filepath.Join(d.Path, vol, DescriptorName(vol))
}

// DescriptorName is <vol>.vmdk.
func DescriptorName(vol string) string { return vol + ".vmdk" }

// FlatName is <vol>-flat.vmdk, the extent name new volumes get.
func FlatName(vol string) string { return vol + "-flat.vmdk" }

// exists reports whether path exists (following symlinks).
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}
