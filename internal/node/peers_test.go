package node

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testPeer makes a valid peer with a fresh certificate.
func testPeer(t *testing.T, name string) Peer {
	t.Helper()
	id, err := Init(filepath.Join(t.TempDir(), name), name)
	if err != nil {
		t.Fatal(err)
	}
	return Peer{Name: name, Fingerprint: id.Fingerprint, Addr: name + ":10810", CertPEM: id.CertPEM(),
		Added: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func TestPeersRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := LoadPeers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.List(); len(got) != 0 {
		t.Fatalf("new store lists %v", got)
	}
	b, a := testPeer(t, "b"), testPeer(t, "a")
	for _, p := range []Peer{b, a} {
		if err := s.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, peersFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("peers.json: %v %v, want mode 600", fi, err)
	}
	back, err := LoadPeers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := back.List(), []Peer{a, b}; !reflect.DeepEqual(got, want) {
		t.Errorf("reloaded %+v\nwant %+v", got, want)
	}
	if got, ok := back.Get(b.Fingerprint); !ok || !reflect.DeepEqual(got, b) {
		t.Errorf("Get(b) = %+v %v", got, ok)
	}
	raw := read(t, dir, peersFile)
	for _, key := range []string{`"version": 1`, `"name"`, `"fingerprint"`, `"addr"`, `"cert_pem"`, `"added"`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("peers.json lacks %s:\n%s", key, raw)
		}
	}

	// Re-adding a fingerprint updates it and keeps when it was added.
	moved := a
	moved.Addr, moved.Added = "elsewhere:1", time.Time{}
	if err := back.Add(moved); err != nil {
		t.Fatal(err)
	}
	if got, _ := back.Get(a.Fingerprint); got.Addr != "elsewhere:1" || !got.Added.Equal(a.Added) {
		t.Errorf("updated peer %+v", got)
	}
	// Another certificate under a taken name is refused.
	imposter := testPeer(t, "a")
	if err := back.Add(imposter); !errors.Is(err, ErrPeerConflict) {
		t.Errorf("same name, other fingerprint: got %v, want ErrPeerConflict", err)
	}
	// A peer whose fingerprint is not its certificate's is refused.
	lie := b
	lie.Name, lie.Fingerprint = "c", a.Fingerprint
	if err := back.Add(lie); err == nil {
		t.Errorf("Add accepted a fingerprint that is not the certificate's")
	}

	if _, err := back.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := back.Remove(b.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if _, err := back.Remove("a"); !errors.Is(err, ErrNotPaired) {
		t.Errorf("remove twice: got %v, want ErrNotPaired", err)
	}
	again, err := LoadPeers(dir)
	if err != nil || len(again.List()) != 0 {
		t.Errorf("after removing all: %v %v", again.List(), err)
	}
}

func TestPeersDamaged(t *testing.T) {
	a, b := testPeer(t, "a"), testPeer(t, "b")
	swapped := strings.Replace(string(mustPeersJSON(t, a)), a.Fingerprint, b.Fingerprint, 1)
	for _, tc := range []struct{ name, data string }{
		{"Garbage", "{"},
		{"Version", `{"version": 2, "peers": []}`},
		{"UnknownField", `{"version": 1, "peers": [], "x": 1}`},
		{"FingerprintNotCert", swapped},
		{"Duplicate", string(mustPeersJSON(t, a, a))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, peersFile)
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPeers(dir)
			if err == nil || !strings.Contains(err.Error(), path+" is damaged") {
				t.Errorf("got %v, want an error naming %s", err, path)
			}
		})
	}
}

// mustPeersJSON writes peers into a store and returns its file (the store
// refuses duplicates, so those are appended by hand).
func mustPeersJSON(t *testing.T, peers ...Peer) []byte {
	t.Helper()
	dir := t.TempDir()
	s, _ := LoadPeers(dir)
	if err := s.save(peers); err != nil {
		t.Fatal(err)
	}
	return read(t, dir, peersFile)
}

func FuzzDecodePeers(f *testing.F) {
	f.Add([]byte(`{"version":1,"peers":[]}`))
	f.Add([]byte(`{"version":1,"peers":[{"name":"a","fingerprint":"SHA256:00","cert_pem":"x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		peers, err := decodePeers(data)
		if err != nil {
			return
		}
		for _, p := range peers {
			if err := p.Validate(); err != nil {
				t.Fatalf("decoded an invalid peer: %v", err)
			}
		}
	})
}
