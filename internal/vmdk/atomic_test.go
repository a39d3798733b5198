package vmdk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWriteFileAtomicReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.vmdk")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFileAtomic(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Fatalf("content = %q, want %q", got, content)
		}
	}
	assertOnly(t, filepath.Dir(path), "v.vmdk")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	mask := unix.Umask(0)
	unix.Umask(mask)
	if got, want := st.Mode().Perm(), os.FileMode(0o644&^mask); got != want {
		t.Errorf("mode = %v, want %v (0644 minus umask)", got, want)
	}
}

func TestWriteFileAtomicNoReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v.vmdk")
	w := AtomicWriter{NoReplace: true}
	if err := w.WriteFile(path, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile(path, []byte("two")); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second NoReplace write = %v, want os.ErrExist", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "one" {
		t.Fatalf("content = %q, want the first write", got)
	}
	assertOnly(t, dir, "v.vmdk")
}

// Stopping at each failpoint leaves either the old file or the new one,
// never a mix, and no temp file.
func TestWriteFileAtomicFailpoints(t *testing.T) {
	boom := errors.New("crash here")
	tests := []struct {
		point string
		want  string
	}{
		{FailpointBeforeTempSync, "old"},
		{FailpointBeforeRename, "old"},
		{FailpointBeforeDirSync, "new"},
	}
	for _, tt := range tests {
		t.Run(tt.point, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "v.vmdk")
			if err := WriteFileAtomic(path, []byte("old")); err != nil {
				t.Fatal(err)
			}
			var reached []string
			w := AtomicWriter{Failpoint: func(name string) error {
				reached = append(reached, name)
				if name == tt.point {
					return boom
				}
				return nil
			}}
			if err := w.WriteFile(path, []byte("new")); !errors.Is(err, boom) {
				t.Fatalf("WriteFile = %v, want the failpoint error", err)
			}
			if got := reached[len(reached)-1]; got != tt.point {
				t.Fatalf("stopped at %s, want %s", got, tt.point)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("content = %q, want %q", got, tt.want)
			}
			assertOnly(t, dir, "v.vmdk")
		})
	}
}

func assertOnly(t *testing.T, dir, name string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != name {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only %s", names, name)
	}
}
