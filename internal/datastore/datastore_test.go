package datastore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/flat"
)

func TestMarkerRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ds, created, err := Init(dir, "fast", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !created || ds.Name != "fast" || ds.Created != "2026-01-02T03:04:05Z" {
		t.Fatalf("init: created=%v ds=%+v", created, ds)
	}
	again, created, err := Init(dir, "other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if created || again.Name != "fast" || again.UUID != ds.UUID {
		t.Fatalf("re-init must keep the marker: created=%v ds=%+v", created, again)
	}
}

func TestMarkerCorruption(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Init(dir, "a", time.Now()); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, MarkerFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"NameChanged":  strings.Replace(string(b), `"name": "a"`, `"name": "b"`, 1),
		"WrongMagic":   strings.Replace(string(b), MarkerMagic, "something-else", 1),
		"WrongVersion": strings.Replace(string(b), `"version": 1`, `"version": 2`, 1),
		"NotJSON":      "{",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			if content == string(b) {
				t.Fatal("test case did not change the marker")
			}
			if _, err := DecodeMarker([]byte(content)); !errors.Is(err, ErrBadMarker) {
				t.Fatalf("got %v, want ErrBadMarker", err)
			}
		})
	}
	if _, err := Open(t.TempDir()); !errors.Is(err, ErrNoMarker) {
		t.Fatalf("open without marker: got %v, want ErrNoMarker", err)
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"vm1-disk0", true}, {"A.b_c-9", true}, {"0", true}, {strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false}, {"", false}, {".hidden", false}, {"-x", false},
		{"a/b", false}, {"a b", false}, {"é", false},
	} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// createVolume makes a real volume through staging, as the engine does.
func createVolume(t *testing.T, ds *Datastore, name string, size int64) {
	t.Helper()
	st, err := ds.Stage(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := flat.Create(st.DescriptorPath, size, flat.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ds.Commit(st); err != nil {
		t.Fatal(err)
	}
}

func TestScanSkipsCorruptDescriptor(t *testing.T) {
	ds, _, err := Init(t.TempDir(), "d", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	createVolume(t, ds, "good", 1<<20)
	createVolume(t, ds, "bad", 1<<20)
	createVolume(t, ds, "good2", 2<<20)
	if err := os.WriteFile(ds.DescriptorPath("bad"), []byte("\x00\x01garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not volumes: a stray file, a directory without a descriptor, a
	// leftover of a crashed create.
	os.WriteFile(filepath.Join(ds.Path, "notes.txt"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(ds.Path, "lost+found"), 0o755)
	os.Mkdir(filepath.Join(ds.Path, ".creating-x-123"), 0o755)

	vols, bad, err := ds.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(vols), 2; got != want {
		t.Fatalf("got %d volumes, want %d: %+v", got, want, vols)
	}
	if vols[0].Name != "good" || vols[0].Size != 1<<20 || vols[1].Name != "good2" || vols[1].Size != 2<<20 {
		t.Fatalf("volumes %+v", vols)
	}
	if vols[0].FlatPath != filepath.Join(ds.Path, "good", "good-flat.vmdk") {
		t.Fatalf("flat path %s", vols[0].FlatPath)
	}
	if len(bad) != 1 {
		t.Fatalf("got %d bad volumes, want 1: %v", len(bad), bad)
	}
	var ve *VolumeError
	if !errors.Is(bad[0], ErrBadVolume) || !errors.As(bad[0], &ve) || ve.Volume != "bad" {
		t.Fatalf("bad volume error %v", bad[0])
	}
	if !strings.Contains(bad[0].Error(), "volume bad") {
		t.Fatalf("error does not name the volume: %v", bad[0])
	}

	removed, err := ds.CleanStale()
	if err != nil || len(removed) != 1 {
		t.Fatalf("clean stale: %v %v", removed, err)
	}
}

func TestStageCommitRemove(t *testing.T) {
	ds, _, err := Init(t.TempDir(), "d", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	createVolume(t, ds, "v", 4096)
	if _, err := ds.Stage("v"); !errors.Is(err, ErrVolumeDirExists) {
		t.Fatalf("stage existing: got %v", err)
	}
	// A second staged copy of the same name must not replace the first.
	if err := os.Rename(ds.VolumeDir("v"), filepath.Join(ds.Path, "keep")); err != nil {
		t.Fatal(err)
	}
	st, err := ds.Stage("v")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(ds.Path, "keep"), ds.VolumeDir("v")); err != nil {
		t.Fatal(err)
	}
	if err := ds.Commit(st); !errors.Is(err, ErrVolumeDirExists) {
		t.Fatalf("commit over existing: got %v", err)
	}
	if err := ds.Abort(st); err != nil {
		t.Fatal(err)
	}
	if err := ds.RemoveVolume("v"); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(ds.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != MarkerFile {
		t.Fatalf("left behind: %v", ents)
	}
	sp, err := ds.Space()
	if err != nil || sp.Total == 0 || sp.Free > sp.Total {
		t.Fatalf("space %+v %v", sp, err)
	}
}

// A flat file whose descriptor is gone is reported, never silently hidden.
func TestScanMissingDescriptor(t *testing.T) {
	dir := t.TempDir()
	ds, _, err := Init(dir, "d", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "lost"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lost", "lost-flat.vmdk"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "lost+found"), 0o755); err != nil {
		t.Fatal(err)
	}
	vols, bad, err := ds.Scan()
	if err != nil || len(vols) != 0 {
		t.Fatalf("Scan: %v %v", vols, err)
	}
	if len(bad) != 1 || !errors.Is(bad[0], ErrMissingDescriptor) || !strings.Contains(bad[0].Error(), "lost-flat.vmdk") {
		t.Fatalf("bad = %v, want one ErrMissingDescriptor naming lost-flat.vmdk", bad)
	}
}
