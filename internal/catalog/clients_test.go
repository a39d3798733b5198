package catalog

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestClients(t *testing.T) {
	c, err := Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if cls, err := c.Clients(); err != nil || len(cls) != 0 {
		t.Fatalf("Clients on a new catalog = %v, %v", cls, err)
	}
	if _, err := c.ClientByFingerprint("SHA256:00"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ClientByFingerprint on a new catalog: %v, want ErrNotFound", err)
	}
	a := Client{Name: "qemu-b", Volumes: []string{"vm1"}, Serial: "1", Fingerprint: "SHA256:bb", Added: time.Now().UTC()}
	b := Client{Name: "backup-a", Volumes: []string{"vm1", "vm2"}, ReadOnly: true, Serial: "2", Fingerprint: "SHA256:aa", Added: time.Now().UTC()}
	for _, cl := range []Client{a, b} {
		if err := c.AddClient(cl); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddClient(a); !errors.Is(err, ErrExists) {
		t.Fatalf("AddClient twice: %v, want ErrExists", err)
	}
	cls, err := c.Clients()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(cls), 2; got != want || cls[0].Name != "backup-a" || !cls[0].ReadOnly || len(cls[0].Volumes) != 2 {
		t.Fatalf("Clients = %+v", cls)
	}
	got, err := c.ClientByFingerprint("SHA256:bb")
	if err != nil || got.Name != "qemu-b" {
		t.Fatalf("ClientByFingerprint = %+v, %v", got, err)
	}
	if err := c.DeleteClient("qemu-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ClientByFingerprint("SHA256:bb"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ClientByFingerprint after DeleteClient: %v, want ErrNotFound", err)
	}
	if err := c.DeleteClient("qemu-b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteClient twice: %v, want ErrNotFound", err)
	}
}
