package node

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/extrasphere/extrasphere/internal/failpoint"
)

// pairRetryDelay is how long the pairing route refuses every attempt after
// a wrong secret: it bounds guessing at one secret per second per node.
const pairRetryDelay = time.Second

// Options configure a Service.
type Options struct {
	// AdvertiseAddr is the HOST:PORT of this node's peer API as other
	// nodes reach it; pairing tells it to the other node. "" when unknown
	// (the other node then records the address the request came from,
	// with no port).
	AdvertiseAddr string

	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger

	// Failpoints stop the process at named steps (crash tests).
	Failpoints *failpoint.Set
}

// Service is a node's identity, its trust store and its pairing. All
// methods are safe for concurrent use.
type Service struct {
	dir   string
	opts  Options
	log   *slog.Logger
	peers *PeerStore
	now   func() time.Time // the clock of the pairing rate limit and code expiry; tests replace it

	mu        sync.Mutex    // guards id, initing, pairAfter and codes
	id        *Identity     // nil until Init
	initing   bool          // an Init is writing files
	pairAfter time.Time     // no pairing attempt is checked before this (after a wrong secret)
	codes     []pendingCode // unused pairing codes, oldest first (pairing.go)
}

// Open opens the node directory dir ($DATA/node): its identity if there is
// one, and its trust store. A damaged identity or trust store is an error.
func Open(dir string, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{dir: dir, opts: opts, log: opts.Logger, now: time.Now}
	id, err := Load(dir)
	switch {
	case errors.Is(err, ErrNoIdentity):
	case err != nil:
		return nil, err
	default:
		s.id = id
	}
	if s.peers, err = LoadPeers(dir); err != nil {
		return nil, err
	}
	s.peers.fp = opts.Failpoints
	return s, nil
}

// Dir returns the node directory.
func (s *Service) Dir() string { return s.dir }

// AdvertiseAddr returns the address other nodes reach this node's peer API
// at, "" if unknown.
func (s *Service) AdvertiseAddr() string { return s.opts.AdvertiseAddr }

// Init creates this node's identity; ErrExists if it has one.
func (s *Service) Init(name string) (*Identity, error) {
	s.mu.Lock()
	if s.id != nil || s.initing {
		s.mu.Unlock()
		return nil, fmt.Errorf("init node identity: %w (it is %s)", ErrExists, s.describe())
	}
	s.initing = true
	s.mu.Unlock()

	id, err := initIdentity(s.dir, name, s.opts.Failpoints)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.initing = false
	if err != nil {
		return nil, err
	}
	s.id = id
	s.log.Info("node identity created", "name", id.Name, "fingerprint", id.Fingerprint)
	return id, nil
}

// describe names the identity for messages; s.mu is held.
func (s *Service) describe() string {
	if s.id == nil {
		return "being created"
	}
	return s.id.Name + " " + s.id.Fingerprint
}

// Identity returns this node's identity, or an error wrapping ErrNoIdentity.
func (s *Service) Identity() (*Identity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == nil {
		return nil, ErrNoIdentity
	}
	return s.id, nil
}

// Peers returns the trust store.
func (s *Service) Peers() *PeerStore { return s.peers }

// Unpair forgets the peer with that name (or fingerprint) on this node
// only; the other node keeps trusting this one until it unpairs too.
func (s *Service) Unpair(name string) (Peer, error) {
	p, err := s.peers.Remove(name)
	if err == nil {
		s.log.Info("node unpaired", "peer", p.Name, "fingerprint", p.Fingerprint)
	}
	return p, err
}
