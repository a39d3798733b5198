package node

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/fsx"
)

// peersVersion is the version of peers.json this code writes and reads:
// must not change (a new layout gets a new number).
const peersVersion = 1

// maxPeersFile bounds what LoadPeers reads.
const maxPeersFile = 16 << 20

// Peer is a paired node, pinned by its certificate's fingerprint.
type Peer struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`    // "SHA256:<hex>" of the certificate
	Addr        string    `json:"addr,omitempty"` // its node port, HOST:PORT; "" if unknown
	CertPEM     string    `json:"cert_pem"`       // its certificate, PEM
	Added       time.Time `json:"added"`
}

// Validate checks a peer's fields, and that its fingerprint is its
// certificate's.
func (p Peer) Validate() error {
	if err := ValidateName(p.Name); err != nil {
		return err
	}
	if !validFingerprint(p.Fingerprint) {
		return fmt.Errorf("peer %s: fingerprint %q: want SHA256: and 64 lowercase hex digits", p.Name, p.Fingerprint)
	}
	block, _ := pem.Decode([]byte(p.CertPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("peer %s: cert_pem is not a PEM CERTIFICATE", p.Name)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return fmt.Errorf("peer %s: cert_pem: %w", p.Name, err)
	}
	if got := Fingerprint(block.Bytes); got != p.Fingerprint {
		return fmt.Errorf("peer %s: the certificate's fingerprint is %s, not %s", p.Name, got, p.Fingerprint)
	}
	return nil
}

// peersFileBody is peers.json.
type peersFileBody struct {
	Version int    `json:"version"`
	Peers   []Peer `json:"peers"`
}

// Validate checks the version, every peer, and that names and
// fingerprints are unique.
func (b *peersFileBody) Validate() error {
	if b.Version != peersVersion {
		return fmt.Errorf("version %d, want %d", b.Version, peersVersion)
	}
	names, fps := map[string]bool{}, map[string]bool{}
	for _, p := range b.Peers {
		if err := p.Validate(); err != nil {
			return err
		}
		if names[p.Name] || fps[p.Fingerprint] {
			return fmt.Errorf("peer %s (%s) is listed twice", p.Name, p.Fingerprint)
		}
		names[p.Name], fps[p.Fingerprint] = true, true
	}
	return nil
}

// PeerStore is the trust store, peers.json in the node directory. It is
// safe for concurrent use; every change is durable when it returns.
type PeerStore struct {
	path string
	fp   *failpoint.Set

	mu    sync.Mutex // guards peers and the file
	peers []Peer     // sorted by name
}

// LoadPeers reads the trust store in dir; a missing file is an empty
// store, a damaged one an error naming it.
func LoadPeers(dir string) (*PeerStore, error) {
	s := &PeerStore{path: filepath.Join(dir, peersFile)}
	data, err := readLimited(s.path, maxPeersFile)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load peers: %w", err)
	}
	peers, err := decodePeers(data)
	if err != nil {
		return nil, fmt.Errorf("load peers: %s is damaged (%v): restore it from a backup, or move it away and pair again", s.path, err)
	}
	s.peers = peers
	return s, nil
}

func decodePeers(data []byte) ([]Peer, error) {
	var body peersFileBody
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return nil, err
	}
	if err := body.Validate(); err != nil {
		return nil, err
	}
	slices.SortFunc(body.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return body.Peers, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", path, fi.Size(), limit)
	}
	return os.ReadFile(path)
}

// Add pairs p (validated): a new peer, or an update of the address, name
// or certificate time of the peer with the same fingerprint. Another
// fingerprint under the same name wraps ErrPeerConflict.
func (s *PeerStore) Add(p Peer) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("add peer: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make([]Peer, 0, len(s.peers)+1)
	for _, q := range s.peers {
		switch {
		case q.Fingerprint == p.Fingerprint:
			if p.Added.IsZero() {
				p.Added = q.Added
			}
		case q.Name == p.Name:
			return fmt.Errorf("add peer %s (%s): %w: %s is paired as %s (run `extrasphere node unpair %s` first)",
				p.Name, p.Fingerprint, ErrPeerConflict, q.Fingerprint, q.Name, q.Name)
		default:
			next = append(next, q)
		}
	}
	if p.Added.IsZero() {
		p.Added = time.Now().UTC()
	}
	next = append(next, p)
	slices.SortFunc(next, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	if err := s.save(next); err != nil {
		return fmt.Errorf("add peer %s: %w", p.Name, err)
	}
	s.peers = next
	return nil
}

// Get returns the peer with fingerprint fp.
func (s *PeerStore) Get(fp string) (Peer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if p.Fingerprint == fp {
			return p, true
		}
	}
	return Peer{}, false
}

// List returns the peers, sorted by name.
func (s *PeerStore) List() []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.peers)
}

// Remove forgets the peer named nameOrFP (a name or a fingerprint) and
// returns it; ErrNotPaired if there is none.
func (s *PeerStore) Remove(nameOrFP string) (Peer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.peers, func(p Peer) bool { return p.Name == nameOrFP || p.Fingerprint == nameOrFP })
	if i < 0 {
		return Peer{}, fmt.Errorf("unpair %s: %w (see `extrasphere node list`)", nameOrFP, ErrNotPaired)
	}
	gone := s.peers[i]
	next := slices.Delete(slices.Clone(s.peers), i, i+1)
	if err := s.save(next); err != nil {
		return Peer{}, fmt.Errorf("unpair %s: %w", nameOrFP, err)
	}
	s.peers = next
	return gone, nil
}

// save writes peers.json: temp, fsync, rename, fsync directory.
func (s *PeerStore) save(peers []Peer) error {
	if peers == nil {
		peers = []Peer{}
	}
	data, err := json.MarshalIndent(peersFileBody{Version: peersVersion, Peers: peers}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", s.path, err)
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFile(s.path, append(data, '\n'), 0o600, false); err != nil {
		return err
	}
	s.fp.Hit("node.peers.before-dir-sync")
	return fsx.SyncDir(dir)
}
