package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// HandshakeTimeout bounds the whole option negotiation; 0 means 30 s.
	HandshakeTimeout time.Duration
	// TLS, when set, enables NBD_OPT_STARTTLS. RequireTLS refuses every
	// other option until TLS is up (NBD_REP_ERR_TLS_REQD).
	TLS        *tls.Config
	RequireTLS bool
	// Door is the admission policy (door.go): TLS per connection and
	// who may list and open exports.
	Door Door
	// InflightBytes bounds the payload bytes one connection may hold in
	// flight; the reader stops reading (back-pressure) when it is spent.
	// 0 means 64 MiB. It is at least MaxPayload.
	InflightBytes int64
}

// Server serves Exports over NBD on any number of listeners.
type Server struct {
	exports Exports
	opts    Options
	log     *slog.Logger

	mu        sync.Mutex // guards listeners, conns, perExport, closing
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perExport map[string]int
	closing   bool

	wg   sync.WaitGroup // one per live connection goroutine
	bufs *bufPool       // payload buffers shared by all connections

	refused *refusalLog // rate limit of refusal logs (door.go)
}

// NewServer returns a server for exports; call Serve for each listener.
func NewServer(exports Exports, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 30 * time.Second
	}
	if opts.InflightBytes < MaxPayload {
		opts.InflightBytes = 64 << 20
	}
	return &Server{
		exports:   exports,
		opts:      opts,
		log:       opts.Logger,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perExport: map[string]int{},
		bufs:      newBufPool(),
		refused:   newRefusalLog(),
	}
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("nbd: server closed")

// Serve accepts connections on ln until ln fails or Shutdown is called.
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

	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of descriptors or a transient accept error: wait,
				// capped, and keep serving the connections we have.
				s.log.Warn("nbd accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				backoff = min(backoff*2, time.Second)
				continue
			}
			return err
		}
		backoff = 5 * time.Millisecond
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
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
