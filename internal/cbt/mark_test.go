package cbt

import (
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// MarkRange survives a crash (no clean Close): the pages are on disk.
func TestMarkRangeDurable(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Volume: "v", Size: 64 << 20}
	s, err := Fresh(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enable("mirror", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRange("mirror", 3*Granularity+5, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRange("nope", 0, 10); err == nil {
		t.Fatal("marking a missing bitmap succeeded")
	}
	// No Close: reopen as after a crash.
	s2, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Ranges("mirror")
	if err != nil {
		t.Fatal(err)
	}
	want := blockdev.Range{Off: 3 * Granularity, Len: Granularity}
	found := false
	for _, r := range got {
		if r.Off <= want.Off && r.Off+r.Len >= want.Off+want.Len {
			found = true
		}
	}
	if !found {
		t.Fatalf("after reopen the bitmap holds %v, want it to cover %v", got, want)
	}
	if !s2.Has("mirror") || s2.Has("other") {
		t.Fatal("Has is wrong")
	}
}
