package catalog

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestRepos(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := c.Repos(); err != nil || len(rs) != 0 {
		t.Fatalf("fresh catalog: %v %v", rs, err)
	}
	at := time.Unix(1800000000, 0).UTC()
	for _, r := range []Repo{{Name: "s3", Location: "s3://b/p", Endpoint: "http://127.0.0.1:7070", AccessKey: "k", SecretKey: "s", Added: at},
		{Name: "default", Location: "/srv/backups", PasswordFile: "/etc/pw", Added: at}} {
		if err := c.PutRepo(r); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	c, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rs, err := c.Repos()
	if err != nil || len(rs) != 2 || rs[0].Name != "default" || rs[0].PasswordFile != "/etc/pw" || rs[1].SecretKey != "s" || !rs[1].Added.Equal(at) {
		t.Fatalf("after reopen: %+v %v", rs, err)
	}
	if err := c.DeleteRepo("s3"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteRepo("s3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
