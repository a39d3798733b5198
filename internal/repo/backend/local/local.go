// Package local is the backup repository backend on a local directory
// (or any mounted filesystem): an object is a file whose path under the
// directory is its key.
//
// Put writes a temp file next to the target (.<name>.tmp-<random>),
// fsyncs it, renames it over the target and fsyncs the directory, so an
// object is either whole or absent after a crash and durable when Put
// returns. Directories are created on demand, each made durable (its
// parent fsynced) before the first object in it is reported stored.
// Delete fsyncs the directory too: the repository relies on a deleted
// manifest staying deleted before it sweeps chunks.
//
// Temp files are never listed. Those older than an hour (a crash or a
// kill in the middle of Put) are removed by Open in the root, snapshots/
// and locks/, and by List in the directories it walks (every backup lists
// chunks/). Key segments starting with '.' are refused (ErrBadKey):
// that namespace is the temp files'.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/fsx"
	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// staleTemp is the age after which a temp file is a leftover.
const staleTemp = time.Hour

// Backend stores objects as files under a directory. Safe for concurrent use.
type Backend struct {
	dir string

	// durable holds the directories known to exist with their entry
	// fsynced in the parent; sync.Map because it only grows and is read
	// on every Put.
	durable sync.Map // string -> struct{}

	// write writes an object's bytes to its temp file (tests inject faults).
	write func(f *os.File, p []byte) (int, error)

	// fp arms crash-test failpoints (SetFailpoints); nil arms none.
	fp *failpoint.Set
}

// Failpoints (failpoint.Env), each just before an fsync or the rename.
const (
	FailBeforeFileSync   = "repo.local.put.before-file-sync"
	FailBeforeRename     = "repo.local.put.before-rename"
	FailBeforeDirSync    = "repo.local.put.before-dir-sync"
	FailDeleteBeforeSync = "repo.local.delete.before-dir-sync"
)

// SetFailpoints arms crash-test failpoints. Call it before any other
// method.
func (b *Backend) SetFailpoints(fp *failpoint.Set) { b.fp = fp }

var _ backend.Backend = (*Backend)(nil)

// Create makes dir (mode 0700, parents as needed) if it does not exist and
// opens it.
func Create(dir string) (*Backend, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, mapErr("create repository directory", dir, err)
	}
	if err := fsx.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
		return nil, err
	}
	return Open(dir)
}

// Open opens an existing directory and removes stale temp files from its
// root, snapshots/ and locks/.
func Open(dir string) (*Backend, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open repository directory %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open repository directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open repository directory %s: not a directory", dir)
	}
	b := &Backend{dir: abs, write: (*os.File).Write}
	b.durable.Store(abs, struct{}{})
	// Only the small directories: chunks/ can hold millions of files (List
	// cleans it), and a directory that is not a repository yet (init)
	// must not be walked at all.
	for _, sub := range []string{".", "snapshots", "locks"} {
		ents, err := os.ReadDir(filepath.Join(abs, sub))
		if err != nil {
			continue // absent or unreadable: List will say
		}
		for _, d := range ents {
			if !d.IsDir() {
				b.removeIfStaleTemp(filepath.Join(abs, sub, d.Name()), d)
			}
		}
	}
	return b, nil
}

func isTemp(name string) bool { return strings.HasPrefix(name, ".") }

func (b *Backend) removeIfStaleTemp(path string, d fs.DirEntry) {
	if !isTemp(d.Name()) || !strings.Contains(d.Name(), ".tmp-") {
		return
	}
	if fi, err := d.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
		os.Remove(path)
	}
}

// Location is the directory.
func (b *Backend) Location() string { return b.dir }

// Close does nothing: there are no handles to release.
func (b *Backend) Close() error { return nil }

// checkKey adds the local rule (no segment starting with '.') to
// backend.CheckKey.
func checkKey(key string) error {
	if err := backend.CheckKey(key); err != nil {
		return err
	}
	for _, seg := range strings.Split(key, "/") {
		if isTemp(seg) {
			return &backend.KeyError{Key: key}
		}
	}
	return nil
}

func (b *Backend) path(key string) string { return filepath.Join(b.dir, filepath.FromSlash(key)) }

// mapErr names the operation and path, and maps full-filesystem errnos to
// ErrNoSpace and missing files to ErrNotExist (the errno stays in the
// chain for logs).
func mapErr(op, path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("%s %s: %w: %w", op, path, backend.ErrNoSpace, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EISDIR):
		return fmt.Errorf("%s %s: %w: %w", op, path, backend.ErrNotExist, err)
	default:
		return fmt.Errorf("%s %s: %w", op, path, err)
	}
}

