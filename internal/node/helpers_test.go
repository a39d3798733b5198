package node

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// newNode opens a Service in a temp dir and, unless name is "", gives it
// an identity.
func newNode(t *testing.T, name string) *Service {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "node"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if name != "" {
		if _, err := s.Init(name); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// serve runs s's peer API over TLS on a loopback port until the test ends
// and returns its address.
func serve(t *testing.T, s *Service, next http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler(next), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(tls.NewListener(ln, s.ServerTLS())) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// fakeClock is a settable clock for the pairing rate limit.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// mustCode makes a fresh pairing code of s.
func mustCode(t *testing.T, s *Service) string {
	t.Helper()
	pc, err := s.NewPairingCode()
	if err != nil {
		t.Fatal(err)
	}
	return pc.Code
}

func fingerprintOf(t *testing.T, s *Service) string {
	t.Helper()
	id, err := s.Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id.Fingerprint
}
