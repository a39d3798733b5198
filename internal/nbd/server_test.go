package nbd

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// testExports serves a fixed map of devices.
type testExports struct {
	mu   sync.Mutex // guards devs
	devs map[string]*Export
}

func (e *testExports) OpenExport(ctx context.Context, name string) (*Export, func(), error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.devs[name]
	if !ok {
		return nil, nil, fmt.Errorf("export %q: %w", name, ErrUnknownExport)
	}
	return x, func() {}, nil
}

func (e *testExports) ListExports(ctx context.Context) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var names []string
	for n := range e.devs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// testServer runs a server with a 64 MiB writable "disk" and an 8 MiB
// read-only "ro" on a unix socket and on TCP.
type testServer struct {
	srv  *Server
	sock string
	tcp  string
	disk *memdev.Device
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	disk := memdev.New(64<<20, false)
	exp := &testExports{devs: map[string]*Export{
		"disk": {Name: "disk", Description: "test disk", Device: disk},
		"ro":   {Name: "ro", Device: memdev.New(8<<20, false), ReadOnly: true},
	}}
	srv := NewServer(exp, Options{})
	sock, tcp := serveBoth(t, srv)
	return &testServer{srv: srv, sock: sock, tcp: tcp, disk: disk}
}

// serveBoth serves srv on a fresh unix socket and on a loopback TCP port
// until the test ends (then shuts it down, bounded by the watchdog).
func serveBoth(t *testing.T, srv *Server) (sock, tcp string) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "nbd.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ul.Close()
		t.Fatal(err)
	}
	go srv.Serve(ul)
	go srv.Serve(tl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), watchdog)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return sock, tl.Addr().String()
}

func (s *testServer) uri(export string) string {
	return "nbd+unix:///" + export + "?socket=" + s.sock
}

// run runs a real client and fails the test with its output on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runStatus runs a client and returns its exit code.
func runStatus(t *testing.T, name string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return 0, string(out)
}

var _ blockdev.Device = (*memdev.Device)(nil)
