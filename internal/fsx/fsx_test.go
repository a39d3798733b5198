package fsx

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := WriteNew(a, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(a, []byte("y")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteNew over a file: %v", err)
	}
	if err := RenameNoReplace(a, b); err != nil {
		t.Fatal(err)
	}
	WriteNew(a, []byte("z"))
	if err := RenameNoReplace(a, b); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("rename over a file: %v", err)
	}
	if got, _ := os.ReadFile(b); string(got) != "x" {
		t.Fatalf("target replaced: %q", got)
	}
	// The fallback path, directly: files and directories.
	if err := fallbackRename(a, b); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("fallback over a file: %v", err)
	}
	d1, d2 := filepath.Join(dir, "d1"), filepath.Join(dir, "d2")
	os.Mkdir(d1, 0o755)
	os.Mkdir(d2, 0o755)
	if err := fallbackRename(d1, d2); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("fallback over a dir: %v", err)
	}
	if err := fallbackRename(d1, filepath.Join(dir, "d3")); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	f, err := CreateTemp(b)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if base := filepath.Base(f.Name()); base[:7] != ".b.tmp-" {
		t.Fatalf("temp name %s", base)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, data := range []string{"first", "second, longer"} {
		if err := WriteFileAtomic(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("read %q, %v; want %q", got, err, data)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Fatalf("mode %v, want %v", got, want)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("directory holds %d entries (%v), want only the file: no temp file left", len(ents), err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestWriteFileNoReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFileNoReplace(path, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileNoReplace(path, []byte("b"), 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: %v, want fs.ErrExist", err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "a" {
		t.Fatalf("read %q, %v; want the first content", got, err)
	}
}
