package catalog

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestDatastoresRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, d := range []Datastore{{Name: "b", Path: "/b", UUID: "u2", Added: now}, {Name: "a", Path: "/a", UUID: "u1", Added: now}} {
		if err := c.PutDatastore(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Datastores()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[0].Path != "/a" || got[1].Name != "b" || !got[1].Added.Equal(now) {
		t.Fatalf("got %+v", got)
	}
	if err := c.DeleteDatastore("a"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteDatastore("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: got %v, want ErrNotFound", err)
	}
	got, err = c.Datastores()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "b" {
		t.Fatalf("after delete got %+v", got)
	}
}

func TestLockedByAnotherOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "catalog.db")
	c, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// bbolt's flock is per open file description, so a second Open in
	// the same process contends like another daemon would.
	if _, err := Open(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
}
