package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Options configure a Server. Zero values mean the defaults of limits.go.
type Options struct {
	Logger *slog.Logger
	// HandshakeTimeout bounds the whole option negotiation, TLS handshake
	// included; 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// TLS, when set, enables NBD_OPT_STARTTLS. RequireTLS refuses every
	// other option until TLS is up (NBD_REP_ERR_TLS_REQD).
	TLS        *tls.Config
	RequireTLS bool
	// Door is the admission policy (door.go): TLS per connection and
	// who may list and open exports.
	Door Door
	// MemoryBytes is the global budget for NBD buffers: write payloads
	// read ahead and read data waiting to be sent, of all connections.
	// 0 means DefaultMemoryBytes(); it is at least MinMemoryBytes.
	MemoryBytes int64
	// InflightBytes bounds what one connection may hold of it; the reader
	// stops reading (back-pressure) when it is spent. 0 means a quarter of
	// MemoryBytes. It is at least MaxPayload and at most MemoryBytes.
	InflightBytes int64
	// WriteTimeout drops a client whose replies make no progress for this
	// long (it stopped reading); 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// PayloadTimeout drops a client whose WRITE payload makes no progress
	// for this long (it holds budget meanwhile); 0 means
	// DefaultPayloadTimeout.
	PayloadTimeout time.Duration
	// MaxConns caps the connections in every state; 0 means 1024, or half
	// of RLIMIT_NOFILE if that is less. MaxConnsPerClient caps those of one
	// TCP client address; 0 means 256, or a quarter of MaxConns if that is
	// less. Over a cap, a new connection is closed at accept, before
	// anything is allocated for it.
	MaxConns          int
	MaxConnsPerClient int
}

// Server serves Exports over NBD on any number of listeners.
type Server struct {
	exports Exports
	opts    Options
	log     *slog.Logger

	mu        sync.Mutex // guards listeners, conns, perExport, perPeer, closing
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perExport map[string]int
	perPeer   map[string]int // live connections per client address (peerKey)
	closing   bool

	wg      sync.WaitGroup // one per live connection goroutine
	bufs    *bufPool       // payload buffers shared by all connections
	mem     *memBudget     // the global NBD buffer budget
	refused *refusalLog    // rate limit of the refusal log lines
}

// NewServer returns a server for exports; call Serve for each listener.
func NewServer(exports Exports, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.PayloadTimeout <= 0 {
		opts.PayloadTimeout = DefaultPayloadTimeout
	}
	if opts.MemoryBytes <= 0 {
		opts.MemoryBytes = DefaultMemoryBytes()
	}
	opts.MemoryBytes = max(opts.MemoryBytes, MinMemoryBytes)
	opts.InflightBytes = connBudgetFor(opts.MemoryBytes, opts.InflightBytes)
	if opts.MaxConns <= 0 {
		opts.MaxConns = defaultMaxConnsFor(openFileLimit())
	}
	if opts.MaxConnsPerClient <= 0 {
		opts.MaxConnsPerClient = defaultMaxConnsPerClientFor(opts.MaxConns)
	}
	opts.Logger.Info("nbd limits", "memory", opts.MemoryBytes, "per_connection", opts.InflightBytes,
		"max_conns", opts.MaxConns, "max_conns_per_client", opts.MaxConnsPerClient,
		"handshake_timeout", opts.HandshakeTimeout, "write_timeout", opts.WriteTimeout, "payload_timeout", opts.PayloadTimeout)
	return &Server{
		exports:   exports,
		opts:      opts,
		log:       opts.Logger,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perExport: map[string]int{},
		perPeer:   map[string]int{},
		bufs:      newBufPool(),
		mem:       newMemBudget(opts.MemoryBytes),
		refused:   newRefusalLog(),
	}
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("nbd: server closed")

// Serve accepts connections on ln until ln is closed or Shutdown is called.
// No other accept error stops it: it logs, backs off (capped) and goes on,
// keeping the connections it has.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var bo acceptBackoff
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err // closed by its owner: nothing more will come
			}
			bo.wait(s.log, err)
			continue
		}
		bo.reset()
		s.admit(nc)
	}
}

// admit checks the connection caps for a new connection and serves it, or
// closes it at once. Nothing is allocated for a refused connection.
func (s *Server) admit(nc net.Conn) {
	key := peerKey(nc.RemoteAddr())
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if reason := s.overCap(key); reason != "" {
		s.mu.Unlock()
		// Logged before the close, so that whoever sees the connection
		// end can also see why.
		s.refused.log(s.log, nc.RemoteAddr(), key, reason)
		nc.Close()
		return
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	if key != "" {
		s.perPeer[key]++
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		if key != "" {
			if s.perPeer[key]--; s.perPeer[key] <= 0 {
				delete(s.perPeer, key)
			}
		}
		s.mu.Unlock()
	}()
}

// overCap says which cap a new connection from key would exceed, or "".
// s.mu is held.
func (s *Server) overCap(key string) string {
	if len(s.conns) >= s.opts.MaxConns {
		return fmt.Sprintf("the server has %d connections (serve --nbd-max-conns)", len(s.conns))
	}
	if key != "" && s.perPeer[key] >= s.opts.MaxConnsPerClient {
		return fmt.Sprintf("this client address has %d connections (serve --nbd-max-conns-per-client)", s.perPeer[key])
	}
	return ""
}

// Shutdown stops accepting, stops reading new requests, lets every request
// already read finish and be answered, then closes the connections. Clients
// such as QEMU with reconnect-delay reconnect to the next daemon and resend
// what was not answered. If ctx ends first, connections are closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// Connections returns the number of connections in transmission on export.
func (s *Server) Connections(export string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perExport[export]
}

func (s *Server) addExportConn(name string, delta int) {
	s.mu.Lock()
	s.perExport[name] += delta
	if s.perExport[name] <= 0 {
		delete(s.perExport, name)
	}
	s.mu.Unlock()
}
