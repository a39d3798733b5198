package netproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// guard is the deadline that keeps a broken test from hanging; no
// assertion depends on it.
const guard = 10 * time.Second

// echoServer is the proxy's target: it echoes every byte back, counts
// what it received and half-closes after the client's FIN.
type echoServer struct {
	ln   net.Listener
	addr string // the target string for New
	got  atomic.Int64
	wg   sync.WaitGroup // the accept loop and one per connection
}

func startEcho(t *testing.T, network string) *echoServer {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "echo.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e := &echoServer{ln: ln, addr: ln.Addr().String()}
	if network == "unix" {
		e.addr = "unix:" + addr
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go e.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.wg.Wait()
	})
	return e
}

func (e *echoServer) serve(c net.Conn) {
	defer e.wg.Done()
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		e.got.Add(int64(n))
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			c.(interface{ CloseWrite() error }).CloseWrite()
			return
		}
		if err != nil {
			return
		}
	}
}

// startProxy serves a proxy to target on a loopback port until the test
// ends; Serve must then return nil.
func startProxy(t *testing.T, target string, opts Options) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := New(ln, target, opts)
	errc := make(chan error, 1)
	go func() { errc <- p.Serve() }()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("Serve after Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(guard)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	return c
}

// roundTrip writes msg and reads the echo; it returns the echo.
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	return string(buf)
}

func TestBytesIntactBothWays(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network string
		delay   time.Duration
	}{
		{"TCPNoDelay", "tcp", 0},
		{"TCPDelay", "tcp", 2 * time.Millisecond},
		{"UnixTarget", "unix", time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := startEcho(t, tc.network)
			p := startProxy(t, echo.addr, Options{Delay: tc.delay})
			const conns, size = 8, 1 << 20
			var wg sync.WaitGroup
			for i := range conns {
				c := dial(t, p)
				want := make([]byte, size)
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				for j := range want {
					want[j] = byte(rng.Uint32())
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					werr := make(chan error, 1)
					go func() {
						_, err := c.Write(want)
						if err == nil {
							err = c.(*net.TCPConn).CloseWrite()
						}
						werr <- err
					}()
					got, err := io.ReadAll(c) // ends at the FIN the echo passes back
					if err != nil {
						t.Errorf("conn %d: read: %v", i, err)
					}
					if err := <-werr; err != nil {
						t.Errorf("conn %d: write: %v", i, err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("conn %d: got %d bytes back, want the %d sent, intact", i, len(got), len(want))
					}
				}()
			}
			wg.Wait()
			got, want := echo.got.Load(), int64(conns*size)
			if got != want {
				t.Errorf("target received %d bytes, want %d", got, want)
			}
		})
	}
}

func TestDelayRoundTrip(t *testing.T) {
	echo := startEcho(t, "tcp")
	const delay = 20 * time.Millisecond
	p := startProxy(t, echo.addr, Options{Delay: delay})
	c := dial(t, p)
	for i, d := range []time.Duration{delay, delay, 30 * time.Millisecond} {
		p.SetDelay(d)
		msg := fmt.Sprintf("ping %d", i)
		start := time.Now()
		got := roundTrip(t, c, msg)
		took := time.Since(start)
		if got != msg {
			t.Errorf("round trip %d: got %q, want %q", i, got, msg)
		}
		// The feature itself, a lower bound: one delay each way.
		if took < 2*d {
			t.Errorf("round trip %d with delay %v took %v, want >= %v", i, d, took, 2*d)
		}
	}
}

func TestCutAndRestore(t *testing.T) {
	echo := startEcho(t, "tcp")
	p := startProxy(t, echo.addr, Options{})
	c1 := dial(t, p)
	if got, want := roundTrip(t, c1, "before"), "before"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}

	p.Cut()
	n, err := c1.Read(make([]byte, 16))
	if n != 0 || err == nil || isTimeout(err) {
		t.Errorf("open connection after Cut: read %d bytes, err %v; want 0 bytes and EOF or a reset", n, err)
	}
	if got, want := p.Conns(), 0; got != want {
		t.Errorf("Conns after Cut = %d, want %d", got, want)
	}
	c2 := dial(t, p) // accepted, then closed at once
	c2.Write([]byte("refused"))
	n, err = c2.Read(make([]byte, 16))
	if n != 0 || err == nil || isTimeout(err) {
		t.Errorf("new connection while cut: read %d bytes, err %v; want 0 bytes and EOF or a reset", n, err)
	}

	p.Restore()
	c3 := dial(t, p)
	if got, want := roundTrip(t, c3, "after"), "after"; got != want {
		t.Errorf("after Restore: got %q, want %q", got, want)
	}
	if got, want := echo.got.Load(), int64(len("before")+len("after")); got != want {
		t.Errorf("target received %d bytes, want %d (nothing while cut)", got, want)
	}
}

