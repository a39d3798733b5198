// Package s3test runs a real S3 server, versitygw with its posix backend,
// for tests of the S3 backup backend. A bucket is a directory under the
// server's root directory; objects are files below it.
//
// The binary is $ES_VERSITYGW, else bin/tools/versitygw under the module
// root (built by scripts/deps.sh), else versitygw on PATH. A missing
// binary fails the test: run scripts/deps.sh (tests never skip).
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Credentials every test server accepts.
const (
	AccessKey = "extrasphere-test"
	SecretKey = "extrasphere-test-secret"
)

// startTimeout bounds the wait for a fresh server to answer.
const startTimeout = 20 * time.Second

// Server is a running versitygw. Kill and Restart let fault tests take it
// away and bring it back on the same port and directory.
type Server struct {
	// Endpoint is "http://127.0.0.1:PORT".
	Endpoint string
	// Addr is "127.0.0.1:PORT".
	Addr                 string
	AccessKey, SecretKey string
	// Dir is the posix root: one directory per bucket.
	Dir string

	bin string
	log string // server output, shown when it fails to start

	mu     sync.Mutex // guards proc and exited
	proc   *os.Process
	exited chan error // receives the exit status once; nil while stopped
}

// Start runs a versitygw on a free loopback port with a fresh directory;
// t.Cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := findBinary(t)
	s := &Server{
		AccessKey: AccessKey,
		SecretKey: SecretKey,
		Dir:       filepath.Join(t.TempDir(), "root"),
		bin:       bin,
		log:       filepath.Join(t.TempDir(), "versitygw.log"),
	}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatalf("create versitygw root: %v", err)
	}
	s.Addr = freeAddr(t)
	s.Endpoint = "http://" + s.Addr
	t.Cleanup(s.Kill)
	s.start(t)
	return s
}

// Kill stops the server abruptly (SIGKILL) and waits for it to exit.
// Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.exited // "signal: killed" is the expected status
	s.proc, s.exited = nil, nil
}

// Restart kills the server if it runs and starts it again on the same
// port and directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	s.start(t)
}

// NewBucket creates a fresh, empty bucket and returns its name. With the
// posix backend a bucket is a directory under Dir.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random bucket name: %v", err)
	}
	name := "test-" + hex.EncodeToString(b[:])
	if err := os.Mkdir(filepath.Join(s.Dir, name), 0o755); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// start launches the process and waits until it answers HTTP.
func (s *Server) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open versitygw log: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--port", s.Addr, "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()
	s.waitReady(t, exited)
	t.Logf("versitygw serving on %s after %v", s.Addr, time.Since(begin).Round(time.Millisecond))
}

// waitReady polls until the server answers any HTTP response, fails the
// test if the process exits first or the wait exceeds startTimeout.
func (s *Server) waitReady(t testing.TB, exited <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/", nil)
		if err != nil {
			t.Fatalf("versitygw readiness request: %v", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return // any answer, 403 included, means it serves
		}
		select {
		case werr := <-exited:
			s.mu.Lock()
			s.proc, s.exited = nil, nil
			s.mu.Unlock()
			t.Fatalf("versitygw exited before serving on %s: %v\n%s", s.Addr, werr, s.logTail())
		case <-ctx.Done():
			t.Fatalf("versitygw did not answer on %s within %v\n%s", s.Addr, startTimeout, s.logTail())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freeAddr picks a free loopback port. The port is released before
// versitygw binds it; a collision in that window fails the start loudly.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// findBinary locates versitygw (see the package comment).
func findBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ES_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("ES_VERSITYGW=%s: %v (run scripts/deps.sh)", p, err)
		}
		return p
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, "bin", "tools", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("versitygw")
	if err != nil {
		t.Fatalf("versitygw not found (not in $ES_VERSITYGW, bin/tools/versitygw or PATH): run scripts/deps.sh")
	}
	return p
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir || strings.TrimSpace(parent) == "" {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// String names the server in messages.
func (s *Server) String() string { return fmt.Sprintf("versitygw %s (%s)", s.Endpoint, s.Dir) }
