package repo

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors of the repository. Callers test them with errors.Is;
// messages wrap them with the backup, volume, chunk or object concerned.
var (
	// ErrNotRepo: the location has no repository config (or the config
	// object is not one of ours).
	ErrNotRepo = errors.New("not an extrasphere backup repository")

	// ErrExists: Init found a repository (or other objects) at the location.
	ErrExists = errors.New("repository already exists")

	// ErrWrongPassword: the password does not unlock the repository key,
	// a password is missing for an encrypted repository, or one was given
	// for an unencrypted one.
	ErrWrongPassword = errors.New("wrong password")

	// ErrVersion: the repository or one of its objects was written by a
	// newer format version than this build understands.
	ErrVersion = errors.New("unsupported repository format version")

	// ErrCorrupt: an object failed its checks (magic, version, checksum,
	// authentication tag, decompression, content hash or a field out of
	// range). Nothing that fails them is ever returned as data.
	ErrCorrupt = errors.New("corrupt data")

	// ErrMissingChunk: a backup references a chunk object that the
	// backend does not hold.
	ErrMissingChunk = errors.New("chunk is missing from the repository")

	// ErrLocked: another process holds a conflicting lock (*LockedError
	// names it).
	ErrLocked = errors.New("repository is locked")

	// ErrLockLost: this process's lock was removed (by someone who judged
	// it stale) or could not be refreshed for too long; the operation
	// stops rather than write under a lock it no longer holds.
	ErrLockLost = errors.New("repository lock lost")

	// ErrNotFound: no backup has that id (or id prefix), or a backup has
	// no volume of that name.
	ErrNotFound = errors.New("backup not found")

	// ErrAmbiguous: an id prefix matches more than one backup.
	ErrAmbiguous = errors.New("backup id prefix is ambiguous")

	// ErrInvalid: an argument breaks a rule (a name, a size, a range).
	ErrInvalid = errors.New("invalid argument")

	// ErrClosed: the backup, reader or repository was closed.
	ErrClosed = errors.New("closed")
)

// ChunkError reports a problem with one chunk of one volume of one backup:
// where it is (byte offset in the volume) and which chunk. Err wraps
// ErrCorrupt, ErrMissingChunk or a backend error.
type ChunkError struct {
	Backup string // manifest id
	Volume string // volume name
	Offset int64  // byte offset of the chunk in the volume
	ID     ID     // chunk id
	Err    error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("backup %s, volume %s, offset %d: chunk %s: %v", e.Backup, e.Volume, e.Offset, e.ID, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// ManifestError reports a backup manifest that cannot be read. Err wraps
// ErrCorrupt, ErrVersion or a backend error.
type ManifestError struct {
	Backup string // manifest id (from the object key)
	Err    error
}

func (e *ManifestError) Error() string {
	return fmt.Sprintf("backup %s: manifest unreadable: %v (remove it with forget if it cannot be repaired)", e.Backup, e.Err)
}

func (e *ManifestError) Unwrap() error { return e.Err }

// LockedError names the lock that conflicts; it wraps ErrLocked.
type LockedError struct {
	Key    string        // lock object key
	Holder LockInfo      // zero when the lock object could not be read
	Stale  time.Duration // how long without a refresh makes a lock stale
	Err    error         // why the holder could not be read, if it could not
}

func (e *LockedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("repository is locked: lock %s is unreadable (%v); if no other process uses the repository, remove the locks", e.Key, e.Err)
	}
	h := e.Holder
	var b strings.Builder
	fmt.Fprintf(&b, "repository is locked by %s on host %q, pid %d, since %s", h.Operation, h.Host, h.PID,
		h.Time.UTC().Format(time.RFC3339))
	if h.Kind == lockRead && len(h.Backups) > 0 {
		fmt.Fprintf(&b, " (reading backup %s)", strings.Join(h.Backups, ", "))
	}
	fmt.Fprintf(&b, "; if that process is gone, its lock becomes stale %s after its last refresh, or remove the locks", e.Stale)
	return b.String()
}

func (e *LockedError) Unwrap() error { return ErrLocked }