func TestPauseHoldsResumeDelivers(t *testing.T) {
	echo := startEcho(t, "tcp")
	p := startProxy(t, echo.addr, Options{})
	c1 := dial(t, p)
	if got, want := roundTrip(t, c1, "up"), "up"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}

	p.Pause()
	p.Pause() // idempotent
	if _, err := c1.Write([]byte("held")); err != nil {
		t.Fatalf("write while paused: %v", err)
	}
	c2 := dial(t, p) // a new connection while paused is held too
	if _, err := c2.Write([]byte("new")); err != nil {
		t.Fatalf("write on a new connection while paused: %v", err)
	}
	// Nothing may pass: give the proxy time to misbehave, then look.
	c1.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c1.Read(make([]byte, 16)); n != 0 || !isTimeout(err) {
		t.Errorf("read while paused: %d bytes, err %v; want nothing (a timeout)", n, err)
	}
	if got, want := echo.got.Load(), int64(len("up")); got != want {
		t.Errorf("target received %d bytes while paused, want %d", got, want)
	}
	if got, want := p.Conns(), 2; got != want {
		t.Errorf("Conns while paused = %d, want %d (connections stay open)", got, want)
	}

	p.Resume()
	p.Resume() // idempotent
	c1.SetReadDeadline(time.Now().Add(guard))
	for _, tc := range []struct {
		c    net.Conn
		want string
	}{{c1, "held"}, {c2, "new"}} {
		buf := make([]byte, len(tc.want))
		if _, err := io.ReadFull(tc.c, buf); err != nil {
			t.Fatalf("read %q after Resume: %v", tc.want, err)
		}
		if got := string(buf); got != tc.want {
			t.Errorf("after Resume: got %q, want %q", got, tc.want)
		}
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	echo := startEcho(t, "tcp")
	before := runtime.NumGoroutine()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := New(ln, echo.addr, Options{Delay: 50 * time.Millisecond})
	errc := make(chan error, 1)
	go func() { errc <- p.Serve() }()
	var clients []net.Conn
	for range 3 {
		c := dial(t, p)
		if got, want := roundTrip(t, c, "x"), "x"; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		c.Write([]byte("in flight")) // queued behind the delay when Close comes
		clients = append(clients, c)
	}
	p.Pause()
	clients = append(clients, dial(t, p)) // waits for Resume in the proxy
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-errc; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, c := range clients {
		c.Close()
	}

	var now int
	for range 100 { // the echo server's goroutines end once they see the close
		if now = runtime.NumGoroutine(); now <= before {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Errorf("goroutines: %d after Close, %d before the proxy started\n%s", now, before, buf[:runtime.Stack(buf, true)])
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// TestHold: the bytes a connection sends after Hold are held, also after
// its client resets the connection; a new connection passes meanwhile;
// Release delivers the held bytes to the target, then the end.
func TestHold(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	p := startProxy(t, ln.Addr().String(), Options{})
	old, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	old.Write([]byte("abc"))
	oldT := <-accepted
	defer oldT.Close()
	oldT.SetDeadline(time.Now().Add(guard))
	got := make([]byte, 3)
	if _, err := io.ReadFull(oldT, got); err != nil || string(got) != "abc" {
		t.Fatalf("before the hold: %q, %v", got, err)
	}

	h := p.Hold()
	if h.Conns() != 1 {
		t.Fatalf("held %d connections, want 1", h.Conns())
	}
	if _, err := old.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	old.(*net.TCPConn).SetLinger(0)
	old.Close() // a reset: the client is gone

	fresh, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	fresh.Write([]byte("new"))
	freshT := <-accepted
	defer freshT.Close()
	freshT.SetDeadline(time.Now().Add(guard))
	if _, err := io.ReadFull(freshT, got); err != nil || string(got) != "new" {
		t.Fatalf("a new connection while another is held: %q, %v", got, err)
	}

	h.Release()
	rest, err := io.ReadAll(oldT)
	if err != nil || string(rest) != "late" {
		t.Fatalf("after Release the target read %q, %v; want the held \"late\" then EOF", rest, err)
	}
}
