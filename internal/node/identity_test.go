package node

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	id, err := Init(dir, "host1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.Name, "host1"; got != want {
		t.Errorf("name %q, want %q", got, want)
	}
	if got, want := id.Fingerprint, Fingerprint(id.Cert.Leaf.Raw); got != want || !validFingerprint(got) {
		t.Errorf("fingerprint %q, want %q (SHA256: + lowercase hex)", got, want)
	}
	leaf := id.Cert.Leaf
	if leaf.Subject.CommonName != "host1" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "host1" {
		t.Errorf("subject %v SANs %v, want CN and DNS host1", leaf.Subject, leaf.DNSNames)
	}
	if got := leaf.NotAfter.Sub(time.Now()); got < 9*365*24*time.Hour {
		t.Errorf("certificate valid for %v, want 10 years", got)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	for name, want := range map[string]os.FileMode{keyFile: 0o600, certFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", name, got, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, obsoleteSecretFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("init wrote %s (pairing codes are single-use and in memory): %v", obsoleteSecretFile, err)
	}

	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != id.Name || back.Fingerprint != id.Fingerprint {
		t.Errorf("loaded %s %s, want %s %s", back.Name, back.Fingerprint, id.Name, id.Fingerprint)
	}

	if _, err := Init(dir, "host2"); !errors.Is(err, ErrExists) {
		t.Errorf("second init: got %v, want ErrExists", err)
	}
	if again, _ := Load(dir); again.Fingerprint != id.Fingerprint {
		t.Errorf("second init changed the identity")
	}
}

func TestInitBadName(t *testing.T) {
	for _, name := range []string{"", "-x", "a b", "a:b", "a/b", strings.Repeat("x", 64), "é"} {
		if _, err := Init(filepath.Join(t.TempDir(), "node"), name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Init(%q): got %v, want ErrInvalidName", name, err)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("got %v, want ErrNoIdentity", err)
	}
	// An interrupted init (key, no certificate) is no identity, and the
	// next init completes.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, keyFile), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("key without cert: got %v, want ErrNoIdentity", err)
	}
	if _, err := Init(dir, "host1"); err != nil {
		t.Errorf("init over an interrupted init: %v", err)
	}
}

func TestLoadCorrupt(t *testing.T) {
	otherDir := filepath.Join(t.TempDir(), "other")
	if _, err := Init(otherDir, "other"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file string
		data func(dir string) []byte
	}{
		{"CertGarbage", certFile, func(string) []byte { return []byte("not a certificate\n") }},
		{"CertTruncated", certFile, func(dir string) []byte { b := read(t, dir, certFile); return b[:len(b)/2] }},
		{"CertBadDER", certFile, func(string) []byte {
			return []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}},
		{"KeyGarbage", keyFile, func(string) []byte { return []byte("junk") }},
		{"KeyOfAnotherNode", keyFile, func(string) []byte { return read(t, otherDir, keyFile) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "node")
			if _, err := Init(dir, "host1"); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, tc.data(dir), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil || errors.Is(err, ErrNoIdentity) {
				t.Fatalf("got %v, want a damaged-file error", err)
			}
			if msg := err.Error(); !strings.Contains(msg, path+" is damaged") || !strings.Contains(msg, "node init") {
				t.Errorf("message %q does not name %s and the way out", msg, path)
			}
			if _, err := Open(dir, Options{}); err == nil {
				t.Errorf("Open accepted a damaged identity")
			}
		})
	}
}

func read(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
