package cbt

import "errors"

// Sentinel errors of changed-block tracking. Callers test them with
// errors.Is; messages wrap them with the volume and bitmap names.
var (
	// ErrBitmapNotFound: the volume has no bitmap of that name.
	ErrBitmapNotFound = errors.New("bitmap not found")

	// ErrBitmapExists: the volume already has a bitmap of that name.
	ErrBitmapExists = errors.New("bitmap already exists")

	// ErrInvalidName: a bitmap name breaks the naming rule.
	ErrInvalidName = errors.New("invalid bitmap name")

	// ErrTooManyBitmaps: the volume already has MaxBitmaps bitmaps.
	ErrTooManyBitmaps = errors.New("too many bitmaps")

	// ErrClosed: the state was closed (clean stop) or deleted (volume
	// removed); nothing more is tracked, so writes through a tracker on it
	// fail rather than go untracked.
	ErrClosed = errors.New("changed-block tracking closed")

	// ErrCorrupt: a bitmap or activity-log structure failed its checks
	// (magic, version, checksum, or a field out of range).
	ErrCorrupt = errors.New("corrupt changed-block tracking data")
)
