package catalog

import (
	"path/filepath"
	"testing"
)

// A role swap writes one record and deletes the other in one transaction:
// after it the volume has exactly the new role.
func TestRoleSwap(t *testing.T) {
	c, err := Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.PutMirror(Mirror{Volume: "v", Gen: "g1"}); err != nil {
		t.Fatal(err)
	}
	roles := func() (int, int) {
		ms, err := c.Mirrors()
		if err != nil {
			t.Fatal(err)
		}
		rs, err := c.Replicas()
		if err != nil {
			t.Fatal(err)
		}
		return len(ms), len(rs)
	}
	if err := c.BecomeReplica(Replica{Volume: "v", Gen: "g2"}); err != nil {
		t.Fatal(err)
	}
	if m, r := roles(); m != 0 || r != 1 {
		t.Fatalf("after BecomeReplica: %d mirror and %d replica records, want 0 and 1", m, r)
	}
	if err := c.BecomeSource(Mirror{Volume: "v", Gen: "g3"}); err != nil {
		t.Fatal(err)
	}
	if m, r := roles(); m != 1 || r != 0 {
		t.Fatalf("after BecomeSource: %d mirror and %d replica records, want 1 and 0", m, r)
	}
	// Without the other record the swap is a put.
	if err := c.BecomeSource(Mirror{Volume: "w", Gen: "g4"}); err != nil {
		t.Fatal(err)
	}
	if m, r := roles(); m != 2 || r != 0 {
		t.Fatalf("after BecomeSource of a new volume: %d mirror and %d replica records, want 2 and 0", m, r)
	}
}
