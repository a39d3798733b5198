package node

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// Client limits.
const (
	dialTimeout = 10 * time.Second
)

// RemoteError is an error reply of another node's peer API. It unwraps to
// ErrNotPaired, ErrBadCode, ErrRateLimited or ErrPeerConflict for those
// codes.
type RemoteError struct {
	Status int    // HTTP status
	Code   string // one of the apischema.Code* constants (or a newer one)
	Msg    string // the other node's message
}

func (e *RemoteError) Error() string { return "the other node says: " + e.Msg }

func (e *RemoteError) Unwrap() error {
	switch e.Code {
	case apischema.CodeNotPaired:
		return ErrNotPaired
	case apischema.CodeBadCode:
		return ErrBadCode
	case apischema.CodeRateLimited:
		return ErrRateLimited
	case apischema.CodePeerConflict:
		return ErrPeerConflict
	}
	return nil
}

// PeerClient calls the peer API of one node, pinned by fingerprint. It is
// safe for concurrent use; CloseIdleConnections releases its connections.
type PeerClient struct {
	addr string
	fp   string
	hc   *http.Client
	tr   *http.Transport

	// onTLS, if set, sees the state of every handshake (Pair keeps the
	// server's certificate).
	onTLS func(tls.ConnectionState)
}

// PeerClient returns a client of the node at addr (HOST:PORT) whose
// certificate has fingerprint. This node's identity is read at each dial.
func (s *Service) PeerClient(addr, fingerprint string) *PeerClient {
	c := &PeerClient{addr: addr, fp: fingerprint}
	c.tr = &http.Transport{
		DialTLSContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			cfg, err := s.ClientTLS(fingerprint)
			if err != nil {
				return nil, err
			}
			d := net.Dialer{Timeout: dialTimeout}
			raw, err := d.DialContext(ctx, network, a)
			if err != nil {
				return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, addr, err)
			}
			tc := tls.Client(raw, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				if errors.Is(err, ErrFingerprintMismatch) {
					return nil, fmt.Errorf("node at %s: %w", addr, err)
				}
				return nil, fmt.Errorf("%w at %s: TLS handshake: %v", ErrUnreachable, addr, err)
			}
			if c.onTLS != nil {
				c.onTLS(tc.ConnectionState())
			}
			return tc, nil
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	c.hc = &http.Client{Transport: c.tr}
	return c
}

// CloseIdleConnections closes the client's idle connections.
func (c *PeerClient) CloseIdleConnections() { c.tr.CloseIdleConnections() }

// Do sends a JSON request (in nil: no body) to path (/peer/...) and decodes
// a 2xx reply into out (nil: discard). A non-2xx reply is a *RemoteError.
func (c *PeerClient) Do(ctx context.Context, method, path string, in, out any) error {
	err := apischema.Call(ctx, c.hc, method, "https://"+c.addr+path, "", in, out)
	var ae *apischema.Error
	if errors.As(err, &ae) {
		return &RemoteError{Status: ae.Status, Code: ae.Code, Msg: ae.Message}
	}
	var te *apischema.TransportError
	if !errors.As(err, &te) {
		return err
	}
	err = te.Err
	if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrFingerprintMismatch) || errors.Is(err, ErrNoIdentity) {
		return err
	}
	return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.addr, err)
}

// Pair pairs this node with the node at addr (HOST:PORT of its peer API)
// whose pairing code is code: it checks the node's certificate against the
// code's fingerprint, proves the secret, and trusts the node, which trusts
// this one in turn. It returns the new peer.
func (s *Service) Pair(ctx context.Context, addr, code string) (Peer, error) {
	fp, secret, err := ParseCode(code)
	if err != nil {
		return Peer{}, err
	}
	id, err := s.Identity()
	if err != nil {
		return Peer{}, fmt.Errorf("pair with %s: %w", addr, err)
	}
	if fp == id.Fingerprint {
		return Peer{}, fmt.Errorf("pair with %s: %w: the code is this node's own", addr, ErrBadCode)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return Peer{}, fmt.Errorf("pair with %s: want HOST:PORT of the other node's node port: %v", addr, err)
	}
	pc := s.PeerClient(addr, fp)
	defer pc.CloseIdleConnections()
	var cert []byte
	pc.onTLS = func(cs tls.ConnectionState) {
		if len(cs.PeerCertificates) > 0 {
			cert = cs.PeerCertificates[0].Raw
		}
	}
	var reply Hello
	err = pc.Do(ctx, http.MethodPost, apischema.PeerPair, PairRequest{CodeSecret: secret, Name: id.Name, Addr: s.opts.AdvertiseAddr}, &reply)
	if err != nil {
		return Peer{}, fmt.Errorf("pair with %s: %w", addr, err)
	}
	// The handshake accepted only the pinned certificate; cert is it.
	if Fingerprint(cert) != fp || reply.Fingerprint != fp {
		return Peer{}, fmt.Errorf("pair with %s: %w", addr, &MismatchError{Want: fp, Got: reply.Fingerprint})
	}
	p := Peer{
		Name:        reply.Name,
		Fingerprint: fp,
		Addr:        addr,
		CertPEM:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})),
	}
	if err := s.peers.Add(p); err != nil {
		return Peer{}, fmt.Errorf("pair with %s: the other node trusts this one now, but: %w", addr, err)
	}
	s.log.Info("node paired", "peer", p.Name, "fingerprint", fp, "addr", addr)
	p, _ = s.peers.Get(fp)
	return p, nil
}