// mkdirs makes dir and its missing parents, fsyncing each parent after a
// child appears in it, before any object goes in dir.
func (b *Backend) mkdirs(dir string) error {
	if _, ok := b.durable.Load(dir); ok {
		return nil
	}
	parent := filepath.Dir(dir)
	if err := b.mkdirs(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return mapErr("create directory", dir, err)
	}
	// Whoever created it, its entry is durable once the parent is synced.
	if err := fsx.SyncDir(parent); err != nil {
		return mapErr("sync directory", parent, err)
	}
	b.durable.Store(dir, struct{}{})
	return nil
}

// Put stores data under key: temp file, write, fsync, rename, fsync dir.
// A cancelled ctx before the rename leaves nothing visible.
func (b *Backend) Put(ctx context.Context, key string, data []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	path := b.path(key)
	dir := filepath.Dir(path)
	if err := b.mkdirs(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f, err := fsx.CreateTemp(path)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, mapErr("create temp for", path, err))
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, err)
	}
	if _, err := b.write(f, data); err != nil {
		return fail(mapErr("write", tmp, err))
	}
	b.fp.Hit(FailBeforeFileSync)
	if err := f.Sync(); err != nil {
		return fail(mapErr("fsync", tmp, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, mapErr("close", tmp, err))
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, err)
	}
	b.fp.Hit(FailBeforeRename)
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, mapErr("rename", tmp, err))
	}
	b.fp.Hit(FailBeforeDirSync)
	if err := fsx.SyncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, mapErr("sync", dir, err))
	}
	return nil
}

// Get reads the whole object.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	data, err := os.ReadFile(b.path(key))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, mapErr("read", b.path(key), err))
	}
	return data, nil
}

// GetRange reads [off, off+n) of the object with one pread.
func (b *Backend) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := backend.CheckRange(key, off, n); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	path := b.path(key)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, mapErr("open", path, err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = unix.EISDIR
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, mapErr("stat", path, err))
	}
	if size := fi.Size(); off > size-n {
		return nil, fmt.Errorf("get %s: range [%d, +%d) of a %d-byte object: %w", key, off, n, size, io.ErrUnexpectedEOF)
	}
	p := make([]byte, n)
	got, err := f.ReadAt(p, off)
	if got == len(p) {
		return p, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // shrunk meanwhile: objects never do
	}
	return nil, fmt.Errorf("get %s: %w", key, mapErr("read", path, err))
}

// Size stats the object.
func (b *Backend) Size(ctx context.Context, key string) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("size %s: %w", key, err)
	}
	fi, err := os.Stat(b.path(key))
	if err == nil && !fi.Mode().IsRegular() {
		err = unix.EISDIR
	}
	if err != nil {
		return 0, fmt.Errorf("size %s: %w", key, mapErr("stat", b.path(key), err))
	}
	return fi.Size(), nil
}

// Delete removes the object and fsyncs its directory; a missing key is
// not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	path := b.path(key)
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil // a directory is no object
	}
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, mapErr("remove", path, err))
	}
	b.fp.Hit(FailDeleteBeforeSync)
	if err := fsx.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("delete %s: %w", key, mapErr("sync", filepath.Dir(path), err))
	}
	return nil
}

// List walks the directory that holds prefix's last segment and calls fn
// for each object whose key starts with prefix. Stale temp files seen on
// the way are removed.
func (b *Backend) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	root := b.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		root = b.path(prefix[:i])
	}
	var fnErr error // fn's error, returned as it is
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll // nothing under this prefix
			}
			return mapErr("list", path, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if path == root {
			return nil
		}
		if isTemp(d.Name()) {
			if !d.IsDir() {
				b.removeIfStaleTemp(path, d)
			}
			return nil
		}
		rel, err := filepath.Rel(b.dir, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Descend only where keys can still match the prefix.
			if !strings.HasPrefix(prefix, key+"/") && !strings.HasPrefix(key+"/", prefix) {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return mapErr("stat", path, err)
		}
		fnErr = fn(key, fi.Size())
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("list %q in %s: %w", prefix, b.dir, err)
	}
	return nil
}

// checkPrefix accepts "" and any key prefix: key characters, no empty,
// "." or ".." segment before the last slash.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	i := strings.LastIndex(prefix, "/")
	if i >= 0 {
		if err := checkKey(prefix[:i]); err != nil {
			return err
		}
	}
	for _, c := range prefix[i+1:] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return &backend.KeyError{Key: prefix}
		}
	}
	if strings.HasPrefix(prefix, "/") {
		return &backend.KeyError{Key: prefix}
	}
	return nil
}
