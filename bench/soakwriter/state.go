package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateMagic starts a state file: the content every block held when the last check ended.
const stateMagic = "SOAKSTATE1\n"

// loadState reads the baseline of nblk blocks; a missing file is a fresh volume (all zeros).
func loadState(path string, nblk int64) ([]uint64, error) {
	st := make([]uint64, nblk)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	if len(b) != len(stateMagic)+8*int(nblk) || string(b[:len(stateMagic)]) != stateMagic {
		return nil, fmt.Errorf("state %s: not a state file of %d blocks", path, nblk)
	}
	b = b[len(stateMagic):]
	for i := range st {
		st[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return st, nil
}

// saveState replaces the state file (temp file, fsync, rename).
func saveState(path string, st []uint64) error {
	b := make([]byte, len(stateMagic)+8*len(st))
	copy(b, stateMagic)
	for i, v := range st {
		binary.LittleEndian.PutUint64(b[len(stateMagic)+8*i:], v)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
