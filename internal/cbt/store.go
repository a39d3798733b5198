package cbt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/fsx"
)

// Failpoints of the CBT files, each just before an fsync (crash tests arm
// them through failpoint.Env).
const (
	FailBeforeALSync     = "cbt.before-al-sync"
	FailBeforePagesSync  = "cbt.before-pages-sync"
	FailBeforeBitmapSync = "cbt.before-bitmap-sync"
)

// store is where a State persists. Every write is durable when it
// returns. The State serialises all calls (State.ioMu).
type store interface {
	// load returns the bitmap file and the AL file; a missing file is nil
	// with no error.
	load() (bm, al []byte, err error)
	// writeBitmaps replaces the whole bitmap file atomically.
	writeBitmaps(img []byte) error
	// writePages overwrites pages of the bitmap file in place.
	writePages(pages []pageWrite) error
	// writeAL overwrites one slot of the AL file.
	writeAL(slot int, rec []byte) error
	// remove deletes both files.
	remove() error
	// moveAside renames both files (those that exist) by appending suffix,
	// so a fresh start never reads them and an operator still can.
	moveAside(suffix string) error
	// close releases open handles without writing.
	close() error
}

// pageWrite is one page of the bitmap file: its index and pageSize bytes.
type pageWrite struct {
	index int64
	data  []byte
}

// fileStore keeps the two files of one volume in a directory.
type fileStore struct {
	dir    string
	bmPath string
	alPath string
	fp     *failpoint.Set
	bm     *os.File // the current bitmap file for in-place page writes, nil until needed
	al     *os.File // nil until the first AL write
}

func newFileStore(dir, volume string, fp *failpoint.Set) *fileStore {
	return &fileStore{dir: dir, fp: fp,
		bmPath: filepath.Join(dir, volume+".bitmaps"),
		alPath: filepath.Join(dir, volume+".al")}
}

func (s *fileStore) load() (bm, al []byte, err error) {
	bm, err = readOptional(s.bmPath)
	if err != nil {
		return nil, nil, err
	}
	al, err = readOptional(s.alPath)
	if err != nil {
		return nil, nil, err
	}
	return bm, al, nil
}

func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func (s *fileStore) writeBitmaps(img []byte) error {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", s.dir, err)
	}
	f, err := fsx.CreateTemp(s.bmPath)
	if err != nil {
		return fmt.Errorf("write %s: %w", s.bmPath, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", s.bmPath, err)
	}
	if _, err := f.Write(img); err != nil {
		return fail(err)
	}
	s.fp.Hit(FailBeforeBitmapSync)
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, s.bmPath); err != nil {
		return fail(err)
	}
	if err := fsx.SyncDir(s.dir); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", s.bmPath, err)
	}
	if s.bm != nil {
		s.bm.Close()
	}
	s.bm = f // the renamed file: later page writes go to it
	return nil
}

func (s *fileStore) writePages(pages []pageWrite) error {
	if s.bm == nil {
		f, err := os.OpenFile(s.bmPath, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", s.bmPath, err)
		}
		s.bm = f
	}
	for _, p := range pages {
		if _, err := s.bm.WriteAt(p.data, p.index*pageSize); err != nil {
			return fmt.Errorf("write %s page %d: %w", s.bmPath, p.index, err)
		}
	}
	s.fp.Hit(FailBeforePagesSync)
	if err := fdatasync(s.bm); err != nil {
		return fmt.Errorf("fdatasync %s: %w", s.bmPath, err)
	}
	return nil
}

func (s *fileStore) writeAL(slot int, rec []byte) error {
	if s.al == nil {
		if err := os.MkdirAll(s.dir, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", s.dir, err)
		}
		f, err := os.OpenFile(s.alPath, os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("open %s: %w", s.alPath, err)
		}
		if err := fsx.SyncDir(s.dir); err != nil { // the name is durable before any record counts on it
			f.Close()
			return err
		}
		s.al = f
	}
	if _, err := s.al.WriteAt(rec, int64(slot)*pageSize); err != nil {
		return fmt.Errorf("write %s slot %d: %w", s.alPath, slot, err)
	}
	s.fp.Hit(FailBeforeALSync)
	if err := fdatasync(s.al); err != nil {
		return fmt.Errorf("fdatasync %s: %w", s.alPath, err)
	}
	return nil
}

func (s *fileStore) remove() error {
	s.close()
	var errs []error
	// The bitmap file first: an AL without it is ignored (and removed) at
	// load, a bitmap file without its AL would load as all dirty.
	for _, p := range []string{s.bmPath, s.alPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	if err := fsx.SyncDir(s.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *fileStore) moveAside(suffix string) error {
	s.close()
	for _, p := range []string{s.bmPath, s.alPath} {
		if err := os.Rename(p, p+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("move %s aside: %w", p, err)
		}
	}
	return fsx.SyncDir(s.dir)
}

func (s *fileStore) close() error {
	var errs []error
	for _, f := range []*os.File{s.bm, s.al} {
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.bm, s.al = nil, nil
	return errors.Join(errs...)
}

// fdatasync makes f's data durable (metadata only as needed to read it).
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
