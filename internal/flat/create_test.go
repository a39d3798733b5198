package flat

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/vmdk"
	"golang.org/x/sys/unix"
)

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestCreate(t *testing.T) {
	const size = 8<<20 + 512
	tests := []struct {
		name          string
		opts          CreateOptions
		wantDDB       map[string]string
		wantAllocated bool
	}{
		{"Thin", CreateOptions{}, map[string]string{}, false},
		{"Preallocated", CreateOptions{Preallocate: true}, map[string]string{vmdk.DDBExtraspherePreAlloc: "true"}, true},
		{"ReadOnly", CreateOptions{ReadOnly: true}, map[string]string{vmdk.DDBExtrasphereReadOnly: "true"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			descPath := filepath.Join(dir, "vm1-disk0.vmdk")
			if err := Create(descPath, size, tt.opts); err != nil {
				t.Fatal(err)
			}
			if got, want := dirNames(t, dir), []string{"vm1-disk0-flat.vmdk", "vm1-disk0.vmdk"}; !slices.Equal(got, want) {
				t.Fatalf("files %v, want %v", got, want)
			}
			flatPath := filepath.Join(dir, "vm1-disk0-flat.vmdk")
			st, err := os.Stat(flatPath)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := st.Size(), int64(size); got != want {
				t.Errorf("flat size %d, want %d", got, want)
			}
			if got := allocated(t, flatPath); tt.wantAllocated && got < size || !tt.wantAllocated && got != 0 {
				t.Errorf("flat has %d bytes allocated; preallocated=%v", got, tt.wantAllocated)
			}
			desc, err := ReadDescriptor(descPath)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := desc.Extents, []vmdk.Extent{{Access: vmdk.AccessRW, Sectors: size / 512, Type: vmdk.TypeFlat, File: "vm1-disk0-flat.vmdk"}}; !slices.Equal(got, want) {
				t.Errorf("extents %+v, want %+v", got, want)
			}
			for _, key := range []string{vmdk.DDBExtrasphereReadOnly, vmdk.DDBExtraspherePreAlloc} {
				got, _ := desc.DDB.Get(key)
				if want := tt.wantDDB[key]; got != want {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
			d := openVolume(t, descPath, Options{})
			defer d.Close()
			if got, want := d.Size(), int64(size); got != want {
				t.Errorf("Size %d, want %d", got, want)
			}
			if got, want := d.Caps().ReadOnly, tt.opts.ReadOnly; got != want {
				t.Errorf("Caps().ReadOnly = %v, want %v", got, want)
			}
		})
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	t.Run("Descriptor", func(t *testing.T) {
		dir := t.TempDir()
		desc := filepath.Join(dir, "v.vmdk")
		if err := os.WriteFile(desc, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Create(desc, 1<<20, CreateOptions{}); !errors.Is(err, ErrExists) {
			t.Fatalf("Create = %v, want ErrExists", err)
		}
		if got, want := dirNames(t, dir), []string{"v.vmdk"}; !slices.Equal(got, want) {
			t.Fatalf("files %v, want %v", got, want)
		}
	})
	t.Run("Flat", func(t *testing.T) {
		dir := t.TempDir()
		flat := filepath.Join(dir, "v-flat.vmdk")
		if err := os.WriteFile(flat, []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Create(filepath.Join(dir, "v.vmdk"), 1<<20, CreateOptions{}); !errors.Is(err, ErrExists) {
			t.Fatalf("Create = %v, want ErrExists", err)
		}
		got, err := os.ReadFile(flat)
		if err != nil || string(got) != "precious" {
			t.Fatalf("flat file now %q, %v", got, err)
		}
		if got, want := dirNames(t, dir), []string{"v-flat.vmdk"}; !slices.Equal(got, want) {
			t.Fatalf("files %v, want %v", got, want)
		}
	})
	t.Run("Twice", func(t *testing.T) {
		desc := newVolume(t, 1<<20, CreateOptions{})
		if err := Create(desc, 2<<20, CreateOptions{}); !errors.Is(err, ErrExists) {
			t.Fatalf("second Create = %v, want ErrExists", err)
		}
		d := openVolume(t, desc, Options{})
		defer d.Close()
		if got, want := d.Size(), int64(1<<20); got != want {
			t.Fatalf("size after refused Create %d, want %d", got, want)
		}
	})
}

func TestCreateBadArguments(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		size int64
		want error
	}{
		{"ZeroSize", filepath.Join(dir, "a.vmdk"), 0, vmdk.ErrBadSize},
		{"OddSize", filepath.Join(dir, "a.vmdk"), 1000, vmdk.ErrBadSize},
		{"NoVmdkSuffix", filepath.Join(dir, "a.img"), 1 << 20, ErrBadName},
		{"OnlySuffix", filepath.Join(dir, ".vmdk"), 1 << 20, ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Create(tt.path, tt.size, CreateOptions{}); !errors.Is(err, tt.want) {
				t.Fatalf("Create = %v, want %v", err, tt.want)
			}
		})
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Fatalf("files left behind: %v", got)
	}
}

// A Create stopped at any failpoint leaves no files: never a descriptor
// without its flat file, never a stray flat file.
func TestCreateFailpoints(t *testing.T) {
	boom := errors.New("crash here")
	for _, point := range []string{FailpointBeforeFlatSync, vmdk.FailpointBeforeTempSync, vmdk.FailpointBeforeRename, vmdk.FailpointBeforeDirSync} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			var reached bool
			err := Create(filepath.Join(dir, "v.vmdk"), 1<<20, CreateOptions{Failpoint: func(name string) error {
				if name == point {
					reached = true
					return boom
				}
				return nil
			}})
			if !errors.Is(err, boom) || !reached {
				t.Fatalf("Create = %v (failpoint reached %v), want the failpoint error", err, reached)
			}
			if got := dirNames(t, dir); len(got) != 0 {
				t.Fatalf("files left behind: %v", got)
			}
		})
	}
}
