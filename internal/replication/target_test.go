package replication

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/fence"
)

// TestFileTargetFence: each open of a file target is a new fence session.
// While the previous device is open, a new open waits (here until its
// context ends) and the previous device's writes are refused from then on;
// once it is closed, the new open succeeds.
func TestFileTargetFence(t *testing.T) {
	ctx := t.Context()
	s := New(nil, Options{}) // a file target needs no host
	path := filepath.Join(t.TempDir(), "replica.raw")
	const size = 1 << 20
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	dial, err := s.dialer(catalog.Mirror{Volume: "v", Target: "file://" + path}, size)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.WriteAt(ctx, []byte{1}, 0, 0); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := dial(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("open while the previous device is open: %v, want it to wait (here: cancelled)", err)
	}
	if err := d1.WriteAt(ctx, []byte{2}, 0, 0); !errors.Is(err, fence.ErrFenced) {
		t.Fatalf("write of the previous device after a newer open: %v, want fence.ErrFenced", err)
	}
	d1.Close()
	d2, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	got := make([]byte, 1)
	if err := d2.ReadAt(ctx, got, 0); err != nil || got[0] != 1 {
		t.Fatalf("the file holds %d (%v), want 1", got[0], err)
	}
}
