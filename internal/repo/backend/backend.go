// Package backend is the storage under a backup repository: a flat
// namespace of immutable objects addressed by key. The repository
// (internal/repo) decides the keys and the bytes; a backend only stores
// them. Implementations: local (a directory) and s3 (any S3-compatible
// server through minio-go).
//
// Keys are slash-separated relative paths made of [a-z0-9._-] segments,
// for example "config", "packs/ab/ab12...", "index/<id>", "snapshots/<id>",
// "locks/<id>". A backend must not accept "..", empty segments or a
// leading slash (ErrBadKey).
package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Errors every backend returns (wrapped) so the repository can tell them
// apart from transient I/O failures.
var (
	// ErrNotExist: the key has no object.
	ErrNotExist = errors.New("object does not exist")
	// ErrBadKey: the key is not a valid object key.
	ErrBadKey = errors.New("invalid object key")
	// ErrNoSpace: the backend is full (ENOSPC, S3 quota).
	ErrNoSpace = errors.New("no space left in the repository")
	// ErrBadRange: GetRange was called with off < 0 or n <= 0.
	ErrBadRange = errors.New("invalid byte range")
)

// CheckRange returns an error wrapping ErrBadRange unless off >= 0 and
// n > 0 and off+n does not overflow.
func CheckRange(key string, off, n int64) error {
	if off < 0 || n <= 0 || off > math.MaxInt64-n {
		return fmt.Errorf("range [%d, +%d) of %s: %w", off, n, quote(key), ErrBadRange)
	}
	return nil
}

// Backend stores immutable objects. All methods are safe for concurrent
// use. An object is either wholly visible with exactly the bytes given to
// Put, or not visible at all: a crash or a cancelled ctx in the middle of
// Put leaves no object (at worst a temporary that List does not return).
// When Put returns nil the object is durable (local: file and directory
// fsynced; S3: the server acknowledged it).
type Backend interface {
	// Put stores data under key, replacing an existing object. It does
	// not keep data after it returns (callers reuse their buffers).
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the whole object. Missing: an error wrapping ErrNotExist.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetRange returns bytes [off, off+n) of the object in one request:
	// exactly n bytes, or an error. off must be >= 0 and n > 0
	// (otherwise ErrBadRange). Missing: ErrNotExist. An object shorter
	// than off+n: an error wrapping io.ErrUnexpectedEOF (the repository
	// reads it as a truncated, hence corrupt, object).
	GetRange(ctx context.Context, key string, off, n int64) ([]byte, error)
	// Size returns the object's length in bytes, or ErrNotExist.
	Size(ctx context.Context, key string) (int64, error)
	// List calls fn for every key that starts with prefix (a "dir/" prefix
	// lists that subtree), in no particular order. fn's error stops the
	// listing and is returned.
	List(ctx context.Context, prefix string, fn func(key string, size int64) error) error
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Location names the backend for messages: "/srv/backups" or
	// "s3://bucket/prefix".
	Location() string
	// Close releases connections and handles.
	Close() error
}

// CheckKey returns an error wrapping ErrBadKey unless key is a valid
// object key (see the package comment).
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return badKey(key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return badKey(key)
		}
		for _, c := range seg {
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
			if !ok {
				return badKey(key)
			}
		}
	}
	return nil
}

func badKey(key string) error {
	return &KeyError{Key: key}
}

// KeyError reports an invalid key; it wraps ErrBadKey.
type KeyError struct{ Key string }

func (e *KeyError) Error() string { return "invalid object key " + quote(e.Key) }
func (e *KeyError) Unwrap() error { return ErrBadKey }

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + s + `"`
}
