package nbd

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/memdev"
)

// gatedDev blocks every ReadAt at offset 0 until release is closed or its
// ctx ends; reads elsewhere go straight through.
type gatedDev struct {
	*memdev.Device
	started   chan struct{} // closed by the first blocked read
	once      atomic.Bool
	release   chan struct{}
	cancelled atomic.Int64
}

func newGatedDev() *gatedDev {
	return &gatedDev{Device: memdev.New(64<<20, false), started: make(chan struct{}), release: make(chan struct{})}
}

func (d *gatedDev) ReadAt(ctx context.Context, p []byte, off int64) error {
	if off == 0 {
		if d.once.CompareAndSwap(false, true) {
			close(d.started)
		}
		select {
		case <-ctx.Done():
			d.cancelled.Add(1)
			return ctx.Err()
		case <-d.release:
		}
	}
	return d.Device.ReadAt(ctx, p, off)
}

// startGated serves dev and opens a connection to it.
func startGated(t *testing.T, dev *gatedDev) (*Server, *rawConn) {
	t.Helper()
	srv, s := startLimited(t, dev, Options{})
	c := dialRaw(t, s)
	c.Open("disk", false)
	return srv, c
}

// A lone request runs on the reader's goroutine (lead). While it is
// blocked, a request sent after it is still read and answered: the reader
// role moved on (tick).
func TestBlockedRequestDoesNotStopReading(t *testing.T) {
	dev := newGatedDev()
	_, c := startGated(t, dev)
	readBehindBlocked(t, c, dev, 1)
}

// readBehindBlocked sends a READ that dev blocks (handle h, run in line),
// then one behind it (h+1), which must be answered first; then lets the
// first go and reads its reply.
func readBehindBlocked(t *testing.T, c *rawConn, dev *gatedDev, h uint64) {
	t.Helper()
	c.Request(cmdRead, 0, h, 0, 4096, nil)
	<-dev.started
	c.Request(cmdRead, 0, h+1, 4096, 4096, nil)
	if got, e := c.SimpleReply(); got != h+1 || e != 0 {
		t.Fatalf("reply handle %d errno %d, want %d (the read behind the blocked one) and 0", got, e, h+1)
	}
	c.Read(make([]byte, 4096))
	close(dev.release)
	if got, e := c.SimpleReply(); got != h || e != 0 {
		t.Fatalf("reply handle %d errno %d, want %d and 0", got, e, h)
	}
	c.Read(make([]byte, 4096))
}

// A disconnect cancels a lone blocked request too, although it holds the
// goroutine that was reading.
func TestDisconnectCancelsLoneRequest(t *testing.T) {
	dev := newGatedDev()
	srv, c := startGated(t, dev)
	c.Request(cmdRead, 0, 1, 0, 4096, nil)
	<-dev.started
	c.NC.Close()
	waitCancelled(t, srv, 1, dev.cancelled.Load)
}

// Back-to-back requests at queue depth 1, each run in line, each answered.
func TestQueueDepthOneInLine(t *testing.T) {
	dev := newGatedDev()
	close(dev.release)
	_, c := startGated(t, dev)
	buf := make([]byte, 4096)
	for i := range 200 {
		h := uint64(i + 1)
		for j := range buf {
			buf[j] = byte(i)
		}
		c.Request(cmdWrite, 0, h, uint64(i%16)*4096, 4096, buf)
		if got, e := c.SimpleReply(); got != h || e != 0 {
			t.Fatalf("write %d: reply handle %d errno %d", i, got, e)
		}
		c.Request(cmdFlush, 0, h+1000, 0, 0, nil)
		if got, e := c.SimpleReply(); got != h+1000 || e != 0 {
			t.Fatalf("flush %d: reply handle %d errno %d", i, got, e)
		}
		c.Request(cmdRead, 0, h+2000, uint64(i%16)*4096, 4096, nil)
		if got, e := c.SimpleReply(); got != h+2000 || e != 0 {
			t.Fatalf("read %d: reply handle %d errno %d", i, got, e)
		}
		got := make([]byte, 4096)
		c.Read(got)
		if got[0] != byte(i) || got[4095] != byte(i) {
			t.Fatalf("read %d: got %d, want %d", i, got[0], byte(i))
		}
	}
}

// The watch over requests run in line stops when the connection calms
// down, and the next lone request starts it again: a request that blocks
// after a quiet spell still hands the reader role on.
func TestWatchRestartsAfterCalm(t *testing.T) {
	dev := newGatedDev()
	srv, c := startGated(t, dev)
	c.Request(cmdRead, 0, 1, 4096, 4096, nil) // not gated: runs in line, starts the watch
	if h, e := c.SimpleReply(); h != 1 || e != 0 {
		t.Fatalf("reply handle %d errno %d, want 1 and 0", h, e)
	}
	c.Read(make([]byte, 4096))
	tr := onlyTransmission(t, srv)
	waitFor(t, "the watch to stop", func() bool { return !tr.watching.Load() })

	readBehindBlocked(t, c, dev, 2)
}

// onlyTransmission is the transmission of srv's one connection.
func onlyTransmission(t *testing.T, srv *Server) *transmission {
	t.Helper()
	var tr *transmission
	waitFor(t, "the connection to reach transmission", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for c := range srv.conns {
			tr = c.tr.Load()
		}
		return len(srv.conns) == 1 && tr != nil
	})
	return tr
}

// A client that has read every reply is caught up (queue depth 1: its
// replies are written in line); one with replies left to read is not.
func TestCaughtUp(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	tr := &transmission{unixRC: unixRawConn(server)}
	if !tr.caughtUp() {
		t.Fatal("caught up before anything was sent: false")
	}
	if _, err := server.Write(make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	if tr.caughtUp() {
		t.Fatal("caught up with a reply unread: true")
	}
	if _, err := io.ReadFull(client, make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	if !tr.caughtUp() {
		t.Fatal("caught up after the client read everything: false")
	}
	if (&transmission{}).caughtUp() {
		t.Fatal("caught up without a unix socket (TCP): true")
	}
}
