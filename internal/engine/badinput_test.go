package engine

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/errkind"
)

// Wrong clone, promote, migrate and snapshot requests each fail with their
// named error, say what is wrong, and change nothing.
func TestChainOpsBadInput(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	defer e.Close()
	ctx := t.Context()
	if _, err := e.AddDatastore(ctx, "ds2", filepath.Join(t.TempDir(), "ds2")); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e, CreateOptions{Name: "src", Size: 4 << 20})
	data := bytes.Repeat([]byte{0x5a}, 1<<20)
	writeThrough(t, e, "src", data, 0)
	for _, s := range []string{"s1", "s2"} {
		if _, err := e.CreateSnapshot(ctx, []string{"src"}, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Clone(ctx, "src", "s2", "c1"); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		do   func() error
		want error
		says string
	}{
		{"MigrateUnknownDatastore", func() error { _, err := e.Migrate(ctx, "src", "nope", 0); return err }, errkind.ErrDatastoreNotFound, "nope"},
		{"MigrateSameDatastore", func() error { _, err := e.Migrate(ctx, "src", "default", 0); return err }, errkind.ErrInvalidArgument, "already on"},
		{"MigrateWithClones", func() error { _, err := e.Migrate(ctx, "src", "ds2", 0); return err }, errkind.ErrVolumeInUse, "c1"},
		{"MigrateClone", func() error { _, err := e.Migrate(ctx, "c1", "ds2", 0); return err }, errkind.ErrInvalidArgument, "linked clone"},
		{"MigrateUnknownVolume", func() error { _, err := e.Migrate(ctx, "nope", "ds2", 0); return err }, errkind.ErrVolumeNotFound, "nope"},
		{"CloneUnknownSnapshot", func() error { _, err := e.Clone(ctx, "src", "nope", "c2"); return err }, errkind.ErrSnapshotNotFound, "nope"},
		{"CloneExistingName", func() error { _, err := e.Clone(ctx, "src", "s1", "c1"); return err }, errkind.ErrVolumeExists, "c1"},
		{"CloneBadName", func() error { _, err := e.Clone(ctx, "src", "s1", "../x"); return err }, errkind.ErrInvalidArgument, "../x"},
		{"PromoteNotAClone", func() error { _, err := e.Promote(ctx, "src"); return err }, errkind.ErrInvalidArgument, "not a linked clone"},
		{"ReadOnlyOnClone", func() error { _, err := e.SetReadOnly(ctx, "c1", true); return err }, errkind.ErrInvalidArgument, "linked clone"},
		{"RemoveOlderSnapshotUnderClone", func() error { _, err := e.RemoveSnapshot(ctx, "src", "s1"); return err }, errkind.ErrVolumeInUse, "c1"},
		{"RemoveSnapshotUsedByClone", func() error { _, err := e.RemoveSnapshot(ctx, "src", "s2"); return err }, errkind.ErrVolumeInUse, "c1"},
		{"RevertPastClone", func() error { _, err := e.RevertSnapshot(ctx, "src", "s1"); return err }, errkind.ErrVolumeInUse, "c1"},
		{"SnapshotBadName", func() error { _, err := e.CreateSnapshot(ctx, []string{"src"}, "a/b"); return err }, errkind.ErrInvalidArgument, "a/b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.says)
			}
		})
	}
	// Nothing changed: both snapshots, the clone and the data are intact.
	snaps, err := e.ListSnapshots(ctx, "src")
	if err != nil || len(snaps) != 2 {
		t.Fatalf("snapshots after refused operations: %v %v", snaps, err)
	}
	for _, v := range []string{"src", "c1"} {
		if got := readThrough(t, e, v, 1<<20, 0); !bytes.Equal(got, data) {
			t.Fatalf("volume %s changed by refused operations", v)
		}
	}
	if in, _ := e.GetVolume(ctx, "src"); in.Datastore != "default" {
		t.Fatalf("src moved to %s", in.Datastore)
	}
}
