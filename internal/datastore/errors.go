package datastore

import (
	"errors"
	"fmt"
)

// Sentinel errors of the datastore package.
var (
	// ErrInvalidName: a volume or datastore name breaks the name rule.
	ErrInvalidName = errors.New("invalid name")

	// ErrNoMarker: the directory has no extrasphere-datastore.json marker.
	ErrNoMarker = errors.New("not an extrasphere datastore (no marker file)")

	// ErrBadMarker: the marker file exists but is corrupt or from an
	// unknown version.
	ErrBadMarker = errors.New("bad datastore marker")

	// ErrBadVolume: a volume directory could not be read back from its
	// descriptor (Scan reports it and goes on with the other volumes).
	ErrBadVolume = errors.New("unreadable volume")

	// ErrMissingDescriptor: a volume directory holds a flat file but no
	// descriptor. The data is intact; `qemu-img create -f vmdk -o
	// subformat=monolithicFlat` of the same size writes a descriptor to
	// adapt, or docs/FORMATS.md gives its exact text.
	ErrMissingDescriptor = errors.New("volume descriptor missing")

	// ErrVolumeDirExists: a volume directory of that name already exists.
	ErrVolumeDirExists = errors.New("volume directory already exists")
)

// VolumeError is one volume that Scan could not load. It wraps ErrBadVolume
// and the underlying cause.
type VolumeError struct {
	Volume string // directory name, which is the volume name
	Path   string // descriptor path
	Err    error  // the cause
}

func (e *VolumeError) Error() string {
	return fmt.Sprintf("volume %s (%s): %v: fix or move the files away, then restart", e.Volume, e.Path, e.Err)
}

// Unwrap returns both ErrBadVolume and the cause for errors.Is.
func (e *VolumeError) Unwrap() []error { return []error{ErrBadVolume, e.Err} }
